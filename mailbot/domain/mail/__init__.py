"""Parsing raw inbound mail into a frozen, easy-to-reason-about value.

This module is pure: it takes bytes and returns an :class:`InboundMail`. It never raises on
bad input; a message nobody can understand comes back with ``readable=False`` and its defects.

The message is read once with the standard library's ``compat32`` parser (lenient, and about
eight times faster than ``policy.default``). The work is then split by what each side does best:

* Headers and addresses are always decoded here (RFC 2047, stray 8-bit bytes): mail-parser
  silently drops undecodable 8-bit bytes in some headers, and this decoding must not regress.
* Multipart messages are handed to mail-parser, on the same ``compat32`` tree (which is what
  ``mailparser.parse_from_bytes`` builds internally, so nothing is parsed twice). Its text and
  HTML parts become the body, its defect categories are added to ``defects``, and attachments it
  recovers that the standard-library walk cannot see (a part stranded in the epilogue after a
  re-used boundary) are added to ``attachments``.
* The standard-library walk runs for every message: it gives ``part_types``, enclosed-message
  and signature handling, boundary recovery and the attachment list, and it is the complete
  fallback whenever mail-parser raises (it does, on some corrupted boundaries), returns no text,
  or decoded text lossily (see ``_mailparser_text``).
* Single-part messages do not go to mail-parser: there is no structure for it to resolve, its
  single-part decoding is lossier (7-bit ISO-2022-JP left undecoded, undeclared 8-bit bytes
  replaced), and three quarters of its time goes on header parsing this module does not use.

The package, by concern: ``message`` (the value type and its ids), ``parse`` (bytes in, ``InboundMail`` out),
``headers`` (RFC 2047 and stray 8-bit header decoding, address lists), ``mime`` (the walk over the parts, with
mail-parser, and large attachments), ``html`` (HTML to text, for bodies and replies), ``addresses`` (addresses as
stored and as they go on the wire) and ``decoding`` (charsets and text tidying).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailbot.domain.mail.addresses import bare_address, header_safe, wire_address
    from mailbot.domain.mail.headers import decode_header_value
    from mailbot.domain.mail.html import html_to_text
    from mailbot.domain.mail.message import (
        REUSED_MESSAGE_ID,
        SYNTHETIC_ID_DOMAIN,
        Attachment,
        InboundMail,
        extract_message_ids,
        same_message,
        synthetic_message_id,
        unfetchable_record,
        with_own_id,
    )
    from mailbot.domain.mail.mime import LARGE_MESSAGE_BYTES
    from mailbot.domain.mail.parse import bytes_only, parse_each, parse_mail

# Each name's module, loaded when the name is first asked for (PEP 562): what only addresses the bot's letters or
# records an unreadable message (the delivery loop, the mailbox adapter) does not load the parser, its patterns
# and its dataclasses, which an idle `run --once` never uses.
_HOME = {
    **dict.fromkeys(("bare_address", "header_safe", "wire_address"), "addresses"),
    "decode_header_value": "headers",
    "html_to_text": "html",
    **dict.fromkeys(("REUSED_MESSAGE_ID", "SYNTHETIC_ID_DOMAIN", "Attachment", "InboundMail", "extract_message_ids",
                     "same_message", "synthetic_message_id", "unfetchable_record", "with_own_id"), "message"),
    "LARGE_MESSAGE_BYTES": "mime",
    **dict.fromkeys(("bytes_only", "parse_each", "parse_mail"), "parse"),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "LARGE_MESSAGE_BYTES",
    "REUSED_MESSAGE_ID",
    "SYNTHETIC_ID_DOMAIN",
    "Attachment",
    "InboundMail",
    "bare_address",
    "bytes_only",
    "decode_header_value",
    "extract_message_ids",
    "header_safe",
    "html_to_text",
    "parse_each",
    "parse_mail",
    "same_message",
    "synthetic_message_id",
    "unfetchable_record",
    "wire_address",
    "with_own_id",
]
