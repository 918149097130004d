"""Whether the scheduled work has anything to do, asked with SQLAlchemy Core on the light tables.

Most passes find nothing due: no deadline to remind or alert, no restriction to review or lift, no case past
retention. ``services.jobs`` asks here first and builds the work (``services.scheduled_work``, the ORM, the letters)
only when something is. Each job's rows are chosen by one filter, written here once over a table's columns: the
work's own queries (``store.repo``, ``store.erasure``) are built from the same functions with the table classes'
attributes, and the per-deadline decision is ``domain.schedule.chase_step`` for both. So the look and the work
cannot disagree about what is due.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import and_, literal_column, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from mailbot.domain.schedule import chase_step, retention_cutoff
from mailbot.domain.workdays import WorkingCalendar
from mailbot.store.db import from_db, to_db
from mailbot.store.light_tables import CASES, DEADLINES, DIGEST_RUNS, RESTRICTIONS

# ``d``, ``c`` and ``r`` below are a deadline's, a case's and a restriction's columns: a light table's ``.c`` or a
# table class (``store.models``), whose attributes compare the same way.


def _not_by_index(status: Any) -> Any:
    """A case's status inside an expression, ``status || ''``, which no index can answer: SQLite's documented way
    to keep a term off an index (its unary ``+``, which PostgreSQL has not for text). SQLite plans without
    statistics: joining deadlines or restrictions to cases, it would start from the open cases through the index
    by status and look up each one's rows, every open case on every pass. Kept off it, SQLite starts from the few
    rows due, through the running-deadline index (migration 0010) or the small register of restrictions, as
    PostgreSQL's planner does from its statistics."""
    return status.concat(literal_column("''"))


def chase_filter(d: Any, c: Any, open_statuses: Collection[str], due_before: datetime,
                 remind_until: datetime) -> ColumnElement[bool]:
    """Running deadlines on open cases that may need a letter now: not yet alerted as overdue, and either due by
    ``due_before`` or not yet reminded and due by ``remind_until`` (``WorkingCalendar.reminders_due_until``)."""
    # The last term follows from the one before it; it is the range the running-deadline index reads.
    return and_(d.superseded == False, d.met_at.is_(None), _not_by_index(c.status).in_(open_statuses),  # noqa: E712
                d.overdue_alerted_at.is_(None),
                or_(d.due_at <= to_db(due_before), and_(d.reminded_at.is_(None), d.due_at <= to_db(remind_until))),
                d.due_at <= to_db(max(due_before, remind_until)))


def review_filter(r: Any, c: Any, now: datetime, open_statuses: Collection[str]) -> ColumnElement[bool]:
    """Restrictions in force whose six-month review is due and not yet asked for, on cases still open."""
    return and_(r.state == "restricted", r.reviewed_at.is_(None), r.review_at <= to_db(now),
                _not_by_index(c.status).in_(open_statuses))


def expiry_filter(r: Any, now: datetime) -> ColumnElement[bool]:
    """Restrictions in force whose term has ended."""
    return and_(r.state == "restricted", r.ends_at.is_not(None), r.ends_at <= to_db(now))


def retention_filter(c: Any, closed_before: datetime) -> ColumnElement[bool]:
    """Closed cases not yet anonymised and not on hold, closed before the cut-off."""
    return and_(c.closed_at.is_not(None), c.closed_at < to_db(closed_before), c.anonymised_at.is_(None),
                c.held_reason.is_(None))


def gone_filter(c: Any, open_statuses: Collection[str], staff: Collection[str]) -> ColumnElement[bool]:
    """Open cases whose owner is not one of these addresses (no longer in staff.toml)."""
    return and_(c.status.in_(open_statuses), c.assignee.is_not(None), c.assignee.not_in(sorted(staff)))


def owner_outside(connection: Connection, open_statuses: Collection[str], staff: Collection[str]) -> bool:
    """Whether ``gone_filter`` chooses any case: some open case's owner is not one of these addresses.

    Asked by walking the distinct owners of each open status in the database's own order, one index seek each
    (``ix_case_status_assignee``): as many reads as there are owners, where ``NOT IN`` reads every open case. The
    walk compares owners with ``>`` in the database, whatever its collation, and with the staff as ``NOT IN`` does
    (equal only when the same); tests/unit/test_due_reads.py holds the two to choosing the same cases, on a
    PostgreSQL that sorts text as British English does among others."""
    c = CASES.c
    members = set(staff)
    for status in open_statuses:
        after: str | None = None
        while True:
            query = select(c.assignee).where(c.status == status, c.assignee.is_not(None))
            if after is not None:
                query = query.where(c.assignee > after)
            owner = connection.execute(query.order_by(c.assignee).limit(1)).scalar()
            if owner is None:
                break
            if owner not in members:
                return True
            after = owner
    return False


def work_due(connection: Connection, now: datetime, calendar: WorkingCalendar, open_statuses: Collection[str],
             staff: Collection[str], retention_years: int) -> str | None:
    """The first job found with something to do at ``now`` ("hand-over", "deadlines", "review", "expiry",
    "retention"), or None when none has: what ``ScheduledWork.run`` would do nothing with."""
    d, c, r = DEADLINES.c, CASES.c, RESTRICTIONS.c

    def any_row(query: Any) -> bool:
        return connection.execute(query.limit(1)).first() is not None

    if owner_outside(connection, open_statuses, staff):
        return "hand-over"
    near = (select(d.due_at, d.reminded_at, c.stage_started_at).join_from(DEADLINES, CASES, c.id == d.case_id)
            .where(chase_filter(d, c, open_statuses, now, calendar.reminders_due_until(now))))
    for due, reminded, started in connection.execute(near):
        due_at = from_db(due)
        assert due_at is not None
        if chase_step(now, due_at, from_db(reminded), from_db(started), calendar) is not None:
            return "deadlines"
    if any_row(select(r.case_id).join_from(RESTRICTIONS, CASES, c.id == r.case_id)
               .where(review_filter(r, c, now, open_statuses))):
        return "review"
    if any_row(select(r.case_id).join_from(RESTRICTIONS, CASES, c.id == r.case_id).where(expiry_filter(r, now))):
        return "expiry"
    if any_row(select(c.id).where(retention_filter(c, retention_cutoff(now, retention_years)))):
        return "retention"
    return None


def digests_recorded(connection: Connection, day: str) -> set[str]:
    """The recipients whose digest for ``day`` (YYYY-MM-DD, the organisation's date) is recorded."""
    return {row[0] for row in connection.execute(select(DIGEST_RUNS.c.recipient).where(DIGEST_RUNS.c.day == day))}
