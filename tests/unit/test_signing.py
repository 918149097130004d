"""Case references and signed plus addresses."""

from __future__ import annotations

import pytest

from mailbot.domain.signing import (
    REF_PATTERN,
    SIGNATURE_LENGTH,
    PlusAddress,
    find_ref_in_subject,
    format_ref,
    parse_plus_address,
    sign_ref,
    signed_address,
    verify_signature,
)

SECRET = b"test-secret-for-unit-tests"
OTHER_SECRET = b"another-secret"
OURS = "complaints@1mm.org.uk"


@pytest.mark.parametrize(
    ("year", "seq", "expected"),
    [
        (2026, 1, "1MM-2026-0001"),
        (2026, 42, "1MM-2026-0042"),
        (2026, 9999, "1MM-2026-9999"),
        (2027, 10000, "1MM-2027-10000"),
    ],
)
def test_format_ref(year: int, seq: int, expected: str) -> None:
    assert format_ref(year, seq) == expected
    assert REF_PATTERN.fullmatch(expected)


@pytest.mark.parametrize(("year", "seq"), [(2026, 0), (2026, -1), (26, 1), (12026, 1)])
def test_format_ref_rejects_impossible_values(year: int, seq: int) -> None:
    with pytest.raises(ValueError):
        format_ref(year, seq)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("[1MM-2026-0042] Your complaint", "1MM-2026-0042"),
        ("Re: [1MM-2026-0042] Your complaint", "1MM-2026-0042"),
        ("AW: SV: Fwd: RE: [1MM-2026-0042] Your complaint", "1MM-2026-0042"),
        ("Your complaint [1mm-2026-0042]", "1MM-2026-0042"),
        ("Re: [ 1MM-2026-0042 ]", "1MM-2026-0042"),
        ("Re: [1MM-2027-12345] five digits", "1MM-2027-12345"),
        ("Re: [1MM-2026-0042] about [1MM-2025-0007]", "1MM-2026-0042"),
        ("About 1MM-2026-0042 without brackets", None),
        ("Re: [1MM-2026-42] too short", None),
        ("Re: [1MM-26-0042] short year", None),
        ("", None),
    ],
)
def test_find_ref_in_subject(subject: str, expected: str | None) -> None:
    assert find_ref_in_subject(subject) == expected


def test_signature_is_short_lower_case_and_depends_on_ref_and_secret() -> None:
    signature = sign_ref("1MM-2026-0042", SECRET)
    assert len(signature) == SIGNATURE_LENGTH
    assert signature == signature.lower() and signature.isalnum()
    assert sign_ref("1mm-2026-0042", SECRET) == signature
    assert sign_ref("1MM-2026-0043", SECRET) != signature
    assert sign_ref("1MM-2026-0042", OTHER_SECRET) != signature


@pytest.mark.parametrize(("ref", "secret"), [("1MM-2026-0042", b""), ("not-a-ref", SECRET), ("1MM-2026-42", SECRET)])
def test_sign_ref_refuses_bad_input(ref: str, secret: bytes) -> None:
    with pytest.raises(ValueError):
        sign_ref(ref, secret)


def test_signed_address_round_trips_through_parse_and_verify() -> None:
    address = signed_address("1MM-2026-0042", SECRET, OURS)
    assert address.startswith("complaints+1mm-2026-0042.") and address.endswith("@1mm.org.uk")
    parsed = parse_plus_address(address, OURS)
    assert parsed == PlusAddress("1MM-2026-0042", sign_ref("1MM-2026-0042", SECRET))
    assert verify_signature(parsed.ref, parsed.signature, SECRET)


def test_a_server_upper_casing_the_address_does_not_break_the_signature() -> None:
    parsed = parse_plus_address(signed_address("1MM-2026-0042", SECRET, OURS).upper(), OURS)
    assert parsed is not None
    assert verify_signature(parsed.ref, parsed.signature, SECRET)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("complaints+1mm-2026-0042.abcdef234567abcd@1mm.org.uk", PlusAddress("1MM-2026-0042", "abcdef234567abcd")),
        ("Complaints+1MM-2026-0042@1MM.org.uk", PlusAddress("1MM-2026-0042", None)),
        ('"1MM Complaints" <complaints+1mm-2026-0042.ABC@1mm.org.uk>', PlusAddress("1MM-2026-0042", "abc")),
        ("complaints+1mm-2027-10001.x9@1mm.org.uk", PlusAddress("1MM-2027-10001", "x9")),
        ("complaints@1mm.org.uk", None),
        ("complaints+hello@1mm.org.uk", None),
        ("complaints+1mm-2026-42@1mm.org.uk", None),
        ("complaints+1mm-2026-0042.sig.extra@1mm.org.uk", None),
        ("other+1mm-2026-0042@1mm.org.uk", None),
        ("complaints+1mm-2026-0042@example.com", None),
        ("not an address", None),
        ("", None),
    ],
)
def test_parse_plus_address(addr: str, expected: PlusAddress | None) -> None:
    assert parse_plus_address(addr, OURS) == expected


@pytest.mark.parametrize(
    ("ref", "signature", "secret", "expected"),
    [
        ("1MM-2026-0042", "right", SECRET, True),
        ("1MM-2026-0042", "RIGHT", SECRET, True),
        ("1MM-2026-0042", "right", OTHER_SECRET, False),
        ("1MM-2026-0043", "right", SECRET, False),
        ("1MM-2026-0042", "truncated", SECRET, False),
        ("1MM-2026-0042", None, SECRET, False),
        ("1MM-2026-0042", "", SECRET, False),
        ("1MM-2026-0042", "ünïcode", SECRET, False),
        ("garbage", "right", SECRET, False),
    ],
)
def test_verify_signature(ref: str, signature: str | None, secret: bytes, expected: bool) -> None:
    issued = sign_ref("1MM-2026-0042", SECRET)
    value = {"right": issued, "RIGHT": issued.upper(), "truncated": issued[:-1]}.get(signature or "", signature)
    assert verify_signature(ref, value, secret) is expected
