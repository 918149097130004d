"""Jinja2 rendering of templates/ into ready-to-send EmailMessages.

Each letter is two files an organisation can edit without touching code:
``templates/letters/NAME.txt`` (first line ``Subject: ...``, a blank line, then the body) and
``templates/letters/NAME.html`` (the same words as HTML, autoescaped). Rendering is strict: a
missing variable is an error at test time, never a blank in a letter to a complainant.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import datetime, timezone
from email import encoders, message_from_bytes
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.policy import compat32
from email.utils import format_datetime, formataddr
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from mailbot import randomness
from mailbot.domain.attachments import wire_content_type, wire_filename
from mailbot.domain.mail import header_safe, wire_address

if TYPE_CHECKING:
    from jinja2 import Environment

MAILBOT_ID_TAG = ".mailbot@"
# Letters go on the wire with CRLF line ends; bodies as quoted-printable UTF-8, readable in the raw.
WIRE = compat32.clone(linesep="\r\n")


@dataclass(frozen=True)
class RenderedLetter:
    subject: str
    text: str
    html: str


def templates_stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Every template file's name, size and modification time: any edit, addition or removal changes it."""
    stamp = []
    for path in sorted(folder.rglob("*")):
        try:
            info = path.stat()
        except OSError:
            continue
        stamp.append((str(path), info.st_size, info.st_mtime_ns))
    return tuple(stamp)


class LetterError(Exception):
    """A template is missing or does not render."""


