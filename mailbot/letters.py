"""Jinja2 rendering of templates/ into ready-to-send EmailMessages.

Each letter is two files an organisation can edit without touching code:
``templates/letters/NAME.txt`` (first line ``Subject: ...``, a blank line, then the body) and
``templates/letters/NAME.html`` (the same words as HTML, autoescaped). Rendering is strict: a
missing variable is an error at test time, never a blank in a letter to a complainant.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from email import encoders
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from mailbot.domain.mail import header_safe

MAILBOT_ID_TAG = ".mailbot@"
# Letters go on the wire with CRLF line ends; bodies as quoted-printable UTF-8, readable in the raw.
WIRE = compat32.clone(linesep="\r\n")
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


@dataclass(frozen=True)
class RenderedLetter:
    subject: str
    text: str
    html: str


class LetterError(Exception):
    """A template is missing or does not render."""


class LetterRenderer:
    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.env = Environment(
            loader=FileSystemLoader(str(templates_dir)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

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
    return f"{secrets.token_hex(12)}{MAILBOT_ID_TAG}{domain}"


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


def build_message(
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
) -> Message:
    """Headers and parts for one letter. Every value that came from mail passes through header_safe.

    Built with the compat32 MIME classes rather than EmailMessage: the modern policy re-parses every
    header through its registry, which made building a letter cost 2 ms, the largest share of an
    acknowledgement's time (bench/ingest_timing.py). The output is the same standard MIME.
    """
    body = MIMEMultipart("alternative", policy=WIRE)
    for content, subtype in ((letter.text, "plain"), (letter.html, "html")):
        part = MIMEText(content, subtype, _UTF8_QP)
        del part["MIME-Version"]  # the compat32 classes stamp it on every part; it belongs on the top only
        body.attach(part)
    if attachments:
        msg = MIMEMultipart("mixed", policy=WIRE)
        del body["MIME-Version"]
        msg.attach(body)
        for filename, content_type, payload in attachments:
            maintype, _, subtype = content_type.partition("/")
            part = MIMEBase(maintype or "application", subtype or "octet-stream")
            del part["MIME-Version"]
            part.set_payload(payload)
            encoders.encode_base64(part)
            name = header_safe(filename) or "attachment"
            part.add_header("Content-Disposition", "attachment",
                            filename=name if name.isascii() else ("utf-8", "", name))
            msg.attach(part)
    else:
        msg = body
    msg["From"] = formataddr((header_safe(from_name), from_addr), charset="utf-8")
    msg["To"] = ", ".join(header_safe(a) for a in to)
    if cc:
        msg["Cc"] = ", ".join(header_safe(a) for a in cc)
    if reply_to:
        msg["Reply-To"] = header_safe(reply_to)
    msg["Subject"] = _header(header_safe(letter.subject))
    msg["Date"] = format_datetime(date or datetime.now(timezone.utc))
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{header_safe(in_reply_to)}>"
    refs = [header_safe(r) for r in (references or []) if r]
    if refs:
        # Long reference chains are trimmed to the first and the last few, as RFC 5322 suggests.
        if len(refs) > 10:
            refs = refs[:1] + refs[-9:]
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    if auto_submitted:
        msg["Auto-Submitted"] = auto_submitted
        # Ask Exchange not to send out-of-office replies to our automatic letters.
        msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Mailbot-Letter"] = template
    for name, value in (extra_headers or {}).items():
        msg[name] = _header(header_safe(value))
    return msg
