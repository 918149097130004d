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
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import email.utils
import hashlib
import quopri
import re
import unicodedata
from dataclasses import dataclass, field
from email.message import Message
from functools import cached_property
from html.parser import HTMLParser

import mailparser


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


SYNTHETIC_ID_DOMAIN = "mailbot.invalid"

# Charset labels seen in real mail that Python does not know, or knows as a narrower subset.
_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "x-mac-roman": "mac_roman",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
    "us-ascii": "utf-8",  # Undeclared 8-bit text is far more often UTF-8 than anything else.
    "ascii": "utf-8",
    "unknown-8bit": "utf-8",
    "x-unknown": "utf-8",
    "unknown": "utf-8",
    "default": "utf-8",
    "iso-8859-1": "cp1252",  # Windows clients label cp1252 text as Latin-1 (curly quotes).
    "latin1": "cp1252",
}

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=")
_WHITESPACE_BETWEEN_ENCODED_WORDS = re.compile(r"(=\?[^?\s]+\?[QqBb]\?[^?]*\?=)\s+(?==\?[^?\s]+\?[QqBb]\?)")
_BRACKETED_ID = re.compile(r"<([^<>]*)>")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LINE_BREAKS = re.compile(r"\r\n?|\n")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ADDRESS_HEADERS_FOR_DELIVERY = ("delivered-to", "x-original-to")


def parse_mail(raw: bytes) -> InboundMail:
    """Turn raw message bytes into an :class:`InboundMail`; never raises."""
    try:
        raw = bytes(raw or b"")
        return _parse(raw)
    except Exception as error:  # A parser bug must not lose a complaint: record it as unreadable.
        return _unreadable(raw if isinstance(raw, bytes) else b"", f"parser failed: {type(error).__name__}: {error}")


# A plain local@domain with nothing to parse (no display name, comment, quoting or list): what the
# store keeps for complainants and staff, so nearly every recipient. The full parser costs ~60 us.
_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:@\"]+@[^\s<>()\[\]\\,;:@\"]+")


def bare_address(address: str) -> str:
    """The lower-cased addr-spec of an address however it was written ("" when there is none)."""
    address = address.strip()
    if _PLAIN_ADDRESS.fullmatch(address):
        return address.lower()
    return email.utils.parseaddr(address)[1].strip().lower()


