"""What `mailbot status` reads: the mailboxes' fetch records and the outbox's state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailbot.domain.health import Mailbox
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
