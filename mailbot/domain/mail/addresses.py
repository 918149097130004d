"""Email addresses as the store keeps them (bare, lower-cased) and as they go on the wire (IDNA domains), and
text made safe to copy into an outgoing header.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
import unicodedata

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
