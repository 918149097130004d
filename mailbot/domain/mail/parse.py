"""Bytes in, an :class:`InboundMail` out; never raises (a message nobody can read comes back ``readable=False``)."""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace

from mailbot.domain.mail.decoding import identifier_text, looks_readable, safely
from mailbot.domain.mail.headers import (
    MAX_ADDRESS_LENGTH,
    HeaderReader,
    has_broken_header_block,
    iso_date,
    just_addresses,
    repair_header_block,
)
from mailbot.domain.mail.message import (
    InboundMail,
    extract_message_ids,
    synthetic_message_id,
)
from mailbot.domain.mail.mime import (
    LARGE_MESSAGE_BYTES,
    extract_body,
    lift_large_base64,
    put_back_lifted,
)

_ADDRESS_HEADERS_FOR_DELIVERY = ("delivered-to", "x-original-to")
# RFC 5322 keeps a whole header line under 998 characters; real Message-IDs are under 250.
MAX_MESSAGE_ID_LENGTH = 500


def parse_mail(raw: bytes) -> InboundMail:
    """Turn raw message bytes into an :class:`InboundMail`; never raises."""
    try:
        raw = bytes(raw or b"")
        return storable(_parse(raw))
    except Exception as error:  # A parser bug must not lose a complaint: record it as unreadable.
        return storable(_unreadable(raw if isinstance(raw, bytes) else b"",
                                    f"parser failed: {type(error).__name__}: {error}"))


def parse_each(raws: Sequence[bytes]) -> Iterator[InboundMail]:
    """Each message parsed, in order, as it is asked for."""
    return (parse_mail(raw) for raw in raws)


def bytes_only(raw: bytes, reason: str) -> InboundMail:
    """The message as nothing but its bytes, under a hash of them: what is kept when what was read of it could
    not be stored."""
    return storable(_unreadable(raw, reason))


_NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")
_TEXT_FIELDS = ("message_id", "subject", "from_addr", "from_name", "date", "text", "html")
_TUPLE_FIELDS = ("reply_to", "to", "cc", "delivered_to", "in_reply_to", "references", "defects", "part_types")
UNSTORABLE_REPLACED = "characters no database can store replaced (NUL, undecodable bytes)"


def _unstorable(value: str) -> bool:
    """NUL, or a lone surrogate (how Python's parser carries an undecodable byte), which UTF-8 cannot encode."""
    if _NUL in value:
        return True
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _storable(value: str) -> str:
    value = value.replace(_NUL, "\ufffd")
    try:
        # An undecodable byte came in as a surrogate: read the bytes again as UTF-8, which a run of them usually
        # is; a byte that is not UTF-8 becomes U+FFFD.
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate no byte stands for (from an encoded word, say)
        return _SURROGATE.sub("\ufffd", value)


def storable(mail: InboundMail) -> InboundMail:
    """The message with every character a database cannot store replaced, and a defect saying so.

    No header may carry NUL (RFC 5322), but a raw byte or an encoded word (``=?utf-8?q?=00?=``) puts one in a
    Message-ID, a Subject or an address, and PostgreSQL's text columns refuse it; a byte the parser could not
    decode comes back as a lone surrogate, which neither SQLite nor PostgreSQL can encode. The message then
    could not even be kept as a processing error, and intake stopped at it. The raw bytes stay as they came.
    """
    def has(value: object) -> bool:
        if isinstance(value, str):
            return _unstorable(value)
        return isinstance(value, tuple) and any(_unstorable(item) for item in value)

    headers = mail.headers
    in_headers = any(_unstorable(name) or any(_unstorable(value) for value in values)
                     for name, values in headers.items())
    in_names = any(_unstorable(a.filename) or _unstorable(a.content_type) for a in mail.attachments)
    changed = {name for name in _TEXT_FIELDS + _TUPLE_FIELDS if has(getattr(mail, name))}
    if not (changed or in_headers or in_names):
        return mail
    fields: dict[str, object] = {}
    for name in changed:
        value = getattr(mail, name)
        fields[name] = _storable(value) if isinstance(value, str) else tuple(_storable(item) for item in value)
    if in_headers:
        fields["headers"] = {_storable(name): tuple(_storable(value) for value in values)
                             for name, values in headers.items()}
    if in_names:
        fields["attachments"] = tuple(
            replace(a, filename=_storable(a.filename), content_type=_storable(a.content_type))
            for a in mail.attachments)
    defects = fields.get("defects", mail.defects)
    fields["defects"] = (*defects, UNSTORABLE_REPLACED)  # type: ignore[misc]
    return replace(mail, **fields)  # type: ignore[arg-type]


