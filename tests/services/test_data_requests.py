"""Issue 17, requests about personal data by email: recognised, their own case on the one-month clock, extendable by
two months at most, answered with #resolve answered|refused, listed in the digest until answered, and marked by
staff with #data-request where the words did not say so."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mailbot.store.db import from_db
from mailbot.store.db import session as new_session
from tests.services.conftest import MONDAY, World, mail

CEO = "alex.morgan@1mm.org.uk"


def _deadline(world: World, ref: str) -> datetime | None:
    from sqlmodel import select

    from mailbot.store.models import Deadline

    case = world.case(ref)
    with new_session(world.app.engine) as s:
        rows = s.exec(select(Deadline).where(Deadline.case_id == case.id, Deadline.superseded == False)).all()  # noqa: E712
    [row] = [r for r in rows if r.name == "data_request_response"]
    return from_db(row.due_at)


def test_a_request_for_a_copy_of_ones_data_is_its_own_case_on_the_one_month_clock(world: World) -> None:
    outcome = world.receive(mail(subject="My data", body="Please send me a copy of all my personal data."))
    case = world.case(outcome.ref or "")
    assert (case.procedure, case.category, case.assignee) == ("data_request", "data_protection",
                                                              "priya.shah@1mm.org.uk")
    # Monday 16 November 2026: one month is Wednesday 16 December, to the end of the day.
    due = _deadline(world, case.ref)
    assert due is not None and due.astimezone(timezone.utc) == datetime(2026, 12, 16, 23, 59, 59, tzinfo=timezone.utc)
    letters = world.take_letters()
    ack = next(x for x in letters if x.kind == "data-request-acknowledgement")
    assert ack.to == "jane@example.com" and "request about the personal data we hold about you" in ack.text
    assert "by the end of Wednesday 16 December 2026" in ack.text and "www.ico.org.uk" in ack.text
    note = next(x for x in letters if x.kind == "staff-notification")
    assert "New request about personal data" in note.text
    assert "data_request" in world.events(case.ref)


def test_a_complaint_about_how_data_was_used_stays_a_complaint(world: World) -> None:
    outcome = world.receive(mail(subject="Data breach", body="You shared my personal data with my school without asking."))
    case = world.case(outcome.ref or "")
    assert (case.procedure, case.category) == ("external", "data_protection")


def test_the_clock_extends_by_two_months_at_most_and_the_answer_closes_it(world: World) -> None:
    ref = world.receive(mail(subject="Right to be forgotten", body="Please delete my details.")).ref or ""
    world.take_letters()
    world.advance(days=3)
    world.staff_reply(ref, "#extend 2027-02-18 the records are spread over three regions")
    [refused] = [x for x in world.take_letters() if x.kind == "command-result"]
    assert "two more months at most: until Tuesday 16 February 2027" in refused.text
    world.staff_reply(ref, "#extend 2027-02-16 the records are spread over three regions")
    letters = world.take_letters()
    extension = next(x for x in letters if x.kind == "data-request-extension")
    assert "Tuesday 16 February 2027" in extension.text and "spread over three regions" in extension.text

    world.staff_reply(ref, "#resolve upheld\nDone.")
    [wrong] = [x for x in world.take_letters() if x.kind == "command-result"]
    assert "close it with #resolve answered|refused" in wrong.text and world.case(ref).status == "open"
    world.staff_reply(ref, "#resolve answered\nDear Jane, we have erased your details from every system.")
    answer = next(x for x in world.take_letters() if x.kind == "data-request-answered")
    assert "erased your details" in answer.text and "Information Commissioner's Office" in answer.text
    case = world.case(ref)
    assert (case.status, case.outcome) == ("resolved", "answered")


def test_staff_mark_a_request_the_words_missed_and_the_complaint_runs_on(world: World) -> None:
    ref = world.receive(mail(subject="Missed sessions", body="Nobody came to three sessions.")).ref or ""
    world.advance(days=2)
    world.receive(mail(subject=f"Re: [{ref}] We have received your complaint",
                       body="And I want to see everything your coordinator wrote down about me.", date=world.now))
    arrived = world.now
    world.take_letters()
    world.advance(hours=1)
    world.staff_reply(ref, "#data-request access")
    letters = world.take_letters()
    [done] = [x for x in letters if x.kind == "command-result"]
    [ack] = [x for x in letters if x.kind == "data-request-acknowledgement"]
    request = ack.subject.split("]")[0].lstrip("[")
    assert request != ref and f"Opened {request} for the request (access)" in done.text
    assert f"{ref} goes on as a complaint" in done.text
    assert world.case(ref).procedure == "external" and world.case(ref).status == "open"
    new = world.case(request)
    assert (new.procedure, new.complainant) == ("data_request", "jane@example.com")
    # The clock runs from the message that asked, not from the staff member's reply.
    assert from_db(new.opened_at) == arrived
    assert _deadline(world, request) == datetime(2026, 12, 18, 23, 59, 59, tzinfo=timezone.utc)

    # On the request itself, #data-request corrects what it asks for.
    world.staff_reply(request, "#data-request erasure")
    [done] = [x for x in world.take_letters() if x.kind == "command-result"]
    assert "Recorded this as a request for erasure of the personal data" in done.text


def test_the_digest_lists_a_request_every_day_until_it_is_answered(world: World) -> None:
    ref = world.receive(mail(subject="SAR", body="This is a subject access request.")).ref or ""
    world.take_letters()

    def digest_text(now: datetime) -> str:
        world.app.digest.send_now(now, CEO)
        [letter] = [x for x in world.take_letters() if x.kind == "digest"]
        return letter.text

    text = digest_text(MONDAY + timedelta(days=1))
    assert "REQUESTS ABOUT PERSONAL DATA, NOT YET ANSWERED (1)" in text
    assert f"[{ref}] a copy of their personal data: received Monday 16 November 2026, answer by Wednesday 16 " \
           f"December 2026" in text
    late = digest_text(datetime(2026, 12, 17, 9, 0, tzinfo=timezone.utc))
    assert "OVERDUE: the law's deadline was Wednesday 16 December 2026" in late
    world.advance(days=31)
    world.staff_reply(ref, "#resolve answered\nYour data is attached.")
    world.take_letters()
    assert "REQUESTS ABOUT PERSONAL DATA" not in digest_text(datetime(2026, 12, 18, 9, 0, tzinfo=timezone.utc))