def wire_address(address: str) -> str:
    """An address as it goes on the wire: its domain in IDNA (xn--) form, so only a non-ASCII local part
    still needs SMTPUTF8 and an RFC 6532 header. Never RFC 2047: encoded-words are forbidden inside an
    address. An address that IDNA cannot encode is left as it is."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return address
    return f"{local}@{ascii_domain}"


def header_safe(value: str) -> str:
    """Make text safe to copy into an outgoing header: one line, no control characters.

    Line breaks become spaces rather than vanishing so words stay apart, which is what stops
    a complainant's subject such as ``"x\\r\\nBcc: ..."`` from turning into a header of its own.
    """
    value = str(value)
    if value.isascii() and value.isprintable():
        # The common case, with no control characters to look at (it runs for every header of every letter).
        return " ".join(value.split())
    cleaned = []
    for character in value:
        category = unicodedata.category(character)
        if character in "\r\n\t" or category in ("Zl", "Zp") or character == "\x85":
            cleaned.append(" ")
        elif category == "Cc":
            continue
        else:
            cleaned.append(character)
    return " ".join("".join(cleaned).split())


def synthetic_message_id(raw: bytes) -> str:
    """A stable id for a message without one, so identical re-deliveries dedupe."""
    return f"{hashlib.sha256(raw).hexdigest()}@{SYNTHETIC_ID_DOMAIN}"


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


def html_to_text(html: str) -> str:
    """Readable plain text from HTML: scripts, styles and head removed, blocks on new lines."""
    extractor = _HTMLTextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
    except Exception:  # html.parser is lenient, but a crash here must not lose the rest.
        pass
    lines = (line.strip() for line in "".join(extractor.pieces).split("\n"))
    return _tidy_text("\n".join(lines))


def decode_header_value(value: str, charset_hint: str | None = None) -> str:
    """Decode one header value: 8-bit bytes, RFC 2047 encoded words, folding.

    ``charset_hint`` is tried for raw 8-bit bytes that are not UTF-8; the body's declared
    charset is usually what the sender's client used for its headers too.
    """
    text = _recover_8bit(value, charset_hint)
    text = _FOLD.sub("", text)
    if "=?" in text:
        text = _decode_encoded_words(text)
    return _LINE_BREAKS.sub(" ", text)


# ---------------------------------------------------------------------------------------------
# Large attachments, kept out of the standard library's parser
#
# The email package's feed parser splits a body into lines and joins them again, and decoding a base64
# part makes more copies: a 42 MB message with one 30 MB attachment peaked at 329 MB in parsing alone.
# Above LARGE_MESSAGE_BYTES, each long run of base64 lines that is the whole body of a part declaring
# Content-Transfer-Encoding: base64 is lifted out before parsing (a token with a per-message nonce stands
# in its place) and decoded straight from the raw bytes into that part afterwards.

LARGE_MESSAGE_BYTES = 4 * 1024 * 1024
_LIFT_MIN_LINES = 8000  # about 600 KB of base64: smaller bodies cost the parser little
_BASE64_BODY = re.compile(
    rb"(?im)^content-transfer-encoding:[ \t]*base64[ \t]*\r?\n"  # the part's header...
    rb"(?:[^\r\n]+\r?\n)*?"  # ...and the rest of its header block...
    rb"\r?\n"  # ...ends with a blank line, then the body: nothing but base64 lines
    rb"((?:[A-Za-z0-9+/=]{1,998}\r?\n){%d,})" % _LIFT_MIN_LINES
)


def _lift_large_base64(raw: bytes) -> tuple[bytes, dict[str, tuple[int, int]]]:
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


def _put_back_lifted(message: Message, raw: bytes, lifted: dict[str, tuple[int, int]]) -> None:
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


# ---------------------------------------------------------------------------------------------
# Parsing


def _parse(raw: bytes) -> InboundMail:
    defects: list[str] = []
    if not raw.strip():
        return _unreadable(raw, "empty message")

    source, lifted = _lift_large_base64(raw) if len(raw) > LARGE_MESSAGE_BYTES else (raw, {})
    message = email.message_from_bytes(source, policy=email.policy.compat32)
    if lifted:
        _put_back_lifted(message, raw, lifted)
    reader = _HeaderReader(message)
    if not reader.sender and _has_broken_header_block(message):
        repaired = _repair_header_block(raw)
        if repaired is not None:
            defects.append("header block repaired: non-header lines dropped")
            message, reader = repaired, _HeaderReader(repaired)
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

    body = _extract_body(message, defects, large=len(raw) > LARGE_MESSAGE_BYTES)
    text = body.text
    subject = (headers.get("subject") or ("",))[0].strip()
    readable = bool(from_addr or subject) or _looks_readable(text)
    if not readable:
        defects.append("nothing readable: no sender, no subject and no text")
    defects.extend(body.library_defects)

    return InboundMail(
        message_id=message_id,
        has_message_id=has_message_id,
        subject=subject,
        from_addr=from_addr,
        from_name=from_name,
        reply_to=_just_addresses(reader.addresses("reply-to")),
        to=_just_addresses(reader.addresses("to")),
        cc=_just_addresses(reader.addresses("cc")),
        delivered_to=_just_addresses(reader.addresses(*_ADDRESS_HEADERS_FOR_DELIVERY)),
        in_reply_to=extract_message_ids(" ".join(reader.raw_values("in-reply-to"))),
        references=extract_message_ids(" ".join(reader.raw_values("references"))),
        date=_iso_date(reader.raw("date")),
        text=text,
        html=body.html,
        attachments=tuple(body.attachments),
        headers=headers,
        content_type=_safe(message.get_content_type, "text/plain"),
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


def _safe(getter, default):
    try:
        return getter()
    except Exception:
        return default


_ENCODED_WORD_RUN = re.compile(r"(?:=\?[^?\s]+\?[QqBb]\?[^?]*\?=)+")


class _HeaderReader:
    """Reads headers of one compat32 message, decoding stray 8-bit bytes with one charset hint."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self._hint: str | None = None
        self._hint_known = False

    @property
    def charset_hint(self) -> str | None:
        if not self._hint_known:
            self._hint_known = True
            for part in _safe(lambda: list(self.message.walk()), []):
                charset = _safe(part.get_content_charset, None)
                if charset:
                    self._hint = charset
                    break
        return self._hint

    @cached_property
    def _raw_index(self) -> dict[str, list[str]]:
        # raw_items(), not get_all(): compat32 turns 8-bit values into Header objects whose
        # str() has already replaced the bytes we want to decode.
        index: dict[str, list[str]] = {}
        for name, value in self.message.raw_items():
            index.setdefault(str(name).strip().lower(), []).append(str(value))
        return index

    def raw_values(self, name: str) -> list[str]:
        return self._raw_index.get(name, [])

    def raw(self, name: str) -> str:
        values = self.raw_values(name)
        return values[0] if values else ""

    def _hint_if_needed(self, value: str) -> str | None:
        return None if value.isascii() else self.charset_hint

    def decoded_headers(self, defects: list[str]) -> dict[str, tuple[str, ...]]:
        collected: dict[str, list[str]] = {}
        for name, value in self.message.raw_items():
            name, value = str(name), str(value)
            if not value.isascii():
                defects.append(f"8-bit bytes in {name} header")
            key = _recover_8bit(name, None).strip().lower()
            collected.setdefault(key, []).append(decode_header_value(value, self._hint_if_needed(value)))
        return {name: tuple(values) for name, values in collected.items()}

    def addresses(self, *names: str) -> list[tuple[str, str]]:
        """(display name, lower-cased address) pairs; encoded words are shielded while parsing.

        A display name such as ``=?iso-8859-1?Q?B=FCrling,=20Andreas?=`` hides a comma, so it
        is swapped for a placeholder atom before splitting the list and decoded afterwards.
        """
        words: dict[str, str] = {}

        def shield(match: re.Match[str]) -> str:
            key = f"mailbotencodedword{len(words)}x"
            words[key] = match.group(0)
            return key

        values = []
        for name in names:
            for value in self.raw_values(name):
                text = _FOLD.sub("", _recover_8bit(value, self._hint_if_needed(value)))
                text = _WHITESPACE_BETWEEN_ENCODED_WORDS.sub(r"\1", text)
                values.append(_ENCODED_WORD_RUN.sub(shield, text))
        if not values:
            return []
        try:
            pairs = email.utils.getaddresses(values)
        except Exception:
            pairs = []
        result = []
        for display_name, address in pairs:
            address = address.strip().strip("<>").lower()
            if not address:
                continue
            for key, word in words.items():
                display_name = display_name.replace(key, word)
                address = address.replace(key.lower(), word.lower())
            result.append((decode_header_value(display_name).strip(), address))
        return result

    @cached_property
    def sender(self) -> tuple[str, str] | None:
        """The From address; failing that Sender or Reply-To, as a person would read it."""
        candidates = self.addresses("from")
        for pair in candidates:
            if "@" in pair[1]:
                return pair
        for pair in self.addresses("sender") + self.addresses("reply-to"):
            if "@" in pair[1]:
                return pair
        return candidates[0] if candidates else None


