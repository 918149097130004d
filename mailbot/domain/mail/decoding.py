"""Bytes and header values to text: charset labels as real mail writes them, stray 8-bit bytes, and tidy text."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

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


LINE_BREAKS = re.compile(r"\r\n?|\n")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def safely(getter, default):
    try:
        return getter()
    except Exception:
        return default


def _undecoded_bytes(value: str) -> bytes | None:
    """The bytes of a header value the compat32 parser could not decode (it keeps them as surrogates), or None
    when the value is plain or already real Unicode text."""
    if value.isascii():
        return None
    try:
        return value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None


def _utf8_or(value: str, otherwise: Callable[[bytes], str]) -> str:
    """The value with the bytes compat32 could not decode read as UTF-8, or by ``otherwise`` when they are not."""
    data = _undecoded_bytes(value)
    if data is None:
        return value
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return otherwise(data)


def recover_8bit(value: str, charset_hint: str | None) -> str:
    """The compat32 parser keeps undeclared 8-bit header bytes as surrogates: decode them."""
    if value.isascii():
        return value  # nearly every header of every message: no call further
    return _utf8_or(value, lambda data: decode_bytes(data, charset_hint or "cp1252"))


def identifier_text(value: str) -> str:
    """A Message-ID, In-Reply-To or References value with its 8-bit bytes read as UTF-8 where they are UTF-8,
    and otherwise one character for each byte (Latin-1), whatever the message's charset.

    Never U+FFFD and never the message's own charset: two ids that differ in one undecodable byte must stay two
    ids (as U+FFFD both, the second person's complaint was taken for a duplicate of the first and dropped), and
    a reply must spell the id it answers as the message it answers did.
    """
    return _utf8_or(value, lambda data: data.decode("latin-1"))


def _codec_for(charset: str | None) -> str | None:
    if not charset:
        return None
    label = charset.strip().strip('"').lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except (LookupError, ValueError):
        return None


def decode_bytes(data: bytes, charset: str | None) -> str:
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


def looks_readable(text: str) -> bool:
    """True when text is mostly printable characters rather than binary noise."""
    sample = text[:4000]
    stripped = "".join(sample.split())
    if not stripped:
        return False
    printable = sum(1 for character in stripped if character.isprintable() and character != "\ufffd")
    return printable / len(stripped) >= 0.85


def tidy_text(text: str) -> str:
    text = LINE_BREAKS.sub("\n", text)
    text = _CONTROL_CHARACTERS.sub("", text)
    lines = [line.rstrip() for line in text.split("\n")]
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy).strip("\n")
