"""Bytes in, an :class:`InboundMail` out; never raises (a message nobody can read comes back ``readable=False``)."""

from __future__ import annotations

import email
import email.policy
import email.utils
from dataclasses import replace

from mailbot.domain.mail.decoding import looks_readable, safely
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
        return without_nul(_parse(raw))
    except Exception as error:  # A parser bug must not lose a complaint: record it as unreadable.
        return without_nul(_unreadable(raw if isinstance(raw, bytes) else b"",
                                       f"parser failed: {type(error).__name__}: {error}"))


def bytes_only(raw: bytes, reason: str) -> InboundMail:
    """The message as nothing but its bytes, under a hash of them: what is kept when what was read of it could
    not be stored."""
    return without_nul(_unreadable(raw, reason))


_NUL = "\x00"
_TEXT_FIELDS = ("message_id", "subject", "from_addr", "from_name", "date", "text", "html")
_TUPLE_FIELDS = ("reply_to", "to", "cc", "delivered_to", "in_reply_to", "references", "defects", "part_types")


def without_nul(mail: InboundMail) -> InboundMail:
    """The message with every NUL character in its text replaced by U+FFFD, and a defect saying so.

    No header may carry NUL (RFC 5322), but a raw byte or an encoded word (``=?utf-8?q?=00?=``) puts one
    in a Message-ID, a Subject or an address, and PostgreSQL's text columns refuse it: the message could
    then not even be kept as a processing error, and intake stopped at it. The raw bytes stay as they came.
    """
    def has(value: object) -> bool:
        if isinstance(value, str):
            return _NUL in value
        return isinstance(value, tuple) and any(_NUL in item for item in value)

    headers = mail.headers
    in_headers = any(_NUL in name or any(_NUL in value for value in values) for name, values in headers.items())
    in_names = any(_NUL in a.filename or _NUL in a.content_type for a in mail.attachments)
    changed = {name for name in _TEXT_FIELDS + _TUPLE_FIELDS if has(getattr(mail, name))}
    if not (changed or in_headers or in_names):
        return mail

    def clean(value: str) -> str:
        return value.replace(_NUL, "\ufffd")

    fields: dict[str, object] = {}
    for name in changed:
        value = getattr(mail, name)
        fields[name] = clean(value) if isinstance(value, str) else tuple(clean(item) for item in value)
    if in_headers:
        fields["headers"] = {clean(name): tuple(clean(value) for value in values) for name, values in headers.items()}
    if in_names:
        fields["attachments"] = tuple(replace(a, filename=clean(a.filename), content_type=clean(a.content_type))
                                      for a in mail.attachments)
    defects = fields.get("defects", mail.defects)
    fields["defects"] = (*defects, "NUL characters replaced")  # type: ignore[misc]
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
    message_ids = extract_message_ids(reader.raw("message-id"))
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
        in_reply_to=extract_message_ids(" ".join(reader.raw_values("in-reply-to"))),
        references=extract_message_ids(" ".join(reader.raw_values("references"))),
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
