"""What `mailbot cases --json`, `case` and `unfiled` read, on SQLite and PostgreSQL: the reads name their columns
themselves (no ORM), and must give back what the tables' own columns wrote, as the --json contract spells it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from mailbot.store import case_reads
from mailbot.store.db import reading, to_db
from mailbot.store.db import session as new_session
from mailbot.store.light_tables import CASES
from mailbot.store.models import Case, Deadline, Event, MailMessage, MentorAction, Restriction

# Written with an offset, to show the times come back as the same instants, in UTC.
PARIS = timezone(timedelta(hours=1))
T = datetime(2026, 12, 7, 10, 0, tzinfo=PARIS)
UTC = "2026-12-07T09:00:00+00:00"  # T in UTC


def utc(delta: timedelta = timedelta()) -> str:
    return (T + delta).astimezone(timezone.utc).isoformat()


def new_case(ref: str, seq: int, **values: object) -> Case:
    return Case(ref=ref, year=2026, seq=seq, complainant=f"{ref.lower()}@example.org", subject=f"About {ref}",
                opened_at=to_db(T), stage_started_at=to_db(T), updated_at=to_db(T + timedelta(hours=1)), **values)


def message(case: Case | None, n: int, direction: str, at: timedelta, **values: object) -> MailMessage:
    return MailMessage(case_id=case.id if case else None, direction=direction, message_id=f"<{n}@example.org>",
                       subject=f"message {n}", from_addr="jo@example.org", to_addrs="complaints@1mm.org.uk",
                       kind=values.pop("kind", "new_case"), at=to_db(T + at), raw=b"the bytes", **values)


@pytest.fixture
def filled(store_engine: Engine) -> Engine:
    with new_session(store_engine) as s:
        # Written out of order: the listing goes by reference number, not by row.
        later = new_case("1MM-2026-0002", 2, status="closed", closed_at=to_db(T + timedelta(days=3)),
                         outcome="upheld", channel="post", postal_address="1 High Street")
        first = new_case("1MM-2026-0001", 1, assignee="priya.shah@1mm.org.uk", category="safeguarding")
        s.add_all([later, first])
        s.flush()
        s.add_all([
            message(first, 1, "in", timedelta(minutes=0)),
            message(first, 2, "out", timedelta(minutes=1), kind="acknowledgement", delivery="sent",
                    sent_at=to_db(T + timedelta(minutes=2))),
            message(first, 3, "out", timedelta(minutes=1), kind="staff-notification", delivery="failed",
                    last_error="550 no such user"),
            message(None, 4, "in", timedelta(minutes=5), kind="bounce"),
            message(later, 5, "in", timedelta(minutes=6)),
        ])
        s.add_all([
            Deadline(case_id=first.id, stage=1, name="first_response", due_at=to_db(T + timedelta(days=1))),
            Deadline(case_id=first.id, stage=1, name="full_response", due_at=to_db(T + timedelta(days=2)),
                     superseded=True),  # and one with nothing in its place is not given at all
            # An extension supersedes a deadline (never deletes it): the summary gives the one that stands.
            Deadline(case_id=first.id, stage=1, name="resolution", due_at=to_db(T + timedelta(days=20)),
                     superseded=True),
            Deadline(case_id=first.id, stage=1, name="resolution", due_at=to_db(T + timedelta(days=30))),
        ])
        s.add(Restriction(case_id=first.id, complainant=first.complainant, state="restricted",
                          mode="acknowledge-only", options=json.dumps(["no-phone"]), reason="forty emails a day",
                          warned_at=to_db(T), warned_by="ceo@1mm.org.uk", started_at=to_db(T + timedelta(days=1)),
                          ends_at=to_db(T + timedelta(days=90)), review_at=to_db(T + timedelta(days=30)),
                          decided_by="ceo@1mm.org.uk", exceptional="violent language"))
        s.add(MentorAction(case_id=first.id, mentor_email="mentor@example.org", action="informal-warning",
                           reason="late twice", by="tom.okafor@1mm.org.uk", at=to_db(T + timedelta(hours=2))))
        s.add(Event(case_id=first.id, at=to_db(T), type="case_opened", detail=json.dumps({"assignee": "priya"})))
        s.add(Event(case_id=first.id, at=to_db(T + timedelta(hours=1)), type="note", detail="", actor="priya"))
        s.commit()
    return store_engine


def test_every_case_is_summarised_in_reference_order_with_the_deadlines_that_stand(filled: Engine) -> None:
    with reading(filled) as conn:
        first, later = case_reads.summaries(conn)
    assert first == {
        "ref": "1MM-2026-0001", "status": "open", "stage": 1, "procedure": "external", "channel": "email",
        "postal_address": None, "complainant": "1mm-2026-0001@example.org", "from_addr": None, "reply_to": None,
        "subject": "About 1MM-2026-0001", "opened_at": UTC, "message_count": 3,
        "assignee": "priya.shah@1mm.org.uk", "category": "safeguarding",
        "deadlines": {"first_response": utc(timedelta(days=1)), "resolution": utc(timedelta(days=30))},
        "outcome": None, "merged_into": None,
        "restriction": {
            "state": "restricted", "mode": "acknowledge-only", "options": ["no-phone"], "since": utc(timedelta(days=1)),
            "until": utc(timedelta(days=90)), "review_at": utc(timedelta(days=30)), "decided_by": "ceo@1mm.org.uk",
            "warned_at": UTC, "warned_by": "ceo@1mm.org.uk", "reason": "forty emails a day",
            "exceptional": "violent language", "ended_at": None},
        "updated_at": utc(timedelta(hours=1)), "closed_at": None,
    }
    assert (later["ref"], later["status"], later["outcome"], later["channel"], later["postal_address"]) == (
        "1MM-2026-0002", "closed", "upheld", "post", "1 High Street")
    assert (later["message_count"], later["deadlines"], later["restriction"]) == (1, {}, None)
    assert later["closed_at"] == utc(timedelta(days=3))


def test_a_case_in_detail_has_its_messages_actions_and_events_and_nobody_elses(filled: Engine) -> None:
    with reading(filled) as conn:
        ids = dict(conn.execute(select(CASES.c.ref, CASES.c.id)).all())
        detail = case_reads.detail(conn, "1mm-2026-0001")  # as typed, in either case
        missing = case_reads.detail(conn, "1MM-2026-0099")
        every = case_reads.summaries(conn)
        only = case_reads.summaries(conn, only=ids["1MM-2026-0001"])
    assert missing is None
    # The detail is the case's summary, as the listing gives it, and more.
    assert detail is not None and only == [every[0]] == [{k: v for k, v in detail.items()
                                                          if k not in ("messages", "mentor_actions", "events")}]
    assert detail["messages"] == [
        {"direction": "in", "message_id": "<1@example.org>", "subject": "message 1", "at": UTC, "kind": "new_case",
         "from": "jo@example.org", "to": "complaints@1mm.org.uk"},
        # Outbound letters say how their delivery went; two at the same instant in the order they were written.
        {"direction": "out", "message_id": "<2@example.org>", "subject": "message 2", "at": utc(timedelta(minutes=1)),
         "kind": "acknowledgement", "from": "jo@example.org", "to": "complaints@1mm.org.uk", "delivery": "sent",
         "sent_at": utc(timedelta(minutes=2)), "error": None},
        {"direction": "out", "message_id": "<3@example.org>", "subject": "message 3", "at": utc(timedelta(minutes=1)),
         "kind": "staff-notification", "from": "jo@example.org", "to": "complaints@1mm.org.uk", "delivery": "failed",
         "sent_at": None, "error": "550 no such user"},
    ]
    assert detail["mentor_actions"] == [{"mentor": "mentor@example.org", "action": "informal-warning",
                                         "reason": "late twice", "by": "tom.okafor@1mm.org.uk",
                                         "at": utc(timedelta(hours=2))}]
    assert detail["events"] == [{"at": UTC, "type": "case_opened", "detail": {"assignee": "priya"}, "actor": ""},
                                {"at": utc(timedelta(hours=1)), "type": "note", "detail": {}, "actor": "priya"}]


def test_the_listing_gives_each_case_in_reference_order_with_its_message_count(filled: Engine) -> None:
    with new_session(filled) as s:
        s.add(new_case("1MM-2026-0003", 3, channel="phone"))  # taken by phone: no message on it yet
        s.commit()
    with reading(filled) as conn:
        lines = case_reads.case_lines(conn)
    assert [tuple(line) for line in lines] == [
        ("1MM-2026-0001", "open", 1, "external", "1mm-2026-0001@example.org", 3, "About 1MM-2026-0001"),
        ("1MM-2026-0002", "closed", 1, "external", "1mm-2026-0002@example.org", 1, "About 1MM-2026-0002"),
        ("1MM-2026-0003", "open", 1, "external", "1mm-2026-0003@example.org", 0, "About 1MM-2026-0003"),
    ]


def test_unfiled_mail_is_the_inbound_mail_on_no_case(filled: Engine) -> None:
    with reading(filled) as conn:
        assert case_reads.unfiled(conn) == [{"message_id": "<4@example.org>", "subject": "message 4",
                                             "from": "jo@example.org", "at": utc(timedelta(minutes=5)),
                                             "kind": "bounce"}]


def test_an_empty_store_has_nothing_to_show(store_engine: Engine) -> None:
    with reading(store_engine) as conn:
        assert (case_reads.summaries(conn), case_reads.case_lines(conn), case_reads.unfiled(conn),
                case_reads.detail(conn, "1MM-2026-0001")) == ([], [], [], None)
