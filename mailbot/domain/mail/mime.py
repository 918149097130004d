"""Bodies and attachments: the standard library's walk over every part, mail-parser for multipart messages,
and large attachments kept out of the standard library's parser.

The email package's feed parser splits a body into lines and joins them again, and decoding a base64
part makes more copies: a 42 MB message with one 30 MB attachment peaked at 329 MB in parsing alone.
Above LARGE_MESSAGE_BYTES, each long run of base64 lines that is the whole body of a part declaring
Content-Transfer-Encoding: base64 is lifted out before parsing (a token with a per-message nonce stands
in its place) and decoded straight from the raw bytes into that part afterwards.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message

from mailbot.domain.mail.decoding import decode_bytes, safely, tidy_text
from mailbot.domain.mail.headers import decode_header_value
from mailbot.domain.mail.html import html_to_text
from mailbot.domain.mail.message import Attachment

LARGE_MESSAGE_BYTES = 4 * 1024 * 1024
_LIFT_MIN_LINES = 8000  # about 600 KB of base64: smaller bodies cost the parser little
_BASE64_BODY = re.compile(
    rb"(?im)^content-transfer-encoding:[ \t]*base64[ \t]*\r?\n"  # the part's header...
    rb"(?:[^\r\n]+\r?\n)*?"  # ...and the rest of its header block...
    rb"\r?\n"  # ...ends with a blank line, then the body: nothing but base64 lines
    rb"((?:[A-Za-z0-9+/=]{1,998}\r?\n){%d,})" % _LIFT_MIN_LINES
)


def lift_large_base64(raw: bytes) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """The message with its long base64 bodies replaced by tokens, and where each body was in ``raw``."""
    nonce = hashlib.sha256(raw[:4096]).hexdigest()[:16]
    pieces: list[bytes] = []
    lifted: dict[str, tuple[int, int]] = {}
    position = 0
    for match in _BASE64_BODY.finditer(raw):
        start, end = match.span(1)
        token = f"MAILBOTLIFTED{nonce}X{len(lifted)}"
        pieces += [raw[position:start], token.encode("ascii"), b"\r\n"]
        lifted[token] = (start, end)
        position = end
    if not lifted:
        return raw, {}
    pieces.append(raw[position:])
    return b"".join(pieces), lifted


def put_back_lifted(message: Message, raw: bytes, lifted: dict[str, tuple[int, int]]) -> None:
    """Each lifted body, decoded, as the payload of its part (marked binary, so it is not decoded again)."""
    for part in message.walk():
        payload = getattr(part, "_payload", None)
        if not isinstance(payload, str) or len(payload) > 100:
            continue
        span = lifted.get(payload.strip())
        if span is None:
            continue
        part._payload = binascii.a2b_base64(memoryview(raw)[span[0]:span[1]])  # type: ignore[attr-defined]
        part.replace_header("Content-Transfer-Encoding", "binary")


@dataclass
class Body:
    plain: list[str] = field(default_factory=list)
    html_parts: list[str] = field(default_factory=list)
    other_text: list[str] = field(default_factory=list)  # text/enriched, text/x-...: better than nothing.
    enclosed_plain: list[str] = field(default_factory=list)  # Text of forwarded/bounced messages.
    unparsed: list[str] = field(default_factory=list)  # Multipart bodies whose boundary was never found.
    attachments: list[Attachment] = field(default_factory=list)
    part_types: list[str] = field(default_factory=list)
    library_defects: list[str] = field(default_factory=list)  # What mail-parser reported, recorded last.

    @property
    def html(self) -> str | None:
        return "\n".join(self.html_parts) if self.html_parts else None

    @property
    def text(self) -> str:
        if self.plain:
            return tidy_text("\n\n".join(self.plain))
        if self.html_parts:
            return html_to_text("\n".join(self.html_parts))
        return tidy_text("\n\n".join(self.other_text or self.enclosed_plain or self.unparsed))


def extract_body(message: Message, defects: list[str], large: bool = False) -> Body:
    """Bodies and attachments: mail-parser for multipart messages, the standard library around it.

    A large message is left to the standard library: mail-parser keeps every attachment again as base64
    text, and what it adds (a part stranded in an epilogue, a charset it decodes better) is for small odd
    messages, where a large one is nearly all attachment.
    """
    body = _stdlib_body(message, defects)
    if not safely(message.is_multipart, False) or large:
        return body
    import mailparser  # here: a start with no multipart mail to read does not pay for it

    try:
        parsed = mailparser.MailParser(message)
        categories = set(parsed.defects_categories)
        text = _mailparser_text(parsed, categories, body)
        recovered = _mailparser_attachments(parsed, body)
    except Exception as error:  # mail-parser 4.8 raises on some corrupted boundaries.
        body.library_defects.append(f"mail-parser failed ({type(error).__name__}); standard library used")
        return body
    known = set(defects)
    body.library_defects.extend(category for category in sorted(categories) if category not in known)
    if text is not None:
        body.plain, body.html_parts = text
    body.attachments.extend(recovered)
    return body


# Characters mail-parser's body decoding leaves behind when it lost or skipped bytes: U+FFFD for
# bytes the declared charset refused, ESC for 7-bit ISO-2022 text it passed through undecoded,
# C1 controls for Windows-1252 text labelled Latin-1, NUL for a binary part read as text.
_LOSSY_TEXT = re.compile(r"[\ufffd\x1b\x80-\x9f\x00]")


def _encloses_messages(body: Body) -> bool:
    return any(content_type.startswith("message/") for content_type in body.part_types)


def _mailparser_text(parsed, categories: set[str], walked: Body) -> tuple[list[str], list[str]] | None:
    """mail-parser's text and HTML parts, or None when the standard library's are better.

    mail-parser has no notion of an enclosed message: it reads a forwarded or bounced message's
    text as the sender's own words, so messages that enclose others keep the walk's body.
    """
    if _encloses_messages(walked):
        return None
    plain = [text for text in parsed.text_plain if isinstance(text, str)]
    html = [text for text in parsed.text_html if isinstance(text, str)]
    if not plain and not html:
        return None
    if "CharsetDecodeDefect" in categories or any(_LOSSY_TEXT.search(text) for text in plain + html):
        return None
    return plain, html


_SYNTHETIC_NAME = re.compile(r"^[a-z]{10}\.(?:txt|rtf)$")  # mail-parser's random_string() names.


def _mailparser_attachments(parsed, walked: Body) -> list[Attachment]:
    """Files mail-parser found that the walk did not, e.g. a part stranded in the epilogue.

    Files both found are identical bytes; the walk's entries are kept for their filenames, which
    are decoded here without losing 8-bit bytes. Containers are left to the walk (it keeps an
    enclosed message whole), as are signatures and named inline text, which is body, not a file.
    """
    if _encloses_messages(walked):
        return []
    seen = {(attachment.content_type, attachment.payload) for attachment in walked.attachments}
    found = []
    for item in parsed.attachments:
        content_type = str(item.get("mail_content_type") or "application/octet-stream").lower()
        disposition = str(item.get("content-disposition") or "").strip().lower()
        if not item.get("binary") or content_type.startswith("multipart/") or content_type in _SIGNATURE_TYPES:
            continue
        if content_type in ("text/plain", "text/html") and disposition.startswith("inline"):
            continue
        payload = _base64_payload(item.get("payload"))
        if not payload or (content_type, payload) in seen:
            continue
        seen.add((content_type, payload))
        filename = str(item.get("filename") or "").strip()
        if filename == str(item.get("content-id") or "") or _SYNTHETIC_NAME.match(filename):
            filename = ""
        found.append(Attachment(filename or _default_filename(content_type), content_type, payload))
    return found


def _base64_payload(payload: object) -> bytes | None:
    """mail-parser hands every binary attachment over as base64 text (re-encoded if need be)."""
    if not isinstance(payload, str):
        return payload if isinstance(payload, bytes) else None
    try:
        return binascii.a2b_base64(payload.encode("ascii", "ignore"))  # Skips line breaks and junk.
    except (binascii.Error, ValueError):
        pass  # Bad padding: repair it the way the standard library does.
    cleaned = re.sub(r"[^A-Za-z0-9+/]", "", payload)
    if len(cleaned) % 4 == 1:  # A lone trailing character carries no whole byte, as the stdlib decides.
        cleaned = cleaned[:-1]
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        return None


def _stdlib_body(message: Message, defects: list[str]) -> Body:
    body = Body()
    _walk(message, body, defects, enclosed=False, depth=0)
    if not body.plain and not body.html_parts and body.unparsed:
        recovered = _reparse_with_sniffed_boundary(message)
        if recovered is not None:
            defects.append("multipart boundary recovered from the body")
            body = Body()
            _walk(recovered, body, [], enclosed=False, depth=0)
    return body


_BOUNDARY_LINE = re.compile(r"^--([^\s]{1,200}?)(?:--)?[ \t]*$", re.MULTILINE)


def _reparse_with_sniffed_boundary(message: Message) -> Message | None:
    """A multipart whose declared boundary is missing or wrong: use the first ``--`` line."""
    payload = _stored_payload(message)
    if not isinstance(payload, str):
        return None
    match = _BOUNDARY_LINE.search(payload)
    if match is None:
        return None
    content_type = safely(message.get_content_type, "multipart/mixed")
    head = f'Content-Type: {content_type}; boundary="{match.group(1)}"\n\n'.encode("ascii", "replace")
    recovered = email.message_from_bytes(head + _text_to_bytes(payload))
    return recovered if recovered.is_multipart() else None


_MAX_DEPTH = 50
_ENCLOSED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/rfc822-headers"})


def _walk(part: Message, body: Body, defects: list[str], *, enclosed: bool, depth: int) -> None:
    content_type = safely(part.get_content_type, "text/plain")
    body.part_types.append(content_type)
    defects.extend(type(defect).__name__ for defect in getattr(part, "defects", ()))
    if depth > _MAX_DEPTH:
        defects.append("MIME nesting too deep")
        return
    payload = _stored_payload(part)
    if isinstance(payload, list):
        if content_type.startswith("message/") or _disposition(part) == "attachment":
            if not enclosed:
                body.attachments.append(_enclosed_attachment(part, content_type))
            enclosed = True
        if content_type.startswith("message/") and content_type not in _ENCLOSED_MESSAGE_TYPES:
            return  # Delivery-status fields look like header blocks, not MIME parts: do not walk them.
        for child in payload:
            if isinstance(child, Message):
                _walk(child, body, defects, enclosed=enclosed, depth=depth + 1)
        return
    _add_leaf(part, content_type, body, defects, enclosed=enclosed)


def _add_leaf(part: Message, content_type: str, body: Body, defects: list[str], *, enclosed: bool) -> None:
    disposition = _disposition(part)
    filename = _filename(part)
    is_text = content_type in ("text/plain", "text/html") or content_type.startswith("multipart/")
    if content_type in _SIGNATURE_TYPES:
        return  # A cryptographic signature is not something a person sent us to read.
    is_attachment = disposition == "attachment" or not (is_text or content_type.startswith("text/")) or (
        bool(filename) and disposition != "inline"
    )
    data = _payload_bytes(part, defects)
    if is_attachment:
        if not enclosed:
            body.attachments.append(Attachment(filename or _default_filename(content_type), content_type, data))
        return
    if _looks_binary(data):
        defects.append(f"binary data in a {content_type} part")
        return
    if b"\x00" in data:
        defects.append(f"NUL bytes removed from a {content_type} part")
        data = data.replace(b"\x00", b"")
    text = decode_bytes(data, safely(part.get_content_charset, None))
    if not is_text:
        if not enclosed:
            body.other_text.append(text)
        return
    if content_type == "text/html":
        if not enclosed:
            body.html_parts.append(text)
    elif content_type.startswith("multipart/"):
        # A multipart whose boundary was never found arrives as one text blob: a last resort.
        body.unparsed.append(text)
    elif enclosed:
        body.enclosed_plain.append(text)
    else:
        body.plain.append(text)


def _disposition(part: Message) -> str | None:
    return safely(part.get_content_disposition, None)


def _filename(part: Message) -> str:
    name = safely(part.get_filename, None) or safely(lambda: part.get_param("name"), None) or ""
    if isinstance(name, tuple):  # An RFC 2231 value the library could not collapse.
        name = email.utils.collapse_rfc2231_value(name)
    return decode_header_value(str(name)).strip()


_SIGNATURE_TYPES = frozenset(
    {"application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature"}
)


# A small table instead of the mimetypes module, which reads system files on first use.
_EXTENSIONS = {
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "application/pdf": ".pdf",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "application/msword": ".doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
}


def _default_filename(content_type: str) -> str:
    if content_type == "message/rfc822":
        return "message.eml"
    return "attachment" + _EXTENSIONS.get(content_type, ".bin")


def _payload_bytes(part: Message, defects: list[str]) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception as error:
        defects.append(f"undecodable part payload: {type(error).__name__}")
        data = None
    if isinstance(data, bytes):
        return data
    raw_payload = _stored_payload(part)
    if isinstance(raw_payload, str):
        return _text_to_bytes(raw_payload)
    return b""


def _stored_payload(part: Message) -> list[Message] | str:
    """The payload as parsed; compat32's get_payload() itself can fail on a bad charset parameter."""
    try:
        payload = part.get_payload()
    except Exception:
        payload = getattr(part, "_payload", "")
    return payload if isinstance(payload, (list, str)) else ""


