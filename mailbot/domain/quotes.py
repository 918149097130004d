"""The new text of a reply: quoted history and signatures taken off, pure and without I/O.

The reply headers ("On ... wrote:", Outlook's "From: / Sent:" block and "-----Original Message-----")
are recognised by the maintained ``mail-parser-reply`` library's multilingual patterns; a small rule set
here adds what it misses on the talon and email_reply_parser corpora (Russian/Polish/Vietnamese/Android
attributions, date-and-address Gmail lines) and the decisions a complaints service needs: forwarded
mail is kept whole, bullet lists are never mistaken for signatures, and text is never lost entirely.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from mailbot.domain.mail.html import html_to_text

# Every language the library knows: complainants and mentors write from many mail clients and locales.
_LIBRARY_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs", "ja", "ko", "zh")

_QUOTED_LINE = re.compile(r"^\s*>")

# Verbs of an attribution line ("... wrote:") in the languages complainants write in, including word
# orders the library does not expect ("Op ... schreef Name <a@b>:", "W dniu ... Name pisze:",
# "Ar ..., ysgrifennodd Name <a@b>:", "---- John wrote ----").
_ATTRIBUTION_VERBS = (
    r"wrote|writes|sent|schrieb|schreibt|schreef|skrev|napisał|napisała|napisal|pisze|написал|написала|пишет"
    r"|написав|написала|пише|a écrit|escribió|escribio|ha scritto|scrisse|geschreven|đã viết|kirjoitti|írta"
    r"|yazdı|escreveu|ysgrifennodd"
)
_ATTRIBUTION = re.compile(
    rf"^.{{0,200}}?\b(?:{_ATTRIBUTION_VERBS})\b(?:\s*:?|\s.{{0,120}}[>)\]]\s*:)\s*-*\s*$",
    re.IGNORECASE,
)
# The words an attribution starts with; the window never starts mid-paragraph, so the sender's own
# text above the header is not swallowed into it.
_ATTRIBUTION_OPENER = re.compile(
    r"^(?:(?:On|Le|Am|Op|El|Il giorno|Il|Den|På|W dniu|Dnia|Vào|Em|Dne|Ar|Quoting|Zitat von|Citando|Cytuję"
    r"|Sent from)\b|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\w*,|(?:пн|вт|ср|чт|пт|сб|нд|вс)\b|\d|-{2,}|\*\s)",
    re.IGNORECASE,
)
# "Name <a@b> wrote:", "Jane Doe <jane@example.com> schrieb am 3. März 2026:": no opener, but an address.
_NAMED_ATTRIBUTION = re.compile(
    rf"^.{{0,80}}<?[\w.+-]+@[\w.-]+>?.{{0,80}}\b(?:{_ATTRIBUTION_VERBS})\b.{{0,80}}:\s*$", re.IGNORECASE)
_ADDRESS_ABOVE_QUOTE = re.compile(r"^.{0,100}<?[\w.+-]+@[\w.-]+>?.{0,60}:\s*$")
# Gmail in some locales writes only "2014-10-17 11:28 GMT+03:00 Name <address>:" above the quote.
_DATE_AND_ADDRESS = re.compile(
    r"^(?:\d{1,4}[-./]\d{1,2}[-./]\d{1,4}\b.{0,120}<?[\w.+-]+@[\w.-]+>?"
    r"|.{0,80}\d{1,2}:\d{2}.{0,80}<[\w.+-]+@[\w.-]+>)\s*:?\s*$",
)
# "-----Original Message-----" in the languages the library does not know.
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(?:original message|ursprüngliche nachricht|originalnachricht|message d'origine"
    r"|message original|mensaje original|messaggio originale|oorspronkelijk bericht|origineel bericht"
    r"|mensagem original|oryginalna wiadomość|wiadomość oryginalna|исходное сообщение|оригинальное сообщение"
    r"|пересланное сообщение|вихідне повідомлення|оригінальне повідомлення|neges wreiddiol|neges wreiddiol)"
    r"\s*-{2,}\s*$",
    re.IGNORECASE,
)
# Outlook's header block, even when an HTML conversion leaves blank lines between its lines.
_OUTLOOK_FROM = re.compile(
    r"^[* ]*(?:From|Von|De|От|Від|Fra|Från|Od|Van|Da|Oddi wrth)\s?:", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(
    r"^[* ]*(?:Sent|Date|Gesendet|Datum|Envoyé|Отправлено|Дата|Надіслано|Sendt|Skickat|Wysłano|Verzonden"
    r"|Inviato|Enviado|Enviada em|Data|Anfonwyd|Dyddiad)\s?:",
    re.IGNORECASE,
)
_OUTLOOK_BLOCK_LINES = 8
# Android's "---- John Smith wrote ----" carries neither a date nor an address.
_ANDROID_ATTRIBUTION = re.compile(r"^-{2,}\s*\S.{0,100}\swrote\s*-{2,}\s*$", re.IGNORECASE)
# Forwarded mail is evidence the sender wants us to read, so it is never treated as quoted history.
_FORWARD_MARKER = re.compile(
    r"^\s*(?:-{2,}\s*(?:Forwarded message|Original message forwarded|Weitergeleitete Nachricht"
    r"|Message transféré)\s*-{2,}|Begin forwarded message:)",
    re.IGNORECASE,
)
# The header lines of a quoted or forwarded message, in the languages Outlook and Gmail write them.
_MESSAGE_HEADER_LINE = re.compile(
    r"^[* ]*(?:From|Sent|Date|To|Cc|Subject|Von|Gesendet|An|Betreff|Datum|De|Envoyé|À|Objet|Para|Asunto"
    r"|Enviado|Da|Inviato|A|Oggetto|Van|Verzonden|Aan|Onderwerp|Od|Wysłano|Do|Temat|От|Отправлено|Кому|Тема"
    r"|Oddi wrth|Anfonwyd|At|Pwnc)\s?:",
    re.IGNORECASE,
)
# Outlook's "________________________________" line and mailing-list footers: all below is not the reply.
_LONG_RULE = re.compile(r"^\s*_{30,}\s*$")
# Some clients glue the attribution onto the last line of the reply ("bla--- On ... wrote:").
_GLUED_ATTRIBUTION = re.compile(r"-{3,}\s*(?=On\s.*\bwrote:\s*$)")
_SEPARATOR_LINE = re.compile(r"^\s*[-_=*]{2,}\s*$")
_SIGNATURE_DELIMITER = re.compile(r"^--\s*$")
_DEVICE_SIGNATURE = re.compile(
    r"^\s*(?:Sent from (?:my )?\S+(?: \S+){0,3}|Sent with \S+.*|Sent via .{0,60}|Get Outlook for \S+.*"
    r"|Outlook for (?:Android|iOS).*|Sent from Yahoo Mail.*|Sent from Outlook.*|Sent from Mail for Windows.*"
    r"|Envoyé (?:de|depuis) mon \S+.*|Von meinem \S+ gesendet.*|Gesendet von (?:meinem )?\S+.*"
    r"|Enviado desde mi \S+.*|Enviado (?:do|a partir do) meu \S+.*|Inviato da(?:l mio)? \S+.*"
    r"|Verzonden (?:met|vanaf) mijn \S+.*|Verstuurd vanaf mijn \S+.*|Wysłane z (?:mojego )?\S+.*"
    r"|Отправлено с (?:моего )?\S+.*|Надіслано з (?:мого )?\S+.*|Anfonwyd o fy \S+.*)\s*$",
    re.IGNORECASE,
)
# A signature after "-- " is a few lines; a longer tail is more likely real text after a divider.
_MAX_SIGNATURE_LINES = 10
# An attribution spans at most this many lines when a client wraps the name and address.
_ATTRIBUTION_WINDOW = 4


def extract_new_text(text: str, html: str | None = None) -> str:
    """Only what the sender wrote this time: no quoted history, no signature.

    The HTML part is used only when the plain-text part is empty. When everything looks quoted the
    answer is empty: a reply with nothing new says nothing, and the caller decides what that means
    (a staff reply with nothing new relays nothing; falling back to the whole text once relayed a
    quoted staff notification to a complainant).
    """
    source = text if text and text.strip() else html_to_text(html or "", history=False)
    if not source.strip():
        return ""
    return strip_signature(remove_quoted_history(source))


# A line counts as ours on its own when it is a line of one of our letters, or a piece of one (a client
# that re-wraps a quote cuts our lines into pieces), at least this long; a shorter one ("Thanks"), or the
# header and attribution a client writes around a quote, only beside a line already known to be ours.
_FRAGMENT_MIN = 20
_QUOTE_PREFIX = re.compile(r"^(?:\s*>)+")


_NOT_A_WORD_CHARACTER = re.compile(r"[\W_]+")


def _normalised(line: str) -> str:
    """A line as any client's rendering leaves it comparable: only its letters, digits and a leading "#".

    Quote prefixes, Outlook's *bold*, a table cell's spacing, a colon dropped by an HTML rendering, case:
    none of it survives, so our words are recognised however the reply's client laid them out.
    """
    line = _QUOTE_PREFIX.sub("", line).strip()
    hash_sign = "#" if line.startswith("#") else ""
    return hash_sign + _NOT_A_WORD_CHARACTER.sub("", line).lower()


def without_text_of(text: str, letters: Iterable[str]) -> str:
    """The text less every line that came from one of ``letters`` (the bot's own staff-only mail).

    Quote stripping guesses at a client's quoting; this does not guess. Whatever the client did to the
    quote (no ">" at all, an answer typed between quoted lines, a forward, a re-wrap), a line that is
    ours is recognised by its words, and what is left is only what the sender wrote. A command line
    ("#resolve upheld") counts as ours only beside other lines of ours: our command reference and our
    confirmations contain the very words a member of staff types.
    """
    whole_lines: set[str] = set()
    blobs: list[str] = []
    for letter in letters:
        normal = [_normalised(line) for line in letter.replace("\r\n", "\n").split("\n")]
        whole_lines.update(line for line in normal if line)
        blobs.append("".join(line.lstrip("#") for line in normal if line))
    if not blobs:
        return text
    lines = text.replace("\r\n", "\n").split("\n")
    normal = [_normalised(line) for line in lines]

    def piece_of_ours(n: str) -> bool:
        return any(n.lstrip("#") in blob for blob in blobs)

    ours = [len(n) >= _FRAGMENT_MIN and not n.startswith("#") and (n in whole_lines or piece_of_ours(n))
            for n in normal]
    changed = True
    while changed:
        changed = False
        for index, n in enumerate(normal):
            if ours[index] or not n:
                continue
            if (piece_of_ours(n) or _wraps_a_quote(lines[index])) and _beside_ours(normal, ours, index):
                ours[index] = changed = True
    kept = [line for line, mine in zip(lines, ours) if not mine]
    return strip_signature(_trim_separators("\n".join(_collapse_blank_runs(kept))).strip())


def _wraps_a_quote(line: str) -> bool:
    """The lines a client writes around a quote or a forward: its header block and attribution."""
    line = _QUOTE_PREFIX.sub("", line).strip()
    return bool(_FORWARD_MARKER.match(line) or _MESSAGE_HEADER_LINE.match(line) or _ATTRIBUTION.match(line)
                or _ANDROID_ATTRIBUTION.match(line) or _SEPARATOR_LINE.match(line) or _LONG_RULE.match(line))


def _beside_ours(normal: list[str], ours: list[bool], index: int) -> bool:
    for step in (-1, 1):
        other = index + step
        while 0 <= other < len(normal) and not normal[other]:
            other += step
        if 0 <= other < len(normal) and ours[other]:
            return True
    return False


def _collapse_blank_runs(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not line.strip() and (not out or not out[-1].strip()):
            continue
        out.append(line)
    return out


def remove_quoted_history(text: str) -> str:
    """The text with earlier messages removed but the signature kept (talon's notion of a reply)."""
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        lines.extend(_GLUED_ATTRIBUTION.sub("\n", line).split("\n"))
    kept = _drop_history(lines)
    kept = _without_quoted_lines(kept)
    return _trim_separators("\n".join(kept)).strip()


def _without_quoted_lines(lines: list[str]) -> list[str]:
    kept: list[str] = []
    after_quote = False
    for index, line in enumerate(lines):
        if _is_quoted(lines, index):
            after_quote = True
            continue
        # The blank lines around a removed quote would otherwise pile up between the sender's paragraphs.
        if after_quote and not line.strip() and (not kept or not kept[-1].strip()):
            continue
        after_quote = after_quote and not line.strip()
        kept.append(line)
    return kept


def _is_quoted(lines: list[str], index: int) -> bool:
    """A ">" line, or a long link wrapped out of the quote with quoted lines right above and below.

    Only a single word (a link, an address) counts as wrapped: words typed between two quoted lines
    are an inline answer, the most important line of such a reply.
    """
    if _QUOTED_LINE.match(lines[index]):
        return True
    line = lines[index].strip()
    if not line or len(line.split()) > 1:
        return False
    above = lines[index - 1] if index > 0 else ""
    below = lines[index + 1] if index + 1 < len(lines) else ""
    return bool(_QUOTED_LINE.match(above) and _QUOTED_LINE.match(below))


def strip_signature(text: str) -> str:
    """The text without a trailing "-- " signature block or a "Sent from my iPhone" line."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if _SIGNATURE_DELIMITER.match(line):
            tail = [rest for rest in lines[index + 1 :] if rest.strip()]
            if len(tail) <= _MAX_SIGNATURE_LINES:
                lines = lines[:index]
                break
    while lines and (not lines[-1].strip() or _DEVICE_SIGNATURE.match(lines[-1])):
        lines.pop()
    return _trim_separators("\n".join(lines)).strip()


def _drop_history(lines: list[str]) -> list[str]:
    header = _first_header(lines)
    if header is None:
        return lines
    start, end = header
    before, after = lines[:start], lines[end:]
    if any(_FORWARD_MARKER.match(line) for line in before):
        return lines
    if _starts_with_quote(after):
        # ">"-quoted history: anything unquoted after it was written by the sender too (bottom-posting,
        # inline answers, a sign-off below the quote).
        return before + _drop_history(after)
    # Unquoted history (Outlook, a mailing-list footer): everything from the header on is old.
    return before


def _starts_with_quote(lines: list[str]) -> bool:
    first = next((line for line in lines if line.strip()), "")
    return bool(_QUOTED_LINE.match(first))


def _first_header(lines: list[str]) -> tuple[int, int] | None:
    """Line span [start, end) of the first reply header outside quoted lines, if any."""
    # Quoted lines are blanked so a header quoted inside older history is never the cut point.
    scan = ["" if _QUOTED_LINE.match(line) else line.strip() for line in lines]
    found = [span for span in (_library_header(scan), _extra_header(scan, lines)) if span is not None]
    return min(found) if found else None


def _library_header(scan: list[str]) -> tuple[int, int] | None:
    joined = "\n".join(scan)
    offsets = _line_offsets(scan)
    for match in _library_header_pattern().finditer(joined):
        matched = match.group(0)
        if not _looks_like_real_header(matched):
            continue
        first = match.start() + (len(matched) - len(matched.lstrip("\n")))
        start = _line_at(offsets, first)
        end = _line_at(offsets, max(first, match.end() - 1)) + 1
        # Outlook sometimes wraps the "From:" line, so the library's block match starts a line or two late.
        for back in (1, 2):
            if start - back >= 0 and _OUTLOOK_FROM.match(scan[start - back]):
                start -= back
                break
        return start, end
    return None


def _extra_header(scan: list[str], lines: list[str]) -> tuple[int, int] | None:
    for start, line in enumerate(scan):
        if _LONG_RULE.match(line) or _ORIGINAL_MESSAGE.match(line):
            return start, start + 1
        if _OUTLOOK_FROM.match(line):
            following = [later for later in scan[start + 1 : start + _OUTLOOK_BLOCK_LINES] if later]
            if any(_OUTLOOK_SENT.match(later) for later in following[:4]):
                return start, start + 1
        if _ATTRIBUTION_OPENER.match(line):
            span = _attribution_span(scan, start)
            if span is not None:
                return span
        if _NAMED_ATTRIBUTION.match(line):
            return start, start + 1
        # Any other client's line naming an address and ending in ":" right above a ">" quote
        # (mutt's "* Name <a@b> [date]:", Horde's "Quoting Name <a@b>:").
        if _ADDRESS_ABOVE_QUOTE.match(line) and _starts_with_quote(lines[start + 1:]):
            return start, start + 1
    return None


def _attribution_span(scan: list[str], start: int) -> tuple[int, int] | None:
    window: list[str] = []
    for end in range(start, min(start + _ATTRIBUTION_WINDOW, len(scan))):
        # A wrapped attribution has no blank line inside it; stopping there keeps the sender's text safe.
        if not scan[end]:
            return None
        window.append(scan[end])
        candidate = " ".join(window)
        if _ANDROID_ATTRIBUTION.match(candidate) or (
            _looks_like_real_header(candidate)
            and (_ATTRIBUTION.match(candidate) or _DATE_AND_ADDRESS.match(candidate))
        ):
            return start, end + 1
    return None


def _looks_like_real_header(matched: str) -> bool:
    # "On Monday my mentor wrote:" is a complainant's own sentence; real headers carry a date or address.
    return bool(re.search(r"\d|@|original message", matched, re.IGNORECASE))


@lru_cache(maxsize=1)
def _library_header_pattern() -> re.Pattern[str]:
    # The library builds its header pattern on a message object; an empty one gives us the compiled pattern.
    from mailparser_reply.parser import EmailMessage

    return EmailMessage(text="", languages=list(_LIBRARY_LANGUAGES)).HEADER_REGEX


def _line_offsets(lines: list[str]) -> list[int]:
    offsets, position = [], 0
    for line in lines:
        offsets.append(position)
        position += len(line) + 1
    return offsets


def _line_at(offsets: list[int], position: int) -> int:
    index = 0
    for number, offset in enumerate(offsets):
        if offset <= position:
            index = number
    return index


def _trim_separators(text: str) -> str:
    lines = text.rstrip().split("\n")
    while lines and (_SEPARATOR_LINE.match(lines[-1]) or not lines[-1].strip()):
        lines.pop()
    return "\n".join(lines)
