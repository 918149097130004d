"""What `mailbot report` reads: the cases opened in a period, as ``domain.report.CaseFacts``, and the mail filed
on no case that arrived in it. Figures only: no names, addresses or message bytes are read (a lesson's text is,
for the report's list of lessons)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection

from mailbot.domain.report import CaseFacts, DeadlineFact, EventFact
from mailbot.store.db import chunks, from_db, to_db
from mailbot.store.models import CASE_TABLE, DEADLINE_TABLE, EVENT_TABLE, MESSAGE_TABLE, MentorAction, detail_of

# The events the report counts (domain.report).
EVENT_TYPES = ("escalated", "resolved", "escalation_requested", "escalation_declined", "deadline_extended",
               "restriction_warned", "restriction_imposed", "restriction_review_due", "restriction_lifted",
               "restriction_expired", "lesson", "data_request")
_C, _D, _E, _M = CASE_TABLE.c, DEADLINE_TABLE.c, EVENT_TABLE.c, MESSAGE_TABLE.c
_ACTIONS = MentorAction.__table__.c  # type: ignore[attr-defined]


def cases_opened(conn: Connection, start: datetime, end: datetime) -> tuple[list[CaseFacts], int]:
    """The cases opened in [start, end), in reference order, without those merged into another (their complaint
    is counted once, under the case it joined); and how many were merged."""
    rows = conn.execute(sa_select(_C.id, _C.ref, _C.opened_at, _C.channel, _C.procedure, _C.category, _C.status,
                                  _C.outcome, _C.stage, _C.closed_at, _C.anonymised_at)
                        .where(_C.opened_at >= to_db(start), _C.opened_at < to_db(end))
                        .order_by(_C.year, _C.seq)).all()
    merged = sum(1 for r in rows if r.status == "merged")
    rows = [r for r in rows if r.status != "merged"]
    ids = [r.id for r in rows]
    deadlines: dict[int, list[DeadlineFact]] = defaultdict(list)
    events: dict[int, list[EventFact]] = defaultdict(list)
    actions: dict[int, list[str]] = defaultdict(list)
    for chunk in chunks(ids):
        for d in conn.execute(sa_select(_D.case_id, _D.name, _D.stage, _D.due_at, _D.met_at)
                              .where(_D.case_id.in_(chunk), _D.superseded.is_(False)).order_by(_D.id)):
            deadlines[d.case_id].append(DeadlineFact(d.name, d.stage, from_db(d.due_at),  # type: ignore[arg-type]
                                                     from_db(d.met_at)))
        for e in conn.execute(sa_select(_E.case_id, _E.type, _E.at, _E.detail)
                              .where(_E.case_id.in_(chunk), _E.type.in_(EVENT_TYPES)).order_by(_E.id)):
            events[e.case_id].append(EventFact(e.type, from_db(e.at), detail_of(e.detail)))  # type: ignore[arg-type]
        for a in conn.execute(sa_select(_ACTIONS.case_id, _ACTIONS.action).where(_ACTIONS.case_id.in_(chunk))
                              .order_by(_ACTIONS.id)):
            actions[a.case_id].append(a.action)
    facts = [CaseFacts(ref=r.ref, opened_at=from_db(r.opened_at), channel=r.channel or "email",  # type: ignore[arg-type]
                       procedure=r.procedure, category=r.category, status=r.status, outcome=r.outcome, stage=r.stage,
                       closed_at=from_db(r.closed_at), anonymised=r.anonymised_at is not None,
                       deadlines=tuple(deadlines[r.id]), events=tuple(events[r.id]),
                       mentor_actions=tuple(actions[r.id])) for r in rows]
    return facts, merged


def unfiled_mail(conn: Connection, start: datetime, end: datetime) -> dict[str, int]:
    """Inbound mail filed on no case that arrived in [start, end), by what it was (auto-reply, bounce, ...)."""
    rows = conn.execute(sa_select(_M.kind, func.count(_M.id))
                        .where(_M.direction == "in", _M.case_id.is_(None), _M.at >= to_db(start), _M.at < to_db(end))
                        .group_by(_M.kind)).all()
    return dict(Counter({str(kind or "unknown"): int(n) for kind, n in rows}))
