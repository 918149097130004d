"""Header values and address lists, decoded: RFC 2047 encoded words (shielded while an address list is split),
undeclared 8-bit bytes, folding, and a header block with junk lines in it.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import email.utils
import quopri
import re
from email.message import Message
from functools import cached_property

from mailbot.domain.mail.decoding import LINE_BREAKS, decode_bytes, recover_8bit, safely

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=")
_WHITESPACE_BETWEEN_ENCODED_WORDS = re.compile(r"(=\?[^?\s]+\?[QqBb]\?[^?]*\?=)\s+(?==\?[^?\s]+\?[QqBb]\?)")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def decode_header_value(value: str, charset_hint: str | None = None) -> str:
    """Decode one header value: 8-bit bytes, RFC 2047 encoded words, folding.

    ``charset_hint`` is tried for raw 8-bit bytes that are not UTF-8; the body's declared
    charset is usually what the sender's client used for its headers too.
    """
    text = recover_8bit(value, charset_hint)
    text = _FOLD.sub("", text)
    if "=?" in text:
        text = _decode_encoded_words(text)
    return LINE_BREAKS.sub(" ", text)


_ENCODED_WORD_RUN = re.compile(r"(?:=\?[^?\s]+\?[QqBb]\?[^?]*\?=)+")


# RFC 5321 4.5.3.1.3: a path is at most 256 octets, the angle brackets included.
MAX_ADDRESS_LENGTH = 254


class HeaderReader:
    """Reads headers of one compat32 message, decoding stray 8-bit bytes with one charset hint."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self._hint: str | None = None
        self._hint_known = False
        self.too_long = False  # an address past MAX_ADDRESS_LENGTH was left out of what addresses() gave

    @property
    def charset_hint(self) -> str | None:
        if not self._hint_known:
            self._hint_known = True
            for part in safely(lambda: list(self.message.walk()), []):
                charset = safely(part.get_content_charset, None)
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
            key = recover_8bit(name, None).strip().lower()
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
                text = _FOLD.sub("", recover_8bit(value, self._hint_if_needed(value)))
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
            if len(address) > MAX_ADDRESS_LENGTH:
                self.too_long = True  # no server would take it, and an index could not hold it
                continue
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


def has_broken_header_block(message: Message) -> bool:
    return any(
        type(defect).__name__ in ("MissingHeaderBodySeparatorDefect", "InvalidHeaderDefect")
        for defect in getattr(message, "defects", ())
    ) or not len(message)


def repair_header_block(raw: bytes) -> Message | None:
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
    return repaired if HeaderReader(repaired).sender else None


def _decode_encoded_words(text: str) -> str:
    text = _WHITESPACE_BETWEEN_ENCODED_WORDS.sub(r"\1", text)
    chunks: list[tuple[str, bytes]] = []  # Adjacent words in one charset are joined before decoding.
    output: list[str] = []
    position = 0

    def flush() -> None:
        for charset, data in chunks:
            output.append(decode_bytes(data, charset))
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


def just_addresses(pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(address for _, address in pairs if address))


def iso_date(value: str) -> str | None:
    if not value.strip():
        return None
    try:
        return email.utils.parsedate_to_datetime(value).isoformat()
    except Exception:
        return None