def _text_to_bytes(text: str) -> bytes:
    """compat32 payloads are ASCII plus surrogate-escaped bytes, but not always: be tolerant."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _enclosed_attachment(part: Message, content_type: str) -> Attachment:
    children = _stored_payload(part)
    try:
        if content_type in _ENCLOSED_MESSAGE_TYPES and len(children) == 1:
            data = children[0].as_bytes()
        else:
            data = b"".join(child.as_bytes() for child in children)
    except Exception:
        data = safely(lambda: str(part).encode("utf-8", "surrogateescape"), b"")
    return Attachment(_filename(part) or _default_filename(content_type), content_type, data)


def _looks_binary(data: bytes) -> bool:
    """Many control bytes mean a file, not text (UTF-16 and random junk alike).

    A stray NUL or two in a text part is still text: one NUL once hid a whole complaint from staff.
    UTF-16 without a byte-order mark is a NUL in every other byte, far above the share allowed here.
    """
    sample = data[:4000]
    if not sample:
        return False
    control = len(sample.translate(None, _NOT_CONTROL_BYTES))
    return sample.count(b"\x00") > max(2, len(sample) // 100) or control / len(sample) > 0.1


# ESC counts as text: 7-bit ISO-2022 text (Japanese mail) switches character sets with it.
_NOT_CONTROL_BYTES = bytes(byte for byte in range(256) if byte >= 32 or byte in (9, 10, 12, 13, 27))
