"""Read models: a case as the command line shows it (the --json fields are a public contract)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailbot.store.db import from_db
from mailbot.store.models import (
    Case,
    Deadline,
    Event,
    MailMessage,
    MentorAction,
    Restriction,
)


def iso(dt: datetime | None) -> str | None:
    value = from_db(dt)
    return value.isoformat() if value else None


_NOT_READ: Any = object()


def case_summary(session: Session, case: Case, message_count: int | None = None,
                 deadlines: list[Deadline] | None = None, restriction: Restriction | None = _NOT_READ,
                 ) -> dict[str, object]:
    """One case as `mailbot cases --json` gives it; ``all_cases`` passes what it read for every case at once."""
    if message_count is None:
        message_count = session.exec(select(func.count(MailMessage.id)).where(MailMessage.case_id == case.id)).one()
    if deadlines is None:
        deadlines = list(session.exec(select(Deadline).where(Deadline.case_id == case.id,
                                                             Deadline.superseded == False)  # noqa: E712
                                      .order_by(col(Deadline.id))).all())
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
        "deadlines": {d.name: iso(d.due_at) for d in deadlines},
        "outcome": case.outcome,
        "merged_into": case.merged_into,
        "restriction": restriction_summary(session, case, restriction),
        "updated_at": iso(case.updated_at),
        "closed_at": iso(case.closed_at),
    }


def restriction_summary(session: Session, case: Case, row: Restriction | None = _NOT_READ) -> dict[str, object] | None:
    if row is _NOT_READ:
        row = session.exec(select(Restriction).where(Restriction.case_id == case.id)).first()
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


def all_cases(session: Session) -> list[dict[str, object]]:
    counts = dict(session.exec(select(MailMessage.case_id, func.count(MailMessage.id))
                               .group_by(MailMessage.case_id)).all())
    cases = session.exec(select(Case).order_by(col(Case.year), col(Case.seq))).all()
    # Every case's deadlines and restriction in two queries, not two per case.
    deadlines: dict[int, list[Deadline]] = {}
    for row in session.exec(select(Deadline).where(Deadline.superseded == False)  # noqa: E712
                            .order_by(col(Deadline.id))).all():
        deadlines.setdefault(row.case_id, []).append(row)
    restrictions = {r.case_id: r for r in session.exec(select(Restriction)).all()}
    return [case_summary(session, c, counts.get(c.id, 0), deadlines.get(c.id or 0, []), restrictions.get(c.id or 0))
            for c in cases]


def case_detail(session: Session, case: Case) -> dict[str, object]:
    out = case_summary(session, case)
    messages = session.exec(select(MailMessage).where(MailMessage.case_id == case.id)
                            .order_by(col(MailMessage.at), col(MailMessage.id))).all()
    out["messages"] = [
        {
            "direction": m.direction,
            "message_id": m.message_id,
            "subject": m.subject,
            "at": iso(m.at),
            "kind": m.kind,
            "from": m.from_addr,
            "to": m.to_addrs,
            **({"delivery": m.delivery, "sent_at": iso(m.sent_at), "error": m.last_error}
               if m.direction == "out" else {}),
        }
        for m in messages
    ]
    out["mentor_actions"] = [
        {"mentor": a.mentor_email, "action": a.action, "reason": a.reason, "by": a.by, "at": iso(a.at)}
        for a in session.exec(select(MentorAction).where(MentorAction.case_id == case.id)
                              .order_by(col(MentorAction.id))).all()
    ]
    events = session.exec(select(Event).where(Event.case_id == case.id).order_by(col(Event.id))).all()
    out["events"] = [
        {"at": iso(e.at), "type": e.type, "detail": json.loads(e.detail) if e.detail else {}, "actor": e.actor}
        for e in events
    ]
    return out


def unfiled_messages(session: Session) -> list[dict[str, object]]:
    """Inbound mail on no case: automated mail and unreadable messages. The columns listed, never the messages'
    bytes: a year of robots' mail can be many thousands of messages."""
    rows = session.exec(select(MailMessage.message_id, MailMessage.subject, MailMessage.from_addr, MailMessage.at,
                               MailMessage.kind)
                        .where(MailMessage.case_id == None, MailMessage.direction == "in")  # noqa: E711
                        .order_by(col(MailMessage.id))).all()
    return [{"message_id": message_id, "subject": subject, "from": from_addr, "at": iso(at), "kind": kind}
            for message_id, subject, from_addr, at, kind in rows]
