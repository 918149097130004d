"""A forwarded message inside another: who originally sent it, and the ids that thread it.

The procedures' last stage is "contact the CEO directly": the Chief Executive forwards such mail to the
complaints address (attached as a message, or inline as Gmail, Outlook and Apple Mail write it). The original
sender is the complainant; the forwarder is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailbot.domain.mail import InboundMail, bare_address, parse_mail

_FORWARD_SUBJECT = re.compile(r"^\s*(?:fwd?|fw|wg|tr|rv|vs|doorst)\s*:", re.IGNORECASE)
# The line a client writes above an inline forward, and the header block under it.
_MARKER = re.compile(
    r"^\s*(?:-{2,}\s*(?:forwarded message|original message|mensaje original|message transféré|"
    r"weitergeleitete nachricht|ursprüngliche nachricht)\s*-{2,}|begin forwarded message:|_{10,})\s*$",
    re.IGNORECASE)
_FROM_LINE = re.compile(r"^\s*[*>\s]*(?:from|von|de|van)\s*:\s*\**\s*(.+?)\s*$", re.IGNORECASE)
_HEADER_LINE = re.compile(r"^\s*[*>\s]*(?:from|sent|date|to|cc|subject|von|gesendet|an|betreff|de|envoyé|à|objet)"
                          r"\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class Forwarded:
    sender: str  # the original From address
    name: str
    message_ids: tuple[str, ...]  # its Message-ID, In-Reply-To and References, when the forward carries them
    subject: str
    text: str  # the original's words


def forwarded(mail: InboundMail) -> Forwarded | None:
    """The message forwarded in ``mail``, or None when it forwards nothing (or the original sender is unknown)."""
    for attachment in mail.attachments:
        if attachment.content_type in ("message/rfc822", "message/global"):
            inner = parse_mail(attachment.payload)
            if inner.from_addr:
                ids = ((inner.message_id,) if inner.has_message_id else ()) + inner.in_reply_to + inner.references
                return Forwarded(inner.from_addr, inner.from_name, ids, inner.subject, inner.text)
    lines = mail.text.replace("\r\n", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if _MARKER.match(line)), None)
    if start is None:
        if not _FORWARD_SUBJECT.match(mail.subject):
            return None
        start = -1
    for index in range(start + 1, min(len(lines), start + 12)):
        found = _FROM_LINE.match(lines[index])
        if found is None:
            continue
        sender = bare_address(found.group(1).replace("[mailto:", "<").replace("]", ">"))
        if "@" not in sender:
            return None
        name = found.group(1).split("<", 1)[0].strip().strip('"').strip()
        body = index + 1
        while body < len(lines) and (_HEADER_LINE.match(lines[body]) or not lines[body].strip()):
            body += 1
        subject = next((line.split(":", 1)[1].strip() for line in lines[index:body]
                        if line.strip().lower().lstrip("*> ").startswith(("subject:", "betreff:", "objet:"))), "")
        return Forwarded(sender, name if "@" not in name else "", (), subject, "\n".join(lines[body:]).strip())
    return None