def _parse(raw: bytes) -> InboundMail:
    defects: list[str] = []
    if not raw.strip():
        return _unreadable(raw, "empty message")

    source, lifted = lift_large_base64(raw) if len(raw) > LARGE_MESSAGE_BYTES else (raw, {})
    message = email.message_from_bytes(source, policy=email.policy.compat32)
    if lifted:
        put_back_lifted(message, raw, lifted)
    reader = HeaderReader(message)
    if not reader.sender and has_broken_header_block(message):
        repaired = repair_header_block(raw)
        if repaired is not None:
            defects.append("header block repaired: non-header lines dropped")
            message, reader = repaired, HeaderReader(repaired)
    headers = reader.decoded_headers(defects)

    from_name, from_addr = reader.sender or ("", "")
    message_ids = extract_message_ids(identifier_text(reader.raw("message-id")))
    if message_ids and len(message_ids[0]) <= MAX_MESSAGE_ID_LENGTH:
        message_id, has_message_id = message_ids[0], True
    elif message_ids:
        # Kept as its hash: still the same for the same id (a redelivery is still a duplicate), and short
        # enough for the database's index (PostgreSQL refuses index rows over ~2.7 KB, and stopped intake).
        message_id, has_message_id = synthetic_message_id(message_ids[0].encode("utf-8", "replace")), False
        defects.append(f"Message-ID longer than {MAX_MESSAGE_ID_LENGTH} characters, kept as its hash")
    else:
        message_id, has_message_id = synthetic_message_id(raw), False
        defects.append("no Message-ID")
    if not from_addr:
        defects.append("no From address")
    reply_to = just_addresses(reader.addresses("reply-to"))
    to = just_addresses(reader.addresses("to"))
    cc = just_addresses(reader.addresses("cc"))
    delivered_to = just_addresses(reader.addresses(*_ADDRESS_HEADERS_FOR_DELIVERY))
    if reader.too_long:
        defects.append(f"an address longer than {MAX_ADDRESS_LENGTH} characters left out")

    body = extract_body(message, defects, large=len(raw) > LARGE_MESSAGE_BYTES)
    text = body.text
    subject = (headers.get("subject") or ("",))[0].strip()
    readable = bool(from_addr or subject) or looks_readable(text)
    if not readable:
        defects.append("nothing readable: no sender, no subject and no text")
    defects.extend(body.library_defects)

    return InboundMail(
        message_id=message_id,
        has_message_id=has_message_id,
        subject=subject,
        from_addr=from_addr,
        from_name=from_name,
        reply_to=reply_to,
        to=to,
        cc=cc,
        delivered_to=delivered_to,
        in_reply_to=extract_message_ids(identifier_text(" ".join(reader.raw_values("in-reply-to")))),
        references=extract_message_ids(identifier_text(" ".join(reader.raw_values("references")))),
        date=iso_date(reader.raw("date")),
        text=text,
        html=body.html,
        attachments=tuple(body.attachments),
        headers=headers,
        content_type=safely(message.get_content_type, "text/plain"),
        readable=readable,
        defects=tuple(dict.fromkeys(defects)),
        part_types=tuple(body.part_types),
        raw=raw,
    )


def _unreadable(raw: bytes, reason: str) -> InboundMail:
    return InboundMail(
        message_id=synthetic_message_id(raw),
        has_message_id=False,
        subject="",
        from_addr="",
        from_name="",
        reply_to=(),
        to=(),
        cc=(),
        delivered_to=(),
        in_reply_to=(),
        references=(),
        date=None,
        text="",
        html=None,
        attachments=(),
        headers={},
        readable=False,
        defects=(reason,),
        raw=raw,
    )
