"""What `mailbot status` reads: the mailboxes' fetch records and the outbox's state, with SQLAlchemy Core alone.

`mailbot status` is what a monitor runs every minute, so it loads neither the ORM nor the table classes
(``store.models``, built with SQLModel and pydantic): those imports took about 0.15 s of a 0.55 s command. It reads
through the light table clauses of ``store.light_tables``, as the case commands do (``store.case_reads``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from mailbot.domain.health import EVERY_LETTER_HELD, Facts, Mailbox
from mailbot.store.db import from_db, to_db
from mailbot.store.light_tables import CURSORS, EVENTS, MESSAGES


def mailboxes(conn: Connection) -> tuple[Mailbox, ...]:
    c = CURSORS.c
    rows = conn.execute(select(c.mailbox, c.last_success_at, c.last_error, c.last_error_at).order_by(c.mailbox))
    return tuple(Mailbox(name, from_db(success), error, from_db(error_at)) for name, success, error, error_at in rows)


def outbox_by_state(conn: Connection) -> dict[str, int]:
    m = MESSAGES.c
    # count(*), not count(id): ix_message_state can then answer alone, as it does on SQLite, on a database whose
    # index rows hold no id (PostgreSQL's).
    rows = conn.execute(select(m.delivery, func.count()).where(m.direction == "out").group_by(m.delivery))
    return {str(state or "unknown"): int(count) for state, count in rows}


def oldest_pending(conn: Connection) -> datetime | None:
    m = MESSAGES.c
    return from_db(conn.execute(select(func.min(m.at)).where(m.direction == "out", m.delivery == "pending")).scalar())


def last_sent(conn: Connection) -> datetime | None:
    m = MESSAGES.c
    return from_db(conn.execute(select(func.max(m.sent_at)).where(m.direction == "out")).scalar())


def failed_since(conn: Connection, since: datetime) -> int:
    """Letters given up on since then, dated by their failure (a letter can fail a day after it was written)."""
    e = EVENTS.c
    return int(conn.execute(select(func.count(e.id)).where(e.type == "letter_failed", e.at >= to_db(since))).scalar()
               or 0)


def smtp_refusal(conn: Connection) -> str | None:
    """The SMTP server's last refusal of the bot's sign-in or address, if no letter has been sent since."""
    e = EVENTS.c
    row = conn.execute(select(e.at, e.detail).where(e.type == "letter_deferred").order_by(e.id.desc()).limit(1)).first()
    if row is None:
        return None
    at, detail = row
    try:
        error = str(json.loads(detail or "{}").get("error", ""))
    except (ValueError, AttributeError):
        return None
    if not error.startswith(EVERY_LETTER_HELD):
        return None
    sent = last_sent(conn)
    if sent is not None and sent >= (from_db(at) or sent):
        return None
    return error


def facts(conn: Connection, now: datetime, reads_a_mailbox: bool, running: bool | None) -> Facts:
    """What the health rules (domain.health) judge, read on one connection."""
    return Facts(now, reads_a_mailbox, mailboxes(conn), oldest_pending(conn),
                 failed_since(conn, now - timedelta(days=1)), smtp_refused=smtp_refusal(conn), running=running)


def raised_alerts(conn: Connection) -> dict[str, str]:
    """The administrator's alerts raised and not yet recovered: condition -> the words sent."""
    e = EVENTS.c
    raised: dict[str, str] = {}
    for (detail_text,) in conn.execute(select(e.detail).where(e.type == "admin_alert").order_by(e.id)):
        detail = json.loads(detail_text or "{}")
        if detail.get("raised"):
            raised[str(detail.get("condition"))] = str(detail.get("words", ""))
        else:
            raised.pop(str(detail.get("condition")), None)
    return raised
