"""The web form's pure core: validation, the subject staff see, who the client is, the limits, the tokens."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta, timezone

import pytest

from mailbot.domain.proxies import client_address, parse_networks
from mailbot.domain.webform import (
    Limits,
    RateLimit,
    Submission,
    Upload,
    check_csrf,
    check_status_token,
    compose,
    csrf_token,
    status_token,
    subject_of,
    validate,
)

NOW = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)
SECRET = b"k" * 32
GOOD = {"reason": "No call back", "where_when": "Phone, 3 Nov", "outcome": "A call", "name": "Jane Doe",
        "email": "jane@example.com", "role": "mentee"}


@pytest.mark.parametrize("changes, uploads, errors", [
    ({}, [], set()),
    ({"email": "", "postal": "12 High St"}, [], set()),
    ({"email": "", "postal": ""}, [], {"email"}),
    ({"email": "jane@example.com\nBcc: x@evil.example"}, [], {"email"}),
    ({"email": "jane@localhost"}, [], {"email"}),
    ({"phone": "+44 (0)20 7946-0000"}, [], set()),
    ({"phone": "0207\n946"}, [], {"phone"}),
    ({"name": "x" * 201}, [], {"name"}),
    ({"reason": "\x00\x07 "}, [], {"reason"}),
    ({}, [Upload("a.pdf", "application/pdf", b"x" * 11)], {"files"}),
    ({}, [Upload("run.js", "text/plain", b"x")], {"files"}),
    ({}, [Upload(f"{n}.png", "image/png", b"x") for n in range(3)], {"files"}),
    ({}, [Upload("", "", b"")], set()),  # the empty file input a browser always sends
])
def test_validate(changes: dict[str, str], uploads: list[Upload], errors: set[str]) -> None:
    values, found = validate({**GOOD, **changes}, uploads, Limits(max_files=2, max_file_bytes=10))
    assert set(found) == errors
    assert values["name"] == (GOOD | changes).get("name", "").strip()


@pytest.mark.parametrize("reason, subject", [
    ("Nobody called me back", "Web form: Nobody called me back"),
    ("About [1MM-2026-0001] again", "Web form: About again"),
    ("line one\nline two", "Web form: line one line two"),
    ("", "Web form complaint"),
    ("word " * 30, "Web form: " + ("word " * 14).strip() + "..."),
])
def test_subject_of(reason: str, subject: str) -> None:
    assert subject_of({"reason": reason}) == subject


PROXY = parse_networks("10.0.0.0/8, 192.0.2.1")


@pytest.mark.parametrize("peer, forwarded, client", [
    ("203.0.113.5", None, "203.0.113.5"),
    ("203.0.113.5", "198.51.100.1", "203.0.113.5"),  # not our proxy: its header proves nothing
    ("10.1.2.3", "198.51.100.1", "198.51.100.1"),
    ("10.1.2.3", "1.1.1.1, 198.51.100.1", "198.51.100.1"),  # the left-most was written by the client
    ("10.1.2.3", "198.51.100.1, 192.0.2.1", "198.51.100.1"),  # through two of our proxies
    ("10.1.2.3", "not-an-ip", "10.1.2.3"),
    ("10.1.2.3", "", "10.1.2.3"),
])
def test_client_address(peer: str, forwarded: str | None, client: str) -> None:
    assert client_address(peer, forwarded, PROXY) == client


def test_a_bad_trusted_proxy_is_named() -> None:
    with pytest.raises(ValueError, match="'proxy.example' is not an address"):
        parse_networks("10.0.0.1, proxy.example")


def test_rate_limit_slides() -> None:
    limit = RateLimit(2)
    for minutes in (0, 10):
        assert limit.allowed("a", NOW + timedelta(minutes=minutes))
        limit.record("a", NOW + timedelta(minutes=minutes))
    assert not limit.allowed("a", NOW + timedelta(minutes=20))
    assert limit.retry_at("a", NOW + timedelta(minutes=20)) == NOW + timedelta(hours=1)
    assert limit.allowed("b", NOW + timedelta(minutes=20))
    assert limit.allowed("a", NOW + timedelta(minutes=60))


def test_csrf_token_is_bound_to_the_browser_and_the_hour() -> None:
    token = csrf_token(SECRET, "browser-1", NOW, "n1")
    assert check_csrf(SECRET, "browser-1", token, NOW + timedelta(minutes=5)) == "n1"
    assert check_csrf(SECRET, "browser-2", token, NOW) is None
    assert check_csrf(b"x" * 32, "browser-1", token, NOW) is None
    assert check_csrf(SECRET, "browser-1", token, NOW + timedelta(hours=3)) is None
    assert check_csrf(SECRET, "browser-1", token.replace("n1", "n2"), NOW) is None
    assert check_csrf(SECRET, "", token, NOW) is None
    assert check_csrf(SECRET, "browser-1", "garbage", NOW) is None


def test_status_token_is_bound_to_the_case_and_its_nonce() -> None:
    token = status_token(SECRET, "1MM-2026-0001", "nonce")
    assert check_status_token(SECRET, "1MM-2026-0001", "nonce", token)
    assert not check_status_token(SECRET, "1MM-2026-0002", "nonce", token)
    assert not check_status_token(SECRET, "1MM-2026-0001", "new-nonce", token)
    assert not check_status_token(SECRET, "1MM-2026-0001", None, token)


@pytest.mark.parametrize("filename, content_type, name_carried, type_carried", [
    ("letter.pdf", "application/pdf", "letter.pdf", "application/pdf"),
    ("photo.JPG", "Image/JPEG", "photo.JPG", "image/jpeg"),
    ("notes.txt", "", "notes.txt", "application/octet-stream"),  # the browser did not say
    ("scan.pdf", "application/" + "p" * 3000, "scan.pdf", "application/octet-stream"),
    ("scan.pdf", "application/pdf\"; x=\"", "scan.pdf", "application/octet-stream"),
    ("a\x00b\r\nc.pdf", "application/pdf", "ab c.pdf", "application/pdf"),
    ("x" * 300 + ".pdf", "application/pdf", "x" * 200, "application/pdf"),
])
def test_a_form_s_files_reach_the_pipeline_with_a_valid_type_and_a_one_line_name(
        filename: str, content_type: str, name_carried: str, type_carried: str) -> None:
    raw = compose(Submission(GOOD, (Upload(filename, content_type, b"%PDF-1.4"),)), to="complaints@1mm.org.uk",
                  from_fallback="form@1mm.org.uk", message_id="<f1@1mm.org.uk>", now=NOW)
    assert max(len(line) for line in raw.splitlines()) <= 998
    attachment = next(email.message_from_bytes(raw, policy=email.policy.default).iter_attachments())
    assert (attachment.get_filename(), attachment.get_content_type()) == (name_carried, type_carried)
    assert attachment.get_content() == b"%PDF-1.4"
