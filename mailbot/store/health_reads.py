"""What `mailbot status` reads: the mailboxes' fetch records and the outbox's state."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailbot.domain.health import Facts, Mailbox
from mailbot.store.db import from_db, to_db
from mailbot.store.models import Event, MailboxCursor, MailMessage


def mailboxes(session: Session) -> tuple[Mailbox, ...]:
    return tuple(Mailbox(c.mailbox, from_db(c.last_success_at), c.last_error, from_db(c.last_error_at))
                 for c in session.exec(select(MailboxCursor).order_by(col(MailboxCursor.mailbox))).all())


def outbox_by_state(session: Session) -> dict[str, int]:
    rows = session.exec(select(MailMessage.delivery, func.count(MailMessage.id))
                        .where(MailMessage.direction == "out").group_by(MailMessage.delivery)).all()
    return {str(state or "unknown"): int(count) for state, count in rows}


def oldest_pending(session: Session) -> datetime | None:
    return from_db(session.exec(select(func.min(MailMessage.at)).where(
        MailMessage.direction == "out", MailMessage.delivery == "pending")).one())


def last_sent(session: Session) -> datetime | None:
    return from_db(session.exec(select(func.max(MailMessage.sent_at)).where(MailMessage.direction == "out")).one())


def failed_since(session: Session, since: datetime) -> int:
    """Letters given up on since then, dated by their failure (a letter can fail a day after it was written)."""
    return int(session.exec(select(func.count(Event.id)).where(
        Event.type == "letter_failed", Event.at >= to_db(since))).one())


def smtp_refusal(session: Session) -> str | None:
    """The SMTP server's last refusal of the bot's sign-in, if no letter has been sent since."""
    row = session.exec(select(Event).where(Event.type == "letter_deferred")
                       .order_by(col(Event.id).desc()).limit(1)).first()
    if row is None:
        return None
    try:
        error = str(json.loads(row.detail or "{}").get("error", ""))
    except (ValueError, AttributeError):
        return None
    if not error.startswith("sign-in refused"):
        return None
    sent = last_sent(session)
    if sent is not None and sent >= (from_db(row.at) or sent):
        return None
    return error


def facts(session: Session, now: datetime, reads_a_mailbox: bool, running: bool | None) -> Facts:
    """What the health rules (domain.health) judge, read in one session."""
    return Facts(now, reads_a_mailbox, mailboxes(session), oldest_pending(session),
                 failed_since(session, now - timedelta(days=1)), smtp_refused=smtp_refusal(session), running=running)


def raised_alerts(session: Session) -> dict[str, str]:
    """The administrator's alerts raised and not yet recovered: condition -> the words sent."""
    raised: dict[str, str] = {}
    for row in session.exec(select(Event).where(Event.type == "admin_alert").order_by(col(Event.id))).all():
        detail = json.loads(row.detail or "{}")
        if detail.get("raised"):
            raised[str(detail.get("condition"))] = str(detail.get("words", ""))
        else:
            raised.pop(str(detail.get("condition")), None)
    return raised