_HEADER_LINE = re.compile(rb"^[!-9;-~]+[ \t]*:")
_CONTINUATION_LINE = re.compile(rb"^[ \t]")


def _has_broken_header_block(message: Message) -> bool:
    return any(
        type(defect).__name__ in ("MissingHeaderBodySeparatorDefect", "InvalidHeaderDefect")
        for defect in getattr(message, "defects", ())
    ) or not len(message)


def _repair_header_block(raw: bytes) -> Message | None:
    """Drop junk lines inside the header block (banners, unfolded base64) and parse again."""
    separator = re.search(rb"\r?\n\r?\n", raw)
    if separator is None:
        return None
    head, rest = raw[: separator.start()], raw[separator.start() :]
    lines = re.split(rb"\r?\n", head)
    kept = [line for line in lines if _HEADER_LINE.match(line) or _CONTINUATION_LINE.match(line)]
    if len(kept) == len(lines) or not kept:
        return None
    repaired = email.message_from_bytes(b"\n".join(kept) + rest, policy=email.policy.compat32)
    return repaired if _HeaderReader(repaired).sender else None


def _recover_8bit(value: str, charset_hint: str | None) -> str:
    """The compat32 parser keeps undeclared 8-bit header bytes as surrogates: decode them."""
    if value.isascii():
        return value
    try:
        data = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value  # Already real Unicode text.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _decode_bytes(data, charset_hint or "cp1252")


def _decode_encoded_words(text: str) -> str:
    text = _WHITESPACE_BETWEEN_ENCODED_WORDS.sub(r"\1", text)
    chunks: list[tuple[str, bytes]] = []  # Adjacent words in one charset are joined before decoding.
    output: list[str] = []
    position = 0

    def flush() -> None:
        for charset, data in chunks:
            output.append(_decode_bytes(data, charset))
        chunks.clear()

    for match in _ENCODED_WORD.finditer(text):
        if match.start() > position:
            flush()
            output.append(text[position : match.start()])
        charset = match.group(1).split("*", 1)[0]  # RFC 2231 allows a language suffix.
        data = _decode_encoded_word_payload(match.group(2).upper(), match.group(3))
        if chunks and chunks[-1][0].lower() == charset.lower():
            chunks[-1] = (chunks[-1][0], chunks[-1][1] + data)
        else:
            chunks.append((charset, data))
        position = match.end()
    flush()
    output.append(text[position:])
    return "".join(output)


def _decode_encoded_word_payload(encoding: str, payload: str) -> bytes:
    if encoding == "B":
        padded = payload + "=" * (-len(payload) % 4)
        try:
            return base64.b64decode(padded)
        except (binascii.Error, ValueError):
            return payload.encode("ascii", "replace")
    return quopri.decodestring(payload.replace("_", " ").encode("ascii", "replace"), header=True)


