"""Case references and signed per-case reply addresses, pure and without I/O.

A reference is ``1MM-<year>-<sequence>``; a signed reply address is
``complaints+1mm-2026-0042.<signature>@1mm.org.uk``. The signature is a truncated HMAC so staff
commands can only arrive through an address we handed out, and it is lower-case base32 because
mail servers often lower-case local parts: everything here compares case-insensitively.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from email.utils import parseaddr

REF_PATTERN = re.compile(r"1MM-(\d{4})-(\d{4,})", re.IGNORECASE)

# Brackets are required in a subject: a bare "1MM-2026-0042" may be someone quoting another case.
_SUBJECT_REF = re.compile(r"\[\s*(1MM-\d{4}-\d{4,})\s*\]", re.IGNORECASE)
# The part after "+": the reference, then optionally "." and the signature.
_PLUS_DETAIL = re.compile(r"(1MM-\d{4}-\d{4,})(?:\.([a-z0-9]+))?", re.IGNORECASE)
# 16 base32 characters are 80 bits: far beyond guessing by mail, short enough for a readable address.
SIGNATURE_LENGTH = 16


@dataclass(frozen=True)
class PlusAddress:
    ref: str  # upper case, e.g. "1MM-2026-0042"
    signature: str | None  # lower case, or None when the address carried no signature


def format_ref(year: int, seq: int) -> str:
    """``1MM-2026-0042``: the year of opening and the year's sequence, padded to four digits."""
    if not 1000 <= year <= 9999:
        raise ValueError(f"year must have four digits, not {year}")
    if seq < 1:
        raise ValueError(f"sequence numbers start at 1, not {seq}")
    return f"1MM-{year}-{seq:04d}"


def find_ref_in_subject(subject: str) -> str | None:
    """The first ``[1MM-YYYY-NNNN]`` in a subject, whatever Re:/AW:/Fwd:/SV: prefixes surround it."""
    match = _SUBJECT_REF.search(subject or "")
    return match.group(1).upper() if match else None


def sign_ref(ref: str, secret: bytes) -> str:
    """The signature for a reference: truncated HMAC-SHA256 of the upper-case reference, lower-case base32."""
    if not secret:
        # An empty key would let anyone compute a valid signature.
        raise ValueError("the signing secret must not be empty")
    normalised = _normalise_ref(ref)
    digest = hmac.new(secret, normalised.encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:SIGNATURE_LENGTH]


def signed_address(ref: str, secret: bytes, address: str) -> str:
    """``complaints+1mm-2026-0042.<signature>@1mm.org.uk`` for our base address ``complaints@1mm.org.uk``."""
    local, domain = _split_address(address)
    normalised = _normalise_ref(ref)
    return f"{local}+{normalised.lower()}.{sign_ref(normalised, secret)}@{domain}"


def parse_plus_address(addr: str, address: str) -> PlusAddress | None:
    """The case reference (and signature) in one of our plus addresses, or None for any other address.

    ``addr`` may carry a display name (``"Jane" <complaints+1mm-2026-0042@1mm.org.uk>``).
    """
    if "+" not in (addr or ""):
        return None  # no plus address can be in it: most recipients, not worth parsing (~10 us each)
    _, bare = parseaddr(addr)
    if "@" not in bare:
        return None
    their_local, their_domain = bare.rsplit("@", 1)
    our_local, our_domain = _split_address(address)
    if their_domain.lower() != our_domain.lower() or "+" not in their_local:
        return None
    base, detail = their_local.split("+", 1)
    if base.lower() != our_local.lower():
        return None
    match = _PLUS_DETAIL.fullmatch(detail)
    if match is None:
        return None
    signature = match.group(2).lower() if match.group(2) else None
    return PlusAddress(ref=match.group(1).upper(), signature=signature)


def verify_signature(ref: str, signature: str | None, secret: bytes) -> bool:
    """Whether the signature is the one we issued for this reference (constant-time comparison)."""
    if not signature or not REF_PATTERN.fullmatch(ref or ""):
        return False
    expected = sign_ref(ref, secret)
    return hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii", "replace"))


def _normalise_ref(ref: str) -> str:
    if not REF_PATTERN.fullmatch(ref or ""):
        raise ValueError(f"not a case reference: {ref!r}")
    return ref.upper()


def _split_address(address: str) -> tuple[str, str]:
    local, separator, domain = address.rpartition("@")
    if not separator or not local or not domain:
        raise ValueError(f"not an email address: {address!r}")
    return local, domain
