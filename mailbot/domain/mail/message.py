"""The value an inbound message becomes, and the message ids that thread it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.utils import format_datetime
from functools import cached_property

from mailbot.domain import categories, data_requests


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    payload: bytes


@dataclass(frozen=True)
class InboundMail:
    """What the rest of the bot needs to know about one inbound message.

    Addresses are lower-cased bare addresses (``name@example.org``); display names are kept
    separately. ``headers`` maps lower-cased header names to every value seen, decoded to str.
    """

    message_id: str  # without angle brackets; synthesised ("<sha256>@mailbot.invalid") when missing
    has_message_id: bool
    subject: str
    from_addr: str
    from_name: str
    reply_to: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    delivered_to: tuple[str, ...]  # Delivered-To and X-Original-To values
    in_reply_to: tuple[str, ...]  # message ids, no angle brackets
    references: tuple[str, ...]
    date: str | None  # ISO-8601 of the Date header when parseable
    text: str  # best plain-text body (HTML converted to text when no text part)
    html: str | None
    attachments: tuple[Attachment, ...]
    headers: dict[str, tuple[str, ...]] = field(hash=False, compare=False)
    content_type: str = "text/plain"
    readable: bool = True
    defects: tuple[str, ...] = ()
    # Content types of every MIME part in walk order, so rules can spot delivery reports cheaply.
    part_types: tuple[str, ...] = ()
    # The bytes as received; rules re-read them only for rare cases such as bounces.
    raw: bytes = field(default=b"", repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """First value of a header, or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    # What the words say, read once a message. Kept in the instance's dict, they travel with it when it is
    # pickled: a backlog's messages are read in a child process (mail.parse_pool) and come back read.

    @cached_property
    def reading(self) -> categories.Reading:
        """Its category and the safeguarding terms in it (domain.categories)."""
        return categories.read(self.subject, self.text)

    @cached_property
    def data_request(self) -> str | None:
        """``erasure``, ``access`` or None: whether it asks for a copy or the erasure of personal data."""
        return data_requests.recognise(self.subject, self.text)


SYNTHETIC_ID_DOMAIN = "mailbot.invalid"
_BRACKETED_ID = re.compile(r"<([^<>]*)>")


def synthetic_message_id(raw: bytes) -> str:
    """A stable id for a message without one, so identical re-deliveries dedupe."""
    return f"{hashlib.sha256(raw).hexdigest()}@{SYNTHETIC_ID_DOMAIN}"


REUSED_MESSAGE_ID = "Message-ID already used by a different message: kept under an id of its own"


def same_message(a: InboundMail, b: InboundMail) -> bool:
    """Whether two messages with one Message-ID are one message delivered twice: the same sender, subject,
    text and files. What changes between deliveries (Received, Delivered-To, the IMAP flags) is not compared."""
    def content(mail: InboundMail) -> tuple[object, ...]:
        return mail.from_addr, mail.subject, mail.text, mail.html, tuple(f.payload for f in mail.attachments)

    return content(a) == content(b)


def with_own_id(mail: InboundMail) -> InboundMail:
    """A message whose Message-ID another message already has, under an id of its own (the hash of its bytes,
    so the same bytes delivered again are still a duplicate). Mailers do reuse ids, and anybody can write one:
    taken for a duplicate, the second message was dropped with no case and no letter."""
    return replace(mail, message_id=synthetic_message_id(mail.raw), has_message_id=False,
                   defects=(*mail.defects, REUSED_MESSAGE_ID))


def unfetchable_record(mailbox: str, uidvalidity: int, uid: int, error: str, at: datetime) -> bytes:
    """What the bot keeps for a message its mail server would not give it (a FETCH refused again and again
    while the server gave other messages): a message of the bot's own saying so, under an id of its own for
    that place in that mailbox, so filing it twice is a duplicate. The message itself stays on the server."""
    where = f"{mailbox} {uidvalidity} {uid}".encode("utf-8", "replace")
    said = " ".join(error.split())[:300] or "no reason given"
    body = (f"The mail server would not give the bot message UID {uid} in {mailbox} (UIDVALIDITY "
            f"{uidvalidity}).\nIt answered: {said}\n\nThe message is still in the mailbox: open it there "
            f"with a mail client and deal with it by hand.\n")
    return (f"Message-ID: <unfetchable.{hashlib.sha256(where).hexdigest()[:32]}@{SYNTHETIC_ID_DOMAIN}>\r\n"
            f"Date: {format_datetime(at)}\r\n"
            f"Subject: A message the mail server would not give the bot (UID {uid})\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            f"\r\n{body}").replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def extract_message_ids(value: str) -> tuple[str, ...]:
    """Every ``<...>`` message id in a header value, brackets removed, duplicates dropped.

    Folding and stray spaces inside brackets are removed. When a value carries no brackets at
    all (some clients write bare ids), whitespace-separated tokens that contain ``@`` are used.
    """
    found = [re.sub(r"\s+", "", token) for token in _BRACKETED_ID.findall(value)]
    if not found:
        found = [token.strip("<>,;") for token in value.split() if "@" in token]
    unique: dict[str, None] = {}
    for token in found:
        if token:
            unique.setdefault(token, None)
    return tuple(unique)
