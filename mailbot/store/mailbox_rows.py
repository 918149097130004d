"""A mailbox's cursor and health, read and written with SQLAlchemy Core on the light tables.

Every read of the mailbox asks for its cursor and records how the read went, most of them finding nothing new: so
this is done without the ORM and the table classes (``store.models``), which only the ingest pipeline needs. The
cursor's advance, in intake's own transaction, is ``repo.advance_cursor``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from mailbot.store.db import reading, to_db
from mailbot.store.light_tables import CURSORS, MESSAGES


def read_cursor(engine: Engine, mailbox: str) -> tuple[int, int]:
    """(uidvalidity, last_uid) for a mailbox, (0, 0) when it was never read."""
    c = CURSORS.c
    with reading(engine) as conn:
        row = conn.execute(select(c.uidvalidity, c.last_uid).where(c.mailbox == mailbox)).first()
    return (row[0], row[1]) if row else (0, 0)


def has_read_mail(engine: Engine) -> bool:
    """Whether this database has ever read a mailbox or recorded a message (an existing database)."""
    with reading(engine) as conn:
        cursor = conn.execute(select(func.count()).select_from(CURSORS).where(CURSORS.c.uidvalidity != 0)).scalar()
        message = conn.execute(select(MESSAGES.c.id).where(MESSAGES.c.direction == "in").limit(1)).first()
    return bool(cursor) or message is not None


def record_fetch(engine: Engine, mailbox: str, now: datetime, error: str | None = None, auth: bool = False) -> None:
    """The mailbox's health: when it was last read, or what went wrong (the digest and status show it)."""
    c = CURSORS.c
    if error is None:
        change: dict[str, object] = {"last_success_at": to_db(now)}
    else:
        change = {"last_error": error[:1000], "last_error_at": to_db(now), "error_count": c.error_count + 1,
                  "auth_failures": c.auth_failures + (1 if auth else 0)}
    with engine.begin() as conn:
        if conn.execute(update(CURSORS).where(c.mailbox == mailbox).values(change)).rowcount:
            return
        # A mailbox never read before: its cursor starts at the beginning, with this first read's health.
        row: dict[str, object] = {"mailbox": mailbox, "uidvalidity": 0, "last_uid": 0, "error_count": 0,
                                  "auth_failures": 0}
        if error is None:
            row["last_success_at"] = to_db(now)
        else:
            row.update(last_error=error[:1000], last_error_at=to_db(now), error_count=1, auth_failures=int(auth))
        conn.execute(insert(CURSORS).values(row))
