"""HTML to plain text, written once: for a message's body, and for the reply a member of staff typed.

A body keeps everything a reader would see (``history=True``). A reply keeps only what its writer added
(``history=False``): blockquotes are left out, and everything from a client's quoted-history container on
(Gmail's ``gmail_quote``, Outlook's ``divRplyFwdMsg``...) is history.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from mailbot.domain.mail.decoding import tidy_text

_WHITESPACE = re.compile(r"\s+")
# How much HTML is read as text, in characters. html.parser takes ~1.2 s a MB of nothing but tags, so a 30 MB
# body of them held intake for half a minute; a person's words never come near this, and the message itself is
# kept whole. Inline images (``src="data:..."``) are bulk with no text: they are taken out before counting.
HTML_TEXT_LIMIT = 1_000_000
HTML_CUT_NOTE = "[The rest of this message's HTML is not shown as text here: it is over {:,} characters. The " \
                "message itself is kept whole.]"
_INLINE_DATA = re.compile(r"""(["'])data:[^"'<>]{1000,}\1""", re.IGNORECASE)


def html_to_text(html: str, *, history: bool = True) -> str:
    """Readable plain text from HTML: scripts, styles and head removed, blocks on new lines, at most one blank
    line in a row. With ``history=False``, quoted history is left out."""
    if len(html) > HTML_TEXT_LIMIT:
        html = _INLINE_DATA.sub(r"\1\1", html)
    cut = len(html) > HTML_TEXT_LIMIT
    if cut:
        html = html[:HTML_TEXT_LIMIT]
        if html.rfind("<") > html.rfind(">"):
            html = html[:html.rfind("<")]  # a tag cut in half is not text
    extractor = _TextExtractor(history)
    try:
        extractor.feed(html)
        extractor.close()
    except Exception:  # html.parser is lenient, but a crash here must not lose the rest.
        pass
    lines = (line.strip() for line in "".join(extractor.pieces).split("\n"))
    text = tidy_text("\n".join(lines))
    # Said only of a whole body: what a member of staff wrote (history=False) can reach a complainant, and past the
    # limit a real reply holds only its quoted history.
    return f"{text}\n\n{HTML_CUT_NOTE.format(HTML_TEXT_LIMIT)}" if cut and history else text


class _TextExtractor(HTMLParser):
    """Collects visible text; blocks become line breaks, invisible elements (and history, when asked) are
    skipped."""

    _INVISIBLE = frozenset({"script", "style", "head", "title", "noscript", "template", "svg"})
    _BLOCKS = frozenset(
        {"p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
         "blockquote", "pre", "hr", "section", "article", "header", "footer", "dd", "dt"}
    )
    _CELLS = frozenset({"td", "th"})
    _QUOTE_CONTAINERS = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix", "divrplyfwdmsg", "olk_src_body_section")

    def __init__(self, history: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.history = history
        self.pieces: list[str] = []
        self._hidden_depth = 0
        self._preformatted_depth = 0
        self._stopped = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._stopped:
            return
        if not self.history:
            marker = " ".join(value or "" for name, value in attrs if name in ("class", "id")).lower()
            if any(name in marker for name in self._QUOTE_CONTAINERS):
                self._stopped = True  # Everything from the client's quote container on is history.
                return
        if tag in self._INVISIBLE or (tag == "blockquote" and not self.history):
            self._hidden_depth += 1
        if tag in self._BLOCKS:
            self.pieces.append("\n")
            if tag == "li" and not self._hidden_depth:
                self.pieces.append("- ")
        if tag == "pre":
            self._preformatted_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCKS and not self._stopped:
            self.pieces.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._stopped:
            return
        if tag in self._INVISIBLE or (tag == "blockquote" and not self.history):
            self._hidden_depth = max(0, self._hidden_depth - 1)
        if tag in self._BLOCKS and tag != "li":  # The next item starts its own line.
            self.pieces.append("\n")
        elif tag in self._CELLS:
            self.pieces.append(" ")
        if tag == "pre":
            self._preformatted_depth = max(0, self._preformatted_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._stopped or self._hidden_depth:
            return
        if self._preformatted_depth:
            self.pieces.append(data.replace("\xa0", " "))
        else:
            self.pieces.append(_WHITESPACE.sub(" ", data))