def _codec_for(charset: str | None) -> str | None:
    if not charset:
        return None
    label = charset.strip().strip('"').lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except (LookupError, ValueError):
        return None


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, then UTF-8, then cp1252, never failing."""
    codec = _codec_for(charset)
    for candidate in (codec, "utf-8"):
        if candidate:
            try:
                return data.decode(candidate)
            except (UnicodeDecodeError, LookupError):
                pass
    fallback = codec if codec and codec != "utf-8" else "cp1252"
    return data.decode(fallback, errors="replace")


def _just_addresses(pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(address for _, address in pairs if address))


def _iso_date(value: str) -> str | None:
    if not value.strip():
        return None
    try:
        return email.utils.parsedate_to_datetime(value).isoformat()
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------
# Bodies and attachments


@dataclass
class _Body:
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
            return _tidy_text("\n\n".join(self.plain))
        if self.html_parts:
            return html_to_text("\n".join(self.html_parts))
        return _tidy_text("\n\n".join(self.other_text or self.enclosed_plain or self.unparsed))


def _extract_body(message: Message, defects: list[str], large: bool = False) -> _Body:
    """Bodies and attachments: mail-parser for multipart messages, the standard library around it.

    A large message is left to the standard library: mail-parser keeps every attachment again as base64
    text, and what it adds (a part stranded in an epilogue, a charset it decodes better) is for small odd
    messages, where a large one is nearly all attachment.
    """
    body = _stdlib_body(message, defects)
    if not _safe(message.is_multipart, False) or large:
        return body
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


def _encloses_messages(body: _Body) -> bool:
    return any(content_type.startswith("message/") for content_type in body.part_types)


def _mailparser_text(parsed, categories: set[str], walked: _Body) -> tuple[list[str], list[str]] | None:
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


def _mailparser_attachments(parsed, walked: _Body) -> list[Attachment]:
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


def _stdlib_body(message: Message, defects: list[str]) -> _Body:
    body = _Body()
    _walk(message, body, defects, enclosed=False, depth=0)
    if not body.plain and not body.html_parts and body.unparsed:
        recovered = _reparse_with_sniffed_boundary(message)
        if recovered is not None:
            defects.append("multipart boundary recovered from the body")
            body = _Body()
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
    content_type = _safe(message.get_content_type, "multipart/mixed")
    head = f'Content-Type: {content_type}; boundary="{match.group(1)}"\n\n'.encode("ascii", "replace")
    recovered = email.message_from_bytes(head + _text_to_bytes(payload))
    return recovered if recovered.is_multipart() else None


_MAX_DEPTH = 50
_ENCLOSED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/rfc822-headers"})


def _walk(part: Message, body: _Body, defects: list[str], *, enclosed: bool, depth: int) -> None:
    content_type = _safe(part.get_content_type, "text/plain")
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


def _add_leaf(part: Message, content_type: str, body: _Body, defects: list[str], *, enclosed: bool) -> None:
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
    text = _decode_bytes(data, _safe(part.get_content_charset, None))
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
    return _safe(part.get_content_disposition, None)


def _filename(part: Message) -> str:
    name = _safe(part.get_filename, None) or _safe(lambda: part.get_param("name"), None) or ""
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
        data = _safe(lambda: str(part).encode("utf-8", "surrogateescape"), b"")
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


def _looks_readable(text: str) -> bool:
    """True when text is mostly printable characters rather than binary noise."""
    sample = text[:4000]
    stripped = "".join(sample.split())
    if not stripped:
        return False
    printable = sum(1 for character in stripped if character.isprintable() and character != "\ufffd")
    return printable / len(stripped) >= 0.85


def _tidy_text(text: str) -> str:
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL_CHARACTERS.sub("", text)
    lines = [line.rstrip() for line in text.split("\n")]
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy).strip("\n")


class _HTMLTextExtractor(HTMLParser):
    """Collects visible text; blocks become line breaks, invisible elements are skipped."""

    _INVISIBLE = frozenset({"script", "style", "head", "title", "noscript", "template", "svg"})
    _BLOCKS = frozenset(
        {"p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
         "blockquote", "pre", "hr", "section", "article", "header", "footer", "dd", "dt"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._INVISIBLE:
            self._hidden_depth += 1
        elif tag in self._BLOCKS:
            self.pieces.append("\n")
            if tag == "li":
                self.pieces.append("- ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCKS:
            self.pieces.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._INVISIBLE:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in self._BLOCKS and tag != "li":  # The next item starts its own line.
            self.pieces.append("\n")
        elif tag == "td":
            self.pieces.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.pieces.append(re.sub(r"\s+", " ", data))
