"""The audit chain's head (its last place and hash), read with SQLAlchemy Core on a light table.

Written to the log once a day and at every start (``services.jobs``), so it is read without the ORM; the chain
itself is extended and checked in ``store.audit``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from mailbot.domain.audit import GENESIS
from mailbot.store.light_tables import AUDIT_HEAD

# The head's one row: read here, and locked by ``store.audit.seal`` while it links a transaction's events.
HEAD_QUERY = select(AUDIT_HEAD.c.seq, AUDIT_HEAD.c.hash).where(AUDIT_HEAD.c.id == 1)


def head(connection: Connection) -> tuple[int, str] | None:
    row = connection.execute(HEAD_QUERY).first()
    return (int(row[0]), str(row[1])) if row is not None else None


def head_line(connection: Connection, now: datetime) -> str:
    """The line written each day to the log and the digest: keep it, and `mailbot audit verify --expect` with
    it later proves the chain up to here was not rewritten."""
    current = head(connection) or (0, GENESIS)
    return f"audit trail head on {now.date().isoformat()}: {current[0]}:{current[1]}"