class LetterRenderer:
    """Letters from ``templates/``. Each template is compiled once and kept: Jinja's own check of the file's
    modification time on every render was about 1% of a complaint's cost. An edited template is picked up by
    ``reload_if_changed`` (the daemon calls it every minute, and at once on SIGHUP)."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self._stamp = templates_stamp(templates_dir)

    @cached_property
    def env(self) -> Environment:
        """Jinja, loaded with the first letter: a start with nothing to write (an idle `run --once`) does not
        import it."""
        from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

        return Environment(
            loader=FileSystemLoader(str(self.templates_dir)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )

    def reload_if_changed(self) -> bool:
        """Forget the compiled templates when a file under the templates folder changed; True when one did."""
        stamp = templates_stamp(self.templates_dir)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        if "env" in self.__dict__:  # nothing compiled yet otherwise
            self.env.cache.clear()  # type: ignore[union-attr]
        return True

    def compile(self, names: Iterable[str]) -> None:
        """Compile these letters' templates now rather than at their first use, with the layouts and parts they
        extend and include (Jinja loads those only as it renders). One that is missing or does not compile is
        left for the letter itself to report."""
        from jinja2 import TemplateError, meta

        env = self.env
        assert env.loader is not None
        pending = [f"letters/{name}.{ext}" for name in names for ext in ("txt", "html")]
        seen: set[str] = set()
        while pending:
            path = pending.pop()
            if path in seen:
                continue
            seen.add(path)
            try:
                env.get_template(path)
                source = env.loader.get_source(env, path)[0]
                pending.extend(ref for ref in meta.find_referenced_templates(env.parse(source)) if ref)
            except TemplateError:
                pass

    def names(self) -> list[str]:
        """Every letter that has both a text and an HTML template."""
        folder = self.templates_dir / "letters"
        return sorted(p.stem for p in folder.glob("*.txt") if (folder / f"{p.stem}.html").exists())

    def render(self, name: str, context: dict[str, object]) -> RenderedLetter:
        text = self.env.get_template(f"letters/{name}.txt").render(**context)
        html = self.env.get_template(f"letters/{name}.html").render(**context)
        first, _, body = text.partition("\n")
        if not first.startswith("Subject:"):
            raise LetterError(f"templates/letters/{name}.txt must start with a 'Subject:' line")
        return RenderedLetter(subject=header_safe(first[len("Subject:"):].strip()), text=body.lstrip("\n"), html=html)


def new_message_id(domain: str) -> str:
    """A Message-ID (without brackets) that marks the mail as ours, so replies and loops are recognised."""
    return f"{randomness.token_hex(12)}{MAILBOT_ID_TAG}{domain}"


def _header(value: str) -> str | Header:
    """Plain ASCII stays as it is; anything else is RFC 2047 encoded, except a leading ASCII run
    (the "[1MM-2026-0042] " of a subject), which stays readable for servers that match on it."""
    if value.isascii():
        return value
    split = next(i for i, ch in enumerate(value) if not ch.isascii())
    split = value.rfind(" ", 0, split) + 1
    header = Header(value[:split], "us-ascii") if split else Header()
    header.append(value[split:], "utf-8")
    return header


def build_message(letter: RenderedLetter, **headers: Any) -> Message:
    """The letter as an email.message.Message, for previews and tests; it takes letter_bytes's keywords.
    The outbox stores letter_bytes itself."""
    return message_from_bytes(letter_bytes(letter, **headers), policy=WIRE)


def letter_bytes(
    letter: RenderedLetter,
    *,
    template: str,
    from_name: str,
    from_addr: str,
    to: list[str],
    message_id: str,
    cc: list[str] | None = None,
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    auto_submitted: str | None = "auto-replied",
    extra_headers: dict[str, str] | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
    date: datetime | None = None,
) -> bytes:
    """One letter as wire bytes (CRLF): multipart/alternative text + HTML, inside multipart/mixed with
    attachments. Every value that came from mail passes through header_safe.

    Written directly rather than through the email package's Message and generator: those cost ~2 ms
    per letter, the largest share of an acknowledgement's CPU (bench/ingest_timing.py), while the
    structure of a letter is fixed. Headers are still folded and RFC 2047-encoded by the email
    package's compat32 policy whenever they need it, so they come out as before.
    """
    headers: list[tuple[str, str | Header]] = [("MIME-Version", "1.0")]
    headers.append(("From", formataddr((header_safe(from_name), from_addr), charset="utf-8")))
    headers.append(("To", _addresses(to)))
    if cc:
        headers.append(("Cc", _addresses(cc)))
    if reply_to:
        headers.append(("Reply-To", _addresses([reply_to])))
    headers.append(("Subject", _header(header_safe(letter.subject))))
    headers.append(("Date", format_datetime(date or datetime.now(timezone.utc))))
    headers.append(("Message-ID", f"<{message_id}>"))
    if in_reply_to:
        headers.append(("In-Reply-To", f"<{header_safe(in_reply_to)}>"))
    refs = [header_safe(r) for r in (references or []) if r]
    if refs:
        # Long reference chains are trimmed to the first and the last few, as RFC 5322 suggests.
        if len(refs) > 10:
            refs = refs[:1] + refs[-9:]
        headers.append(("References", " ".join(f"<{r}>" for r in refs)))
    if auto_submitted:
        headers.append(("Auto-Submitted", auto_submitted))
        # Ask Exchange not to send out-of-office replies to our automatic letters.
        headers.append(("X-Auto-Response-Suppress", "All"))
    headers.append(("X-Mailbot-Letter", template))
    for name, value in (extra_headers or {}).items():
        headers.append((name, _header(header_safe(value))))

    body = _multipart("alternative", [_text_part(letter.text, "plain"), _text_part(letter.html, "html")])
    if attachments:
        body = _multipart("mixed", [body] + [_attachment_part(*a) for a in attachments])
    content_type, payload = body
    # The payload starts with the blank line that ends the headers.
    return b"".join(_header_line(name, value) for name, value in [("Content-Type", content_type), *headers]) \
        + payload


# A MIME entity as (its Content-Type value, its remaining headers + blank line + body, CRLF throughout).
_Part = tuple[str, bytes]


class _Utf8Addresses(str):
    """Address-list header text that must go out as UTF-8 (RFC 6532), never as RFC 2047 encoded-words."""


def _addresses(addresses: list[str]) -> str:
    value = ", ".join(wire_address(header_safe(a)) for a in addresses)
    return value if value.isascii() else _Utf8Addresses(value)


def _header_line(name: str, value: str | Header) -> bytes:
    """One header line; the common short ASCII one directly, anything else folded/encoded as compat32 does."""
    if isinstance(value, _Utf8Addresses):
        # Folded only at the commas between addresses, so no address is ever split or encoded.
        return f"{name}: {value.replace(', ', ',' + chr(13) + chr(10) + ' ')}\r\n".encode("utf-8")
    if isinstance(value, str) and value.isascii():
        if len(name) + len(value) < 76:
            return f"{name}: {value}\r\n".encode("ascii")
        if name == "Content-Type" and value.startswith("multipart/") and value.count("; ") == 1:
            # Our own multipart type with its boundary: folded after the ";" as compat32 folds it, 8 us sooner.
            kind, parameter = value.split("; ")
            if len(name) + len(kind) < 76 and len(parameter) < 77:
                return f"{name}: {kind};\r\n {parameter}\r\n".encode("ascii")
    return WIRE.fold_binary(name, value)


def _text_part(content: str, subtype: str) -> _Part:
    """UTF-8 quoted-printable text; any line ending becomes CRLF."""
    text = content.replace("\r\n", "\n").replace("\r", "\n")
    encoded = quoted_printable(text.encode("utf-8")).replace(b"\n", b"\r\n")
    return (f'text/{subtype}; charset="utf-8"',
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + encoded)


# Lines already encoded, with their newline: most of a letter's lines are its template's own (the HTML layout's
# styles above all), the same in every letter. Emptied when full, so a stream of one-off lines (names, quoted
# complaints) never holds more than this.
_QP_LINES: dict[bytes, bytes] = {}
QP_LINES_KEPT = 4096
QP_LINE_LONGEST = 2000


def quoted_printable(data: bytes) -> bytes:
    """``binascii.b2a_qp(data, istext=True)`` for text whose lines end in LF alone, byte for byte.

    That encoding is line by line: a line and its newline encode the same wherever they stand (the tests
    check this against binascii on the letters and on random text). binascii takes ~12 ns a byte, about 150 us
    for a complaint's two letters; remembering the lines it has encoded takes most of that away.
    """
    lines = data.split(b"\n")
    last = lines.pop()
    memo = _QP_LINES
    out = []
    for line in lines:
        encoded = memo.get(line)
        if encoded is None:
            encoded = binascii.b2a_qp(line + b"\n", istext=True)
            if len(line) <= QP_LINE_LONGEST:
                if len(memo) >= QP_LINES_KEPT:
                    memo.clear()
                memo[line] = encoded
        out.append(encoded)
    if last:
        out.append(binascii.b2a_qp(last, istext=True))
    return b"".join(out)


def _attachment_part(filename: str, content_type: str, payload: bytes) -> _Part:
    """Attachments are rare: the email package builds them (base64, RFC 2231 filenames)."""
    maintype, _, subtype = wire_content_type(content_type).partition("/")
    part = MIMEBase(maintype, subtype)
    del part["MIME-Version"]
    part.set_payload(payload)
    encoders.encode_base64(part)
    name = wire_filename(header_safe(filename)) or "attachment"
    part.add_header("Content-Disposition", "attachment", filename=name if name.isascii() else ("utf-8", "", name))
    content_type_value = str(part["Content-Type"])
    del part["Content-Type"]
    return content_type_value, part.as_bytes(policy=WIRE)


def _multipart(subtype: str, parts: list[_Part]) -> _Part:
    # "=_" cannot occur in quoted-printable or base64 text, so the boundary needs no search of the parts.
    boundary = f"=_{randomness.token_hex(16)}"
    delimiter = f"--{boundary}\r\n".encode("ascii")
    out = [b"\r\n"]  # the blank line after the headers
    for index, (content_type, payload) in enumerate(parts):
        # The CRLF before a delimiter belongs to the delimiter, not to the part before it.
        out += [b"\r\n" if index else b"", delimiter, _header_line("Content-Type", content_type), payload]
    out.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return f'multipart/{subtype}; boundary="{boundary}"', b"".join(out)
