"""The audit trail's edge: salting and hashing each event as it is added, linking a transaction's events into
the chain as it commits, and reading the chain back for ``mailbot audit verify`` (the rules are in
``domain.audit``).

Events get their place in the chain when their transaction commits, not when they are added: a savepoint
rolled back takes its events with it without leaving a gap, and on PostgreSQL two transactions adding events
at once take turns only for the moment of linking (the ``audit_head`` row's lock), so the chain never forks.

An event is written when its transaction commits, too, already linked: intake adds three a complaint, and
writing each as it came was three of its round trips to PostgreSQL, and three UPDATEs more to link them. Until
then it waits on its connection (``add``), and it is written, unlinked, before any other statement runs there
(a read of the trail, a flush, a SAVEPOINT), so whatever the transaction reads afterwards finds it, in the order
it was added. Only the prebuilt hot-path statements (``store.prebuilt``), which never read the trail, pass it
by. Inside a savepoint an event is written at once, so the savepoint's rollback takes it away.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import bindparam, event, insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from mailbot import randomness
from mailbot.domain import audit
from mailbot.store.audit_head import HEAD_QUERY, head
from mailbot.store.db import reading
from mailbot.store.models import AUDIT_HEAD_TABLE, EVENT_TABLE
from mailbot.store.prebuilt import Prebuilt, forget_when_done

_UNSEALED = "mailbot_audit_unsealed"  # session.info: this transaction added events
_PENDING = "mailbot_audit_pending"  # connection.info: events added in this transaction, not yet written
_WRITTEN = "mailbot_audit_written"  # connection.info: events written in this transaction without a place
_E = EVENT_TABLE.c

_TO_SEAL = Prebuilt(sa_select(_E.id, _E.content_hash).where(_E.seq.is_(None)).order_by(_E.id))
_SEAL = Prebuilt(update(EVENT_TABLE).where(_E.id == bindparam("event_id"))
                 .values(seq=bindparam("new_seq"), chain_hash=bindparam("new_chain")))
_INSERT = Prebuilt(insert(EVENT_TABLE))
_MOVE_HEAD = Prebuilt(update(AUDIT_HEAD_TABLE).where(AUDIT_HEAD_TABLE.c.id == 1)
                      .values(seq=bindparam("head_seq"), hash=bindparam("head_hash")))


def stamp_event(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    """The event's salt and content hash added to its row (``values`` as ``repo.add_event`` inserts it); the
    session's transaction will link it into the chain when it commits."""
    salt = randomness.token_hex(16)
    values["salt"] = salt
    values["content_hash"] = audit.content_hash(salt, values["case_id"], values["at"], values["type"],
                                                values["actor"], values["detail"])
    session.info[_UNSEALED] = True
    return values


def add(session: Session, values: dict[str, Any]) -> None:
    """A stamped event (``stamp_event``) for the trail: written and linked when the transaction commits, or
    earlier, unlinked, before the next statement that is not one of the prebuilt ones (module docstring)."""
    connection = session.connection()
    if connection.in_nested_transaction():
        write_pending(connection)
        _INSERT.run(connection, written_now(connection, values))
    else:
        connection.info.setdefault(_PENDING, []).append(values)


def written_now(connection: Connection, values: dict[str, Any]) -> dict[str, Any]:
    """``values``, about to be written by the caller without a place: ``seal`` will look for it."""
    connection.info[_WRITTEN] = True
    return values


def write_pending(connection: Connection) -> None:
    """The transaction's waiting events written now, unlinked (``seal`` links them at the commit)."""
    pending = connection.info.pop(_PENDING, None)
    if pending:
        connection.info[_WRITTEN] = True
        _INSERT.run_many(connection, pending)


@event.listens_for(Engine, "before_execute")
def _before_any_other_statement(connection: Connection, *_: Any) -> None:
    if connection.info.get(_PENDING):
        write_pending(connection)


forget_when_done(_PENDING, _WRITTEN, at_checkin=False)


