"""Bytes in, an :class:`InboundMail` out; never raises (a message nobody can read comes back ``readable=False``)."""

from __future__ import annotations

import email
import email.policy
import email.utils

from mailbot.domain.mail.decoding import looks_readable, safely
from mailbot.domain.mail.headers import (
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


def parse_mail(raw: bytes) -> InboundMail:
    """Turn raw message bytes into an :class:`InboundMail`; never raises."""
    try:
        raw = bytes(raw or b"")
        return _parse(raw)
    except Exception as error:  # A parser bug must not lose a complaint: record it as unreadable.
        return _unreadable(raw if isinstance(raw, bytes) else b"", f"parser failed: {type(error).__name__}: {error}")


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
    if message_ids:
        message_id, has_message_id = message_ids[0], True
    else:
        message_id, has_message_id = synthetic_message_id(raw), False
        defects.append("no Message-ID")
    if not from_addr:
        defects.append("no From address")

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
        reply_to=just_addresses(reader.addresses("reply-to")),
        to=just_addresses(reader.addresses("to")),
        cc=just_addresses(reader.addresses("cc")),
        delivered_to=just_addresses(reader.addresses(*_ADDRESS_HEADERS_FOR_DELIVERY)),
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
