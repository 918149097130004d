"""What the command line shows of the cases (`mailbot cases`, `case` and `unfiled`, with or without --json), read
with SQLAlchemy Core alone.

These are the commands people run most, so they load neither the ORM nor the table classes (``store.models``,
built with SQLModel and pydantic): those imports alone took about 0.15 s of a 0.6 s command, and the ORM's
objects for every case made `cases --json` on a large database heavy as well. The columns are read through the
light table clauses of ``store.light_tables``.

The --json fields are a public contract: each dict here is what a command prints, key for key.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql import Select

from mailbot.store.db import from_db
from mailbot.store.light_tables import CASES, DEADLINES, EVENTS, MENTOR_ACTIONS, MESSAGES, RESTRICTIONS
from mailbot.store.prebuilt import Prebuilt


def iso(dt: datetime | None) -> str | None:
    value = from_db(dt)
    return value.isoformat() if value else None


def _listing() -> Select[Any]:
    c, m = CASES.c, MESSAGES.c
    counts = select(m.case_id, func.count(m.id).label("n")).group_by(m.case_id).subquery()
    return (select(c.ref, c.status, c.stage, c.procedure, c.complainant, func.coalesce(counts.c.n, 0), c.subject)
            .outerjoin_from(CASES, counts, counts.c.case_id == c.id).order_by(c.year, c.seq))


_LISTING = Prebuilt(_listing())


def case_lines(connection: Connection) -> list[tuple[str, str, int, str, str, int, str]]:
    """Each case as `mailbot cases` lists it: (reference, status, stage, procedure, complainant, messages,
    subject), in one query; the listing needs none of the summary's dates, deadlines or restriction.

    Its columns are text and integers, so it is prebuilt (``store.prebuilt``): it runs on the driver's own cursor
    and the rows come back as the driver's tuples. With 50,000 cases SQLAlchemy's result rows and a dict a case
    took 30-50 ms of a 0.5 s listing."""
    if not connection.in_transaction():
        connection.begin()  # as the first statement would: a prebuilt statement runs inside a transaction
    return _LISTING.rows(connection, {})


def _of(query: Select[Any], case_id: Any, only: int | None) -> Select[Any]:
    return query if only is None else query.where(case_id == only)


def summaries(connection: Connection, only: int | None = None) -> list[dict[str, object]]:
    """Every case as `mailbot cases --json` gives it (or the one case ``only``), in four queries whatever the
    number of cases: the cases, their message counts, their current deadlines and their restrictions."""
    c, m, d, r = CASES.c, MESSAGES.c, DEADLINES.c, RESTRICTIONS.c
    counts = dict(connection.execute(_of(select(m.case_id, func.count(m.id)), m.case_id, only)
                                     .group_by(m.case_id)).all())
    deadlines: dict[int, dict[str, str | None]] = {}
    # In the order they were set: a later deadline of the same name is the one that stands.
    for case_id, name, due_at in connection.execute(
            _of(select(d.case_id, d.name, d.due_at), d.case_id, only)
            .where(d.superseded == False).order_by(d.id)):  # noqa: E712
        deadlines.setdefault(case_id, {})[name] = iso(due_at)
    restrictions = {row.case_id: row for row in connection.execute(_of(select(RESTRICTIONS), r.case_id, only))}
    return [_summary(case, counts.get(case.id, 0), deadlines.get(case.id, {}), restrictions.get(case.id))
            for case in connection.execute(_of(select(CASES), c.id, only).order_by(c.year, c.seq))]


def _summary(case: Row[Any], message_count: int, deadlines: dict[str, str | None],
             restriction: Row[Any] | None) -> dict[str, object]:
    return {
        "ref": case.ref,
        "status": case.status,
        "stage": case.stage,
        "procedure": case.procedure,
        "channel": case.channel,
        "postal_address": case.postal_address,
        "complainant": case.complainant,
        "from_addr": case.from_addr,
        "reply_to": case.reply_to,
        "subject": case.subject,
        "opened_at": iso(case.opened_at),
        "message_count": message_count,
        "assignee": case.assignee,
        "category": case.category,
        "deadlines": deadlines,
        "outcome": case.outcome,
        "merged_into": case.merged_into,
        "restriction": _restriction(restriction),
        "updated_at": iso(case.updated_at),
        "closed_at": iso(case.closed_at),
    }


def _restriction(row: Row[Any] | None) -> dict[str, object] | None:
    if row is None:
        return None
    return {
        "state": row.state,
        "mode": row.mode,
        "options": json.loads(row.options),
        "since": iso(row.started_at),
        "until": iso(row.ends_at),
        "review_at": iso(row.review_at),
        "decided_by": row.decided_by,
        "warned_at": iso(row.warned_at),
        "warned_by": row.warned_by,
        "reason": row.reason,
        "exceptional": row.exceptional,
        "ended_at": iso(row.ended_at),
    }


def detail(connection: Connection, ref: str) -> dict[str, object] | None:
    """One case as `mailbot case REF --json` gives it: its summary, its messages, the mentor actions taken on it
    and its events; None if no case has that reference (written in either case)."""
    case_id = connection.execute(select(CASES.c.id).where(CASES.c.ref == ref.upper())).scalar()
    if case_id is None:
        return None
    out = summaries(connection, only=case_id)[0]
    m, a, e = MESSAGES.c, MENTOR_ACTIONS.c, EVENTS.c
    out["messages"] = [
        {
            "direction": row.direction,
            "message_id": row.message_id,
            "subject": row.subject,
            "at": iso(row.at),
            "kind": row.kind,
            "from": row.from_addr,
            "to": row.to_addrs,
            **({"delivery": row.delivery, "sent_at": iso(row.sent_at), "error": row.last_error}
               if row.direction == "out" else {}),
        }
        # The columns named, never the messages' bytes.
        for row in connection.execute(select(m.direction, m.message_id, m.subject, m.at, m.kind, m.from_addr,
                                             m.to_addrs, m.delivery, m.sent_at, m.last_error)
                                      .where(m.case_id == case_id).order_by(m.at, m.id))
    ]
    out["mentor_actions"] = [
        {"mentor": row.mentor_email, "action": row.action, "reason": row.reason, "by": row.by, "at": iso(row.at)}
        for row in connection.execute(select(MENTOR_ACTIONS).where(a.case_id == case_id).order_by(a.id))
    ]
    out["events"] = [
        {"at": iso(row.at), "type": row.type, "detail": json.loads(row.detail) if row.detail else {},
         "actor": row.actor}
        for row in connection.execute(select(e.at, e.type, e.detail, e.actor).where(e.case_id == case_id)
                                      .order_by(e.id))
    ]
    return out


def unfiled(connection: Connection) -> list[dict[str, object]]:
    """Inbound mail on no case: automated mail and unreadable messages. The columns listed, never the messages'
    bytes: a year of robots' mail can be many thousands of messages."""
    m = MESSAGES.c
    rows = connection.execute(select(m.message_id, m.subject, m.from_addr, m.at, m.kind)
                              .where(m.case_id == None, m.direction == "in").order_by(m.id))  # noqa: E711
    return [{"message_id": message_id, "subject": subject, "from": from_addr, "at": iso(at), "kind": kind}
            for message_id, subject, from_addr, at, kind in rows]
