"""The complaints form and the status page over HTTP (Starlette's test client, the real services, SQLite).

The browser tests (tests/integration/test_web_browser.py) drive the same pages in Chromium; these cover every
bad input quickly: each gets the right page and status, nothing is half-saved, nothing that passed is lost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlmodel import col, select
from starlette.testclient import TestClient

from mailbot.domain.proxies import parse_networks
from mailbot.store.db import session as new_session
from mailbot.store.models import Case, MailMessage
from mailbot.web.app import build
from tests.services.conftest import World

GOOD = {"reason": "Nobody called me back about volunteering.", "where_when": "The phone call on 3 November.",
        "people": "", "outcome": "A call back and an apology.", "name": "Jane Doe", "email": "jane@example.com",
        "postal": "", "phone": "020 7946 0000", "role": "mentee"}


@dataclass
class Browser:
    client: TestClient
    world: World

    def token(self, path: str = "/complaints") -> str:
        page = self.client.get(path)
        assert page.status_code == 200
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found
        return found.group(1)

    def send(self, fields: dict[str, str] | None = None, files: list[tuple[str, bytes, str]] | None = None,
             token: str | None = None, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        data = {**GOOD, **(fields or {})}
        data["csrf"] = self.token() if token is None else token
        upload = [("files", (name, body, kind)) for name, body, kind in (files or [])] or [("files", ("", b"", ""))]
        return self.client.post("/complaints", data=data, files=upload, headers=headers or {})

    def cases(self) -> list[Case]:
        with new_session(self.world.app.engine) as s:
            rows = list(s.exec(select(Case).order_by(col(Case.id))).all())
            for row in rows:
                s.expunge(row)
            return rows


@pytest.fixture
def browser(world: World) -> Iterator[Browser]:
    app = build(lambda: {"state": "healthy"}, world.app.metrics, world.app.web_form.routes())
    with TestClient(app, base_url="http://127.0.0.1:8080", client=("127.0.0.1", 50000)) as client:
        yield Browser(client, world)


def test_a_complaint_sent_by_the_form_opens_a_case_and_shows_its_reference_and_dates(browser: Browser) -> None:
    page = browser.send()
    assert page.status_code == 200
    assert "Your reference is<strong>1MM-2026-0001</strong>" in page.text
    # The acknowledgement's own words for the stage-1 promises.
    ack = next(letter for letter in browser.world.outbox() if letter.kind == "acknowledgement")
    promise = re.search(r"reply to you by (.+?)\.", ack.text)
    assert promise and f"reply to you by <strong>{promise.group(1)}</strong>" in page.text
    [case] = browser.cases()
    assert (case.channel, case.complainant, case.complainant_name) == ("web", "jane@example.com", "Jane Doe")
    assert ack.to == "jane@example.com"
    assert "/cases/1MM-2026-0001/" in ack.text and "/complaints/privacy" in ack.text
    note = next(letter for letter in browser.world.outbox() if letter.kind == "staff-notification")
    for heading in ("What is your complaint about?", "Where and when did it happen?", "What would you like to happen?",
                    "Your full name", "Daytime telephone number", "Are you"):
        assert heading in note.text
    with new_session(browser.world.app.engine) as s:
        inbound = s.exec(select(MailMessage).where(MailMessage.direction == "in")).one()
        assert json.loads(inbound.detail or "{}")["form"]["outcome"] == GOOD["outcome"]


def test_someone_with_no_email_gives_a_postal_address_and_staff_post_the_letters(browser: Browser) -> None:
    page = browser.send({"email": "", "postal": "12 High Street\nLeeds LS1 1AA"})
    assert page.status_code == 200 and "We will post you a letter" in page.text
    [case] = browser.cases()
    assert case.channel == "web" and case.postal_address == "12 High Street Leeds LS1 1AA"
    assert case.complainant.endswith("@post.invalid")
    kinds = [(letter.kind, letter.delivery) for letter in browser.world.outbox()]
    assert ("acknowledgement", "by_post") in kinds and ("post-this-letter", "pending") in kinds


@dataclass(frozen=True)
class Bad:
    name: str
    fields: dict[str, str]
    field: str  # the field the error is beside ("" for none)
    words: str


BAD = [
    Bad("nothing about the complaint", {"reason": " ", "where_when": "", "outcome": ""}, "reason",
        "Tell us what your complaint is about"),
    Bad("no name", {"name": ""}, "name", "Enter your full name"),
    Bad("neither email nor postal address", {"email": "", "postal": ""}, "email",
        "Enter your email address, or a postal address"),
    Bad("a malformed email address", {"email": "jane@@example"}, "email", "Enter an email address in the correct"),
    Bad("an email address with a line break", {"email": "jane@example.com\nBcc: x@evil.example"}, "email",
        "Enter an email address in the correct"),
    Bad("an over-long reason", {"reason": "x" * 5001}, "reason", "5,000 characters or fewer"),
    Bad("a telephone number that is not one", {"phone": "call me maybe"}, "phone", "Enter a telephone number"),
    Bad("no role", {"role": ""}, "role", "Select whether you are a mentee"),
    Bad("a role that is not offered", {"role": "admin"}, "role", "Select whether you are a mentee"),
]


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
def test_a_form_with_a_mistake_comes_back_with_everything_typed_and_the_error_beside_the_field(
        browser: Browser, bad: Bad) -> None:
    page = browser.send(bad.fields)
    assert page.status_code == 400
    assert "There is a problem" in page.text
    target = "role-mentee" if bad.field == "role" else bad.field
    assert f'<a href="#{target}">' in page.text and bad.words in page.text
    assert f'id="{bad.field}-error"' in page.text
    # Nothing typed is lost (shown escaped), and nothing was opened.
    kept = {**GOOD, **bad.fields}
    for name in ("where_when", "outcome", "name"):
        if kept[name].strip():
            assert kept[name] in page.text
    assert browser.cases() == []


def test_markup_typed_into_the_form_is_shown_as_text(browser: Browser) -> None:
    page = browser.send({"name": "<script>alert(1)</script>", "email": "not an email"})
    assert page.status_code == 400
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text


def test_a_name_cannot_add_a_header_and_a_typed_reference_threads_nothing(browser: Browser) -> None:
    browser.send({"reason": "About [1MM-2026-0009] and more", "name": "Jane\r\nBcc: victim@example.org"})
    [case] = browser.cases()
    assert case.complainant_name == "Jane Bcc: victim@example.org" and "1MM-2026-0009" not in (case.subject or "")
    with new_session(browser.world.app.engine) as s:
        raw = s.exec(select(MailMessage.raw).where(MailMessage.direction == "in")).one()
    headers = raw.split(b"\n\n", 1)[0]
    assert not re.search(rb"^Bcc:", headers, re.M | re.I)


def test_the_honeypot_gets_an_ordinary_page_and_opens_nothing(browser: Browser) -> None:
    page = browser.send({"website": "http://spam.example"})
    assert page.status_code == 200 and "Thank you" in page.text
    assert browser.cases() == [] and browser.world.outbox() == []


def test_a_missing_or_forged_token_sends_nothing_and_keeps_what_was_typed(browser: Browser) -> None:
    for token in ("", "123.abc.def", browser.token().replace(".", "x", 1)):
        page = browser.send(token=token)
        assert page.status_code == 400 and "nothing was sent this time" in page.text
        assert GOOD["outcome"] in page.text
    assert browser.cases() == []


def test_a_replayed_form_opens_no_second_case(browser: Browser) -> None:
    token = browser.token()
    assert browser.send(token=token).status_code == 200
    again = browser.send(token=token)
    assert again.status_code == 400 and "sent already" in again.text
    assert len(browser.cases()) == 1


def test_a_token_from_another_browser_is_refused(browser: Browser, world: World) -> None:
    token = browser.token()
    browser.client.cookies.clear()
    browser.client.get("/complaints")  # a different browser cookie now
    assert browser.send(token=token).status_code == 400
    assert browser.cases() == []


def test_five_an_hour_from_one_email_address_then_a_page_saying_when_to_try_again(browser: Browser) -> None:
    for n in range(5):
        assert browser.send({"reason": f"Complaint {n}"}).status_code == 200
    page = browser.send({"reason": "Complaint 6"})
    assert page.status_code == 429 and "Please try again after" in page.text
    assert "Complaint 6" in page.text  # what they typed comes back with the page
    assert int(page.headers["Retry-After"]) == 3600
    assert len(browser.cases()) == 5
    browser.world.advance(minutes=61)
    assert browser.send({"reason": "An hour later"}).status_code == 200


def test_a_burst_of_fifty_from_one_client_is_stopped_at_twenty(browser: Browser) -> None:
    codes = [browser.send({"email": f"person{n}@example.com"}).status_code for n in range(50)]
    assert codes == [200] * 20 + [429] * 30
    assert len(browser.cases()) == 20


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(browser: Browser) -> None:
    browser.world.app.web_form.proxies = parse_networks("127.0.0.0/8")  # MAILBOT_TRUSTED_PROXIES
    for n in range(20):
        browser.send({"email": f"a{n}@example.com"}, headers={"X-Forwarded-For": "203.0.113.9"})
    assert browser.send({"email": "b@example.com"}, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 429
    # A different client behind the same proxy is not held up.
    assert browser.send({"email": "c@example.com"}, headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 200


def test_files_are_kept_with_the_complaint_and_refused_ones_say_why(browser: Browser) -> None:
    page = browser.send(files=[("invoice.exe", b"MZ...", "application/octet-stream")])
    assert page.status_code == 400 and "invoice.exe is a kind of file we cannot accept" in page.text
    page = browser.send(files=[(f"p{n}.jpg", b"\xff\xd8", "image/jpeg") for n in range(6)])
    assert page.status_code == 400 and "Attach 5 files or fewer" in page.text
    assert browser.cases() == []
    page = browser.send(files=[("letter.pdf", b"%PDF-1.4 sample", "application/pdf")])
    assert page.status_code == 200
    note = next(letter for letter in browser.world.outbox() if letter.kind == "staff-notification")
    assert "letter.pdf" in note.text


def test_a_request_over_the_size_limit_gets_a_clear_page(browser: Browser) -> None:
    big = b"x" * (11 * 1024 * 1024)
    page = browser.send(files=[("a.pdf", big, "application/pdf")])
    assert page.status_code == 413 and "too large" in page.text
    assert browser.cases() == []


def status_path(browser: Browser) -> str:
    ack = next(letter for letter in browser.world.outbox() if letter.kind == "acknowledgement")
    found = re.search(r"http://127\.0\.0\.1:8080(/cases/\S+)", ack.text)
    assert found
    return found.group(1)


def test_the_status_page_shows_the_stage_the_dates_and_our_letters_and_nothing_internal(browser: Browser) -> None:
    browser.send()
    path = status_path(browser)
    page = browser.client.get(path)
    assert page.status_code == 200
    assert "Your complaint 1MM-2026-0001" in page.text and "We have received your complaint" in page.text
    assert "staff-notification" not in page.text and "What would you like to happen?" not in page.text
    assert "priya" not in page.text.lower()
    browser.world.staff_reply("1MM-2026-0001", "#note\nShe sounded upset; check the rota first.")
    assert "check the rota" not in browser.client.get(path).text


@pytest.mark.parametrize("mangle", [
    lambda p: p[:-1] + ("A" if p[-1] != "A" else "B"),  # one character of the token
    lambda p: p.replace("1MM-2026-0001", "1MM-2026-0002"),  # another case with this token
    lambda p: p.rsplit("/", 1)[0] + "/",  # no token
    lambda p: p + "x" * 10,
])
def test_a_wrong_or_tampered_link_is_a_plain_404(browser: Browser, mangle) -> None:  # type: ignore[no-untyped-def]
    browser.send()
    browser.send({"email": "ken@example.com"})
    page = browser.client.get(mangle(status_path(browser)))
    assert page.status_code == 404 and page.text == "Not Found"


def test_information_added_on_the_status_page_arrives_like_a_reply(browser: Browser) -> None:
    browser.send()
    path = status_path(browser)
    empty = browser.client.post(path, data={"csrf": browser.token(path), "information": "  "})
    assert empty.status_code == 400 and "Enter the information you want to add" in empty.text
    page = browser.client.post(path, data={"csrf": browser.token(path), "information": "I have the call log too."})
    assert page.status_code == 200 and "We have added what you sent" in page.text
    assert browser.world.inbound_kinds("1MM-2026-0001") == ["new_case", "follow_up"]
    forged = browser.client.post(path, data={"csrf": "1.2.3", "information": "again"})
    assert forged.status_code == 400
    assert browser.world.inbound_kinds("1MM-2026-0001") == ["new_case", "follow_up"]


def test_new_status_link_makes_the_old_link_show_nothing(browser: Browser) -> None:
    browser.send()
    old = status_path(browser)
    browser.world.staff_reply("1MM-2026-0001", "#new-status-link")
    assert browser.client.get(old).status_code == 404
    result = next(letter for letter in browser.world.outbox() if letter.kind == "command-result")
    new = re.search(r"http://127\.0\.0\.1:8080(/cases/\S+?)\s", result.text)
    assert new and browser.client.get(new.group(1)).status_code == 200


def test_the_privacy_notice_says_what_is_kept_why_for_how_long_and_who_to_ask(browser: Browser) -> None:
    page = browser.client.get("/complaints/privacy")
    assert page.status_code == 200
    for words in ("What we keep", "Why", "For how long", "6 years", "Who to ask", "Information Commissioner"):
        assert words in page.text


def test_safeguarding_words_in_the_form_alert_the_safeguarding_lead_at_once(browser: Browser) -> None:
    browser.send({"reason": "My son is scared of his mentor since he threatened him."})
    kinds = [letter.kind for letter in browser.world.outbox()]
    assert "safeguarding-alert" in kinds and "acknowledgement" in kinds


def test_a_request_about_personal_data_by_the_form_gets_the_laws_date_and_its_own_letters(browser: Browser) -> None:
    page = browser.send({"reason": "Please send me a copy of all my personal data.", "outcome": "A copy of it."})
    assert page.status_code == 200
    assert "The law gives us one month to answer your request about your personal data" in page.text
    [case] = browser.cases()
    assert case.procedure == "data_request"
    ack = next(letter for letter in browser.world.outbox() if letter.kind == "data-request-acknowledgement")
    found = re.search(r"http://127\.0\.0\.1:8080(/cases/\S+)", ack.text)
    assert found
    status = browser.client.get(found.group(1)).text
    assert "We have received your request about your personal data" in status
    assert "Your request 1MM-2026-0001" in status and "Add to my request" in status
    assert "we will answer by <strong>the end of Wednesday 16 December 2026</strong>" in status