def seal(connection: Connection, waiting: list[dict[str, Any]] | None = None) -> int:
    """Link the transaction's events into the chain; returns how many. Those written without a place (in a
    savepoint, or before another statement), with any committed event without one, are linked first, in the
    order of their ids; then the events still ``waiting`` are written, linked, in the order they were added.
    The head row is locked first (PostgreSQL: FOR UPDATE; SQLite's writer already holds the whole database)."""
    if waiting is None:
        waiting = connection.info.pop(_PENDING, None) or []
    head_query = HEAD_QUERY.with_for_update() if connection.dialect.name == "postgresql" else HEAD_QUERY
    head = connection.execute(head_query).first()
    if head is None:  # the row the migration made is gone: the chain cannot be extended honestly
        raise RuntimeError("the audit trail's head row is missing: run `mailbot audit verify`")
    seq, previous = int(head[0]), str(head[1])
    look = connection.info.pop(_WRITTEN, False) or not waiting
    written = _TO_SEAL.rows(connection, {}) if look else []
    if not written and not waiting:
        return 0
    updates = []
    for event_id, content in written:
        seq += 1
        previous = audit.link(previous, seq, content or "")
        updates.append({"event_id": event_id, "new_seq": seq, "new_chain": previous})
    for values in waiting:
        seq += 1
        previous = audit.link(previous, seq, values["content_hash"])
        values.update(seq=seq, chain_hash=previous)
    # Nothing here needs an answer: on PostgreSQL these go with the COMMIT's pipeline (store.prebuilt).
    _SEAL.write_many(connection, updates)
    _INSERT.write_many(connection, waiting)
    _MOVE_HEAD.write(connection, {"head_seq": seq, "head_hash": previous})
    return len(updates) + len(waiting)


@event.listens_for(Session, "before_commit")
def _seal_before_commit(session: Session) -> None:
    # Only the real commit seals: a savepoint's events wait for it (intake releases one savepoint per message,
    # and sealing each would cost four statements a message and hold the head's lock through the whole batch).
    if session.in_nested_transaction():
        return
    if session.info.pop(_UNSEALED, False):
        connection = session.connection()
        waiting = connection.info.pop(_PENDING, None) or []  # taken first: the flush need not write them
        session.flush()  # ORM-added rows first, so nothing flushed after this is left out
        seal(connection, waiting)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous_transaction: Any) -> None:
    # A savepoint rolled back keeps the mark: the transaction's earlier events still need sealing.
    if previous_transaction.parent is None:
        session.info.pop(_UNSEALED, None)


def _rows(connection: Connection, page: int = 5000) -> Iterator[audit.Row]:
    """The chain in order, a page at a time (a trail of millions of events is read in constant memory)."""
    after = 0
    columns = (_E.id, _E.seq, _E.case_id, _E.at, _E.type, _E.actor, _E.detail, _E.salt, _E.content_hash,
               _E.chain_hash, _E.redacted_by)
    while True:
        batch = connection.execute(sa_select(*columns).where(_E.seq > after).order_by(_E.seq).limit(page)).all()
        for row in batch:
            yield audit.Row(*row)
        if len(batch) < page:
            return
        after = batch[-1].seq


def snapshot(engine: Engine) -> Connection:
    """A connection that sees the whole trail as of one instant, though it is read in pages while the bot adds to
    it (SQLite's read transaction is such a snapshot; PostgreSQL's needs REPEATABLE READ)."""
    if engine.dialect.name == "postgresql":
        return engine.connect().execution_options(isolation_level="REPEATABLE READ")
    return reading(engine)


def verify(connection: Connection, expected: dict[int, str] | None = None) -> audit.Verdict:
    unsealed = [row[0] for row in connection.execute(sa_select(_E.id).where(_E.seq.is_(None)).order_by(_E.id))]
    return audit.verify(_rows(connection), head(connection), expected or {}, unsealed)
