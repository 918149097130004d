"""What the managers' digest reads, as named queries (the digest itself is ``services.digest``).

Each takes the case ids the recipient may see (``case_ids``) where it reads case data, and a period
(``since``/``now``, aware datetimes) where it reads history.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import date, datetime
from itertools import groupby
from typing import Any, NamedTuple

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from mailbot.store.db import chunks, from_db, to_db
from mailbot.store.models import (
    CASE_TABLE,
    DEADLINE_TABLE,
    EVENT_TABLE,
    MESSAGE_TABLE,
    DigestRun,
    Event,
    MailboxCursor,
    MailMessage,
    Restriction,
    detail_of,
)

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
#
# Nothing here loads every case: the digest of a database with 50,000 open cases counts the open ones as it reads
# them, what happened in the period as it happened, and whole case rows only for the cases it names.
# Visibility (regions, safeguarding) is the digest's to decide; the reads return every case's rows.

_C, _D, _M, _E = CASE_TABLE.c, DEADLINE_TABLE.c, MESSAGE_TABLE.c, EVENT_TABLE.c


class CaseRow(NamedTuple):
    """What the digest shows of a case (a fraction of the ORM object's memory)."""

    id: int
    ref: str
    year: int
    seq: int
    status: str
    stage: int
    procedure: str
    category: str
    assignee: str | None
    complainant: str
    subject: str
    outcome: str | None
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None


_CASE_ROW = (_C.id, _C.ref, _C.year, _C.seq, _C.status, _C.stage, _C.procedure, _C.category, _C.assignee,
             _C.complainant, _C.subject, _C.outcome, _C.opened_at, _C.updated_at, _C.closed_at)


def _case_row(row: Any) -> CaseRow:
    return CaseRow(*row[:12], from_db(row[12]), from_db(row[13]), from_db(row[14]))  # type: ignore[arg-type]


def case_rows(session: Session, ids: Collection[int]) -> list[CaseRow]:
    conn = session.connection()
    return [_case_row(r) for chunk in chunks(ids)
            for r in conn.execute(sa_select(*_CASE_ROW).where(_C.id.in_(chunk))).all()]


def case_rows_where(session: Session, *conditions: Any) -> list[CaseRow]:
    """Cases matching SQL conditions on the case table (few: opened today, waiting for a decision, ...)."""
    return [_case_row(r) for r in session.connection().execute(
        sa_select(*_CASE_ROW).where(*conditions).order_by(_C.year, _C.seq)).all()]


def cases_opened_between(session: Session, since: datetime, now: datetime) -> list[CaseRow]:
    return case_rows_where(session, _C.opened_at >= to_db(since), _C.opened_at <= to_db(now))


def cases_in_statuses(session: Session, statuses: Collection[str], procedure: str | None = None) -> list[CaseRow]:
    """Cases in these statuses (of this procedure): for the few that need a decision (never every open case)."""
    conditions = [_C.status.in_(list(statuses))] + ([_C.procedure == procedure] if procedure else [])
    return case_rows_where(session, *conditions)


def cases_closed_between(session: Session, status: str, since: datetime, now: datetime) -> list[CaseRow]:
    return case_rows_where(session, _C.status == status, _C.closed_at >= to_db(since), _C.closed_at <= to_db(now))


# Rows read as they come, a thousand at a time (a server-side cursor on PostgreSQL), for the reads that cover every
# open case or a month of complaints: the digest counts them as it goes and keeps none.
_STREAM = {"yield_per": 1000}


def open_case_keys(session: Session, open_statuses: Collection[str]) -> Iterator[tuple[int, int, str, str | None, str]]:
    """(id, stage, category, assignee, complainant) of every open case, as read: the figures and the workload
    are counted from these, and a recipient's view decides which cases it may see from them."""
    yield from session.connection().execute(  # type: ignore[misc]
        sa_select(_C.id, _C.stage, _C.category, _C.assignee, _C.complainant)
        .where(_C.status.in_(list(open_statuses))).execution_options(**_STREAM))


def open_case_counts(session: Session, open_statuses: Collection[str]) -> list[tuple[int, str, str | None, int]]:
    """(stage, category, assignee, how many) of the open cases, counted by the database: all a recipient who
    sees every case needs of them."""
    return [tuple(row) for row in session.connection().execute(  # type: ignore[misc]
        sa_select(_C.stage, _C.category, _C.assignee, func.count()).where(_C.status.in_(list(open_statuses)))
        .group_by(_C.stage, _C.category, _C.assignee))]


def case_visibility_keys(session: Session, ids: Collection[int]) -> list[tuple[int, str, str | None, str]]:
    """(id, complainant, assignee, category): what deciding who may see a case needs."""
    conn = session.connection()
    return [tuple(r) for chunk in chunks(ids)  # type: ignore[misc]
            for r in conn.execute(sa_select(_C.id, _C.complainant, _C.assignee, _C.category)
                                  .where(_C.id.in_(chunk))).all()]


def safeguarding_alerted(session: Session) -> set[int]:
    """Cases whose safeguarding lead was alerted at some point."""
    return {cid for cid in session.exec(select(Event.case_id).where(Event.type == "safeguarding_alert")).all()
            if cid is not None}


def events_between(session: Session, types: Collection[str], since: datetime, now: datetime) -> list[Event]:
    return list(session.exec(select(Event).where(
        col(Event.type).in_(tuple(types)), col(Event.case_id).is_not(None), Event.at >= to_db(since),
        Event.at <= to_db(now)).order_by(col(Event.at), col(Event.id))).all())


def delivery_problem_events(session: Session, since: datetime, now: datetime) -> list[Event]:
    """Letters that failed or bounced in the period, on any case or none."""
    return list(session.exec(select(Event).where(col(Event.type).in_(("letter_failed", "letter_undelivered")),
                                                 Event.at >= to_db(since), Event.at <= to_db(now))).all())


# ---- deadlines and restrictions ----------------------------------------------------------------

# (case id, deadline name, stage, due)
RunningDeadline = tuple[int, str, int, datetime]
# (case id, deadline name, stage, due, the case's assignee)
HeldDeadline = tuple[int, str, int, datetime, str | None]
_RUNNING = (_D.superseded == False, _D.met_at.is_(None))  # noqa: E712  (SQL expression)


def running_deadlines_due_by(session: Session, cutoff: datetime,
                             open_statuses: Collection[str]) -> Iterator[HeldDeadline]:
    """(case id, name, stage, due, the case's assignee) of the open cases' running deadlines due by ``cutoff``,
    soonest first, as read."""
    for cid, name, stage, due, assignee in session.connection().execute(
            sa_select(_D.case_id, _D.name, _D.stage, _D.due_at, _C.assignee).join(CASE_TABLE, _C.id == _D.case_id)
            .where(*_RUNNING, _D.due_at <= to_db(cutoff), _C.status.in_(list(open_statuses)))
            .order_by(_D.due_at, _D.id).execution_options(**_STREAM)):
        yield cid, name, stage, from_db(due), assignee  # type: ignore[misc]


def running_deadlines_of(session: Session, case_ids: Collection[int]) -> list[RunningDeadline]:
    """(case id, name, stage, due) of these cases' running deadlines, soonest first."""
    conn = session.connection()
    rows = [r for chunk in chunks(case_ids) for r in conn.execute(
        sa_select(_D.case_id, _D.name, _D.stage, _D.due_at, _D.id).where(*_RUNNING, _D.case_id.in_(chunk))).all()]
    rows.sort(key=lambda r: (r[3], r[4]))
    return [(cid, name, stage, from_db(due)) for cid, name, stage, due, _ in rows]  # type: ignore[misc]


def deadlines_kept_between(session: Session, name: str, since: datetime,
                           now: datetime) -> Iterator[tuple[int, bool]]:
    """(case id, met on time) of the named deadline, not replaced, falling due in the period, as read."""
    for cid, on_time in session.connection().execute(
            sa_select(_D.case_id, _D.met_at.is_not(None) & (_D.met_at <= _D.due_at))
            .where(_D.name == name, _D.superseded == False,  # noqa: E712
                   _D.due_at >= to_db(since), _D.due_at <= to_db(now)).execution_options(**_STREAM)):
        yield cid, bool(on_time)


def restrictions_with_review(session: Session) -> list[Restriction]:
    """Restrictions in force that have a review date, soonest review first."""
    return list(session.exec(
        select(Restriction).where(Restriction.state == "restricted", col(Restriction.review_at).is_not(None))
        .order_by(col(Restriction.review_at))
    ).all())


def cases_under_management(session: Session, case_ids: Collection[int]) -> set[int]:
    """Of these cases, those whose complainant is already warned or restricted."""
    return set(session.exec(select(Restriction.case_id).where(
        col(Restriction.case_id).in_(list(case_ids)),
        col(Restriction.state).in_(("warned", "restricted")))).all())


# ---- mail --------------------------------------------------------------------------------------


def letters_between(session: Session, kinds: Collection[str], since: datetime, now: datetime) -> list[MailMessage]:
    """Letters of these kinds on a case, written in the period, oldest first."""
    return list(session.exec(
        select(MailMessage).where(MailMessage.direction == "out", col(MailMessage.kind).in_(list(kinds)),
                                  col(MailMessage.case_id).is_not(None), MailMessage.at >= to_db(since),
                                  MailMessage.at <= to_db(now))
        .order_by(col(MailMessage.at), col(MailMessage.id)).options(defer(MailMessage.raw))  # type: ignore[arg-type]
    ).all())


def first_letters_between(session: Session, kinds: Collection[str], since: datetime,
                          now: datetime) -> list[tuple[int, datetime]]:
    """(case id, when) of each case's first letter of these kinds, where that first one was written in the period."""
    first = func.min(_M.at)
    rows = session.connection().execute(
        sa_select(_M.case_id, first).where(_M.direction == "out", _M.kind.in_(list(kinds)), _M.case_id.is_not(None))
        .group_by(_M.case_id).having(first >= to_db(since), first <= to_db(now))).all()
    return [(cid, from_db(at)) for cid, at in rows]  # type: ignore[misc]


def cases_with_letters(session: Session, kinds: Collection[str], case_ids: Collection[int]) -> set[int]:
    """Of these cases, those with a letter of these kinds."""
    conn = session.connection()
    return {cid for chunk in chunks(case_ids) for (cid,) in conn.execute(
        sa_select(_M.case_id).distinct().where(_M.direction == "out", _M.kind.in_(list(kinds)),
                                               _M.case_id.in_(chunk))).all()}


def problem_letters(session: Session, deliveries: Collection[str], since: datetime,
                    now: datetime) -> list[MailMessage]:
    """Letters written in the period whose delivery is one of these (failed, undelivered), oldest first."""
    return list(session.exec(
        select(MailMessage).where(MailMessage.direction == "out", col(MailMessage.delivery).in_(list(deliveries)),
                                  MailMessage.at >= to_db(since), MailMessage.at <= to_db(now))
        .order_by(col(MailMessage.at), col(MailMessage.id)).options(defer(MailMessage.raw))  # type: ignore[arg-type]
    ).all())


def inbound_kinds_between(session: Session, kinds: Collection[str], since: datetime,
                          now: datetime) -> list[tuple[int, str]]:
    """(case id, kind) of each inbound message of these kinds on a case, received in the period."""
    return [(cid, kind) for cid, kind in session.exec(select(MailMessage.case_id, MailMessage.kind).where(
        MailMessage.direction == "in", col(MailMessage.kind).in_(list(kinds)), col(MailMessage.case_id).is_not(None),
        MailMessage.at >= to_db(since), MailMessage.at <= to_db(now))).all()]  # type: ignore[misc]


def complainant_messages_between(session: Session, since: datetime,
                                 now: datetime) -> Iterator[tuple[int, int]]:
    """(case id, how many) of the inbound messages on each case received in the period from its complainant's own
    address (compared as Python's ``str.lower`` folds case), in case id order, as counted. Cases with none are left
    out."""
    rows = session.connection().execute(
        sa_select(_M.case_id, _M.from_addr, _C.complainant, func.count()).join(CASE_TABLE, _C.id == _M.case_id)
        .where(_M.direction == "in", _M.at >= to_db(since), _M.at <= to_db(now))
        .group_by(_M.case_id, _M.from_addr, _C.complainant).order_by(_M.case_id).execution_options(**_STREAM))
    # Grouped by the address as written and compared here: SQLite's lower() folds only ASCII letters.
    for cid, senders in groupby(rows, key=lambda row: row[0]):
        total = sum(count for _, sender, complainant, count in senders
                    if (sender or "").lower() == (complainant or "").lower())
        if total:
            yield cid, total


def acknowledgement_times(session: Session, kinds: Collection[str], since: datetime,
                          now: datetime) -> Iterator[tuple[int, datetime, datetime | None]]:
    """(case id, received at, when the server accepted its first letter of these kinds, or None) of each
    complaint that opened a case in the period, as read: one query, each first letter found by the case's index."""
    letter = MESSAGE_TABLE.alias("letter")
    first = (sa_select(func.min(letter.c.sent_at))
             .where(letter.c.case_id == _M.case_id, letter.c.direction == "out", letter.c.kind.in_(list(kinds)),
                    letter.c.sent_at.is_not(None)).scalar_subquery())
    for cid, at, sent in session.connection().execute(
            sa_select(_M.case_id, _M.at, first)
            .where(_M.direction == "in", _M.kind == "new_case", _M.case_id.is_not(None),
                   _M.at >= to_db(since), _M.at <= to_db(now)).execution_options(**_STREAM)):
        yield cid, from_db(at), from_db(sent)  # type: ignore[misc]


class Unfiled(NamedTuple):
    from_addr: str
    subject: str
    kind: str
    at: datetime
    to_addrs: str


def unfiled_automated_between(session: Session, since: datetime, now: datetime) -> list[Unfiled]:
    """Inbound mail filed as automated on no case, received in the period, oldest first: the columns the digest
    shows, never the messages' bytes (a day's flood of 5,000 newsletters of 100 KB took the digest to 580 MB)."""
    return [Unfiled(*row) for row in session.connection().execute(
        sa_select(_M.from_addr, _M.subject, _M.kind, _M.at, _M.to_addrs).where(
            _M.direction == "in", _M.case_id.is_(None), _M.kind.in_(AUTOMATED_KINDS), _M.at >= to_db(since),
            _M.at <= to_db(now)).order_by(_M.at, _M.id)).all()]


# What automated mail is filed as (domain.rules' kinds) when a person might still be behind it.
AUTOMATED_KINDS = ("robot_sender", "auto_reply", "bulk", "list")


def mailbox_cursors(session: Session) -> list[MailboxCursor]:
    return list(session.exec(select(MailboxCursor).order_by(col(MailboxCursor.mailbox))).all())


def data_request_kinds(session: Session, case_ids: Collection[int]) -> dict[int, str]:
    """What each request about personal data asks for (access or erasure): its latest ``data_request`` event."""
    kinds: dict[int, str] = {}
    for event in session.exec(select(Event).where(Event.type == "data_request", col(Event.case_id).in_(list(case_ids)))
                              .order_by(col(Event.id))).all():
        kind = detail_of(event.detail).get("kind")
        if event.case_id is not None and isinstance(kind, str):
            kinds[event.case_id] = kind
    return kinds
