"""What the managers' digest reads, as named queries (the digest itself is ``services.digest``).

Each takes the case ids the recipient may see (``case_ids``) where it reads case data, and a period
(``since``/``now``, aware datetimes) where it reads history.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import date, datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mailbot.store.db import from_db, to_db
from mailbot.store.models import Case, Deadline, DigestRun, Event, MailboxCursor, MailMessage, Restriction

# ---- the digest's own record -------------------------------------------------------------------


def digest_recorded(session: Session, recipient: str, day: date) -> bool:
    return session.exec(select(DigestRun.id).where(DigestRun.recipient == recipient,
                                                   DigestRun.day == day.isoformat())).first() is not None


def last_digest_at(session: Session, recipient: str, before: datetime) -> datetime | None:
    sent = session.exec(select(DigestRun.sent_at).where(DigestRun.recipient == recipient,
                                                        col(DigestRun.sent_at) < to_db(before))
                        .order_by(col(DigestRun.sent_at).desc())).first()
    return from_db(sent)


def claim_digest(session: Session, recipient: str, day: date, now: datetime) -> DigestRun | None:
    """Record the recipient's digest for the day before its letter is written; None when another process has
    (the unique row is written at once, so the second process loses here, and its transaction is rolled back)."""
    run = DigestRun(recipient=recipient, day=day.isoformat(), sent_at=to_db(now))
    session.add(run)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return None
    return run


# ---- cases -------------------------------------------------------------------------------------


def all_cases(session: Session) -> list[Case]:
    return list(session.exec(select(Case)).all())


def safeguarding_alerted(session: Session) -> set[int]:
    """Cases whose safeguarding lead was alerted at some point."""
    return {cid for cid in session.exec(select(Event.case_id).where(Event.type == "safeguarding_alert")).all()
            if cid is not None}


def events_between(session: Session, types: Collection[str], case_ids: Collection[int], since: datetime,
                   now: datetime) -> list[Event]:
    return list(session.exec(select(Event).where(
        col(Event.type).in_(tuple(types)), col(Event.case_id).in_(list(case_ids)), Event.at >= to_db(since),
        Event.at <= to_db(now)).order_by(col(Event.at), col(Event.id))).all())


def delivery_problem_events(session: Session, since: datetime, now: datetime) -> list[Event]:
    """Letters that failed or bounced in the period, on any case or none."""
    return list(session.exec(select(Event).where(col(Event.type).in_(("letter_failed", "letter_undelivered")),
                                                 Event.at >= to_db(since), Event.at <= to_db(now))).all())


# ---- deadlines and restrictions ----------------------------------------------------------------


def running_deadlines(session: Session, case_ids: Collection[int]) -> list[Deadline]:
    """Deadlines neither met nor replaced, soonest first."""
    return list(session.exec(
        select(Deadline).where(Deadline.superseded == False, col(Deadline.met_at).is_(None),  # noqa: E712
                               col(Deadline.case_id).in_(list(case_ids)))
        .order_by(col(Deadline.due_at), col(Deadline.id))
    ).all())


def deadlines_due_between(session: Session, name: str, case_ids: Collection[int], since: datetime,
                          now: datetime) -> list[Deadline]:
    """The named deadline, not replaced, falling due in the period (met or not)."""
    return list(session.exec(select(Deadline).where(
        Deadline.name == name, Deadline.superseded == False,  # noqa: E712
        col(Deadline.case_id).in_(list(case_ids)), Deadline.due_at >= to_db(since),
        Deadline.due_at <= to_db(now))).all())


def restrictions_with_review(session: Session, case_ids: Collection[int]) -> list[Restriction]:
    """Restrictions in force that have a review date, soonest review first."""
    return list(session.exec(
        select(Restriction).where(Restriction.state == "restricted", col(Restriction.review_at).is_not(None),
                                  col(Restriction.case_id).in_(list(case_ids)))
        .order_by(col(Restriction.review_at))
    ).all())


def cases_under_management(session: Session, case_ids: Collection[int]) -> set[int]:
    """Of these cases, those whose complainant is already warned or restricted."""
    return set(session.exec(select(Restriction.case_id).where(
        col(Restriction.case_id).in_(list(case_ids)),
        col(Restriction.state).in_(("warned", "restricted")))).all())


# ---- mail --------------------------------------------------------------------------------------


def letters_between(session: Session, kinds: Collection[str], case_ids: Collection[int], since: datetime,
                    now: datetime) -> list[MailMessage]:
    """Letters of these kinds written in the period, oldest first."""
    return list(session.exec(
        select(MailMessage).where(MailMessage.direction == "out", col(MailMessage.kind).in_(list(kinds)),
                                  col(MailMessage.case_id).in_(list(case_ids)), MailMessage.at >= to_db(since),
                                  MailMessage.at <= to_db(now))
        .order_by(col(MailMessage.at), col(MailMessage.id))
    ).all())


def letters_written(session: Session, kinds: Collection[str], case_ids: Collection[int]) -> list[tuple[int, datetime]]:
    """(case id, written at) of every letter of these kinds."""
    return [(cid, at) for cid, at in session.exec(select(MailMessage.case_id, MailMessage.at).where(
        MailMessage.direction == "out", col(MailMessage.kind).in_(list(kinds)),
        col(MailMessage.case_id).in_(list(case_ids)))).all()]  # type: ignore[misc]


def letters_sent(session: Session, kinds: Collection[str], case_ids: Collection[int]) -> list[tuple[int, datetime]]:
    """(case id, sent at) of every letter of these kinds the server accepted."""
    return [(cid, at) for cid, at in session.exec(select(MailMessage.case_id, MailMessage.sent_at).where(
        MailMessage.direction == "out", col(MailMessage.kind).in_(list(kinds)),
        col(MailMessage.case_id).in_(list(case_ids)),
        col(MailMessage.sent_at).is_not(None))).all()]  # type: ignore[misc]


def problem_letters(session: Session, deliveries: Collection[str], since: datetime,
                    now: datetime) -> list[MailMessage]:
    """Letters written in the period whose delivery is one of these (failed, undelivered), oldest first."""
    return list(session.exec(
        select(MailMessage).where(MailMessage.direction == "out", col(MailMessage.delivery).in_(list(deliveries)),
                                  MailMessage.at >= to_db(since), MailMessage.at <= to_db(now))
        .order_by(col(MailMessage.at), col(MailMessage.id))
    ).all())


def inbound_kinds_between(session: Session, kinds: Collection[str], case_ids: Collection[int], since: datetime,
                          now: datetime) -> list[tuple[int, str]]:
    """(case id, kind) of each inbound message of these kinds received in the period."""
    return [(cid, kind) for cid, kind in session.exec(select(MailMessage.case_id, MailMessage.kind).where(
        MailMessage.direction == "in", col(MailMessage.kind).in_(list(kinds)),
        col(MailMessage.case_id).in_(list(case_ids)), MailMessage.at >= to_db(since),
        MailMessage.at <= to_db(now))).all()]  # type: ignore[misc]


def inbound_senders_between(session: Session, case_ids: Collection[int], since: datetime,
                            now: datetime) -> list[tuple[int, str]]:
    """(case id, From address) of each inbound message received in the period."""
    return [(cid, sender) for cid, sender in session.exec(select(MailMessage.case_id, MailMessage.from_addr).where(
        MailMessage.direction == "in", col(MailMessage.case_id).in_(list(case_ids)),
        MailMessage.at >= to_db(since), MailMessage.at <= to_db(now))).all()]  # type: ignore[misc]


def new_complaints_between(session: Session, case_ids: Collection[int], since: datetime,
                           now: datetime) -> list[tuple[int, datetime]]:
    """(case id, received at) of each complaint that opened a case in the period."""
    return [(cid, at) for cid, at in session.exec(select(MailMessage.case_id, MailMessage.at).where(
        MailMessage.direction == "in", MailMessage.kind == "new_case", col(MailMessage.case_id).in_(list(case_ids)),
        MailMessage.at >= to_db(since), MailMessage.at <= to_db(now))).all()]  # type: ignore[misc]


def unfiled_automated_between(session: Session, since: datetime, now: datetime) -> list[MailMessage]:
    """Inbound mail filed as automated on no case, received in the period, oldest first."""
    return list(session.exec(
        select(MailMessage).where(MailMessage.direction == "in", col(MailMessage.case_id).is_(None),
                                  col(MailMessage.kind).in_(AUTOMATED_KINDS), MailMessage.at >= to_db(since),
                                  MailMessage.at <= to_db(now))
        .order_by(col(MailMessage.at), col(MailMessage.id))).all())


# What automated mail is filed as (domain.rules' kinds) when a person might still be behind it.
AUTOMATED_KINDS = ("robot_sender", "auto_reply", "bulk", "list")


def mailbox_cursors(session: Session) -> list[MailboxCursor]:
    return list(session.exec(select(MailboxCursor).order_by(col(MailboxCursor.mailbox))).all())


def data_request_kinds(session: Session, case_ids: Collection[int]) -> dict[int, str]:
    """What each request about personal data asks for (access or erasure): its latest ``data_request`` event."""
    kinds: dict[int, str] = {}
    for event in session.exec(select(Event).where(Event.type == "data_request", col(Event.case_id).in_(list(case_ids)))
                              .order_by(col(Event.id))).all():
        try:
            kind = json.loads(event.detail or "{}").get("kind")
        except (ValueError, AttributeError):
            kind = None
        if event.case_id is not None and isinstance(kind, str):
            kinds[event.case_id] = kind
    return kinds
