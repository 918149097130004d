"""Database engine, sessions and schema upgrades (Alembic, applied on start)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from mailbot.files import make_private_sqlite
from mailbot.store.faults import describe
from mailbot.store.sqlite_file import database_file
from mailbot.store.turns import ProcessTurns, WriterTurns

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlmodel import Session

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The newest migration's revision. A database already there starts without loading Alembic at all
# (about 0.2 s of every `mailbot run --once`); tests/unit/test_migrations.py keeps this in step.
SCHEMA_HEAD = "0011"


def _write_ahead_log(cursor: Any, patience: float = 30.0) -> None:
    """Put the database in WAL mode, waiting for other programs as long as any writer would (``busy_timeout``).

    Turning a new database to WAL takes it for a moment alone, and SQLite then answers "database is locked" at
    once rather than through its busy handler: two bots started together on a fresh data directory (a daemon
    and an operator's first command, say) had one fail its start about one time in eight.
    """
    import sqlite3

    deadline = time.monotonic() + patience
    while True:
        try:
            # Its answer is the mode now: "memory" for an in-memory database, which keeps it, as before.
            cursor.execute("PRAGMA journal_mode=WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
        time.sleep(0.02)


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs to be safe under concurrent use."""
    if url.startswith("sqlite"):
        path = database_file(url)  # None for an in-memory database
        if path is not None:
            make_private_sqlite(path)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        # WAL lets the outbox worker and the scheduler read while intake writes; NORMAL
        # synchronous is durable across application crashes, which is what we need.
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            _write_ahead_log(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            # The sqlite3 module otherwise begins a transaction only at the first write, so a
            # SAVEPOINT ... RELEASE commits on its own, and a transaction that read first cannot
            # become a writer once another connection has written (it fails with "database is
            # locked" at once instead of waiting). We begin every transaction ourselves (below).
            dbapi_conn.isolation_level = None

        # BEGIN IMMEDIATE takes the writer's lock up front, waiting (busy_timeout) for the current
        # writer. Our writers also queue for their turn first, this process's threads and then the processes
        # on the database (mailbot/store/turns.py), since SQLite's busy handler polls and a writer that commits
        # and begins again would keep one waiting for seconds. A connection marked read-only (``reading``)
        # begins a plain deferred transaction: in WAL mode it reads the last commit without waiting for anyone.
        turns = _TURNS[engine] = WriterTurns(across=ProcessTurns(path) if path is not None else None)

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
                return
            conn.info[_TURN] = turns.take()  # the pool's record of the connection: its info outlives this checkout
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        def give_back(info: dict[Any, Any]) -> None:
            if _TURN in info:
                turns.give_back(info.pop(_TURN))

        _after_commit_and_rollback(engine, give_back)

        @event.listens_for(engine.pool, "checkin")
        def _sqlite_checkin(_dbapi_conn, record):  # type: ignore[no-untyped-def]
            give_back(record.info)  # a transaction that ended without commit or rollback

        return engine
    return create_engine(url, pool_pre_ping=True)


def _after_commit_and_rollback(engine: Engine, then: Callable[[dict[Any, Any]], None]) -> None:
    """Call ``then(info)``, with the pool's info of the connection, once a COMMIT or a ROLLBACK has been carried out
    on a connection of ``engine``.

    SQLAlchemy's own "commit" and "rollback" events come before the statement. A writer's turn given back there
    let the next writer's BEGIN IMMEDIATE meet the lock still held by the COMMIT under way, and SQLite's busy
    handler then slept 1, 2, 5, 10 ms... before trying again: 143-166 such sleeps in a 2,000-complaint backlog, a
    third of them intake's after a delivery pass's "sent" marks (``bench/README.md``, twenty-fourth look). So the
    engine's dialect (each engine has its own) does the commit and the rollback, then calls ``then``. SQLAlchemy
    hands the dialect the pool's proxy of the connection, whose ``info`` is the one the "begin" event saw.
    """
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def after(connection: Any) -> None:
        try:
            info = connection.info
        except (AttributeError, NotImplementedError):  # a connection of the dialect's first connect: no turn taken
            return
        then(info)

    def do_commit(connection: Any) -> None:
        commit(connection)
        after(connection)  # a COMMIT that failed leaves the transaction to its rollback, which gives the turn back

    def do_rollback(connection: Any) -> None:
        try:
            rollback(connection)
        finally:
            after(connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def open_database(url: str) -> Engine:
    """An engine on a database that works and is at the newest schema, or DatabaseUnusable in one line."""
    import sqlite3

    try:
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        upgrade(engine)
    except (DBAPIError, sqlite3.Error, OSError) as exc:
        raise describe(exc, url) from None
    return engine


READ_ONLY = "mailbot_read_only"
_TURN = "mailbot_writer_turn"
_TURNS: weakref.WeakKeyDictionary[Engine, WriterTurns] = weakref.WeakKeyDictionary()


def writer_turns(engine: Engine) -> WriterTurns | None:
    """The queue of this process's writers on a SQLite engine (None on other databases)."""
    return _TURNS.get(engine)


def reading(engine: Engine) -> Connection:
    """A connection for reads only: on SQLite it never waits for the writer (use it as a context manager)."""
    return engine.connect().execution_options(**{READ_ONLY: True})


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def schema_version(bind: Engine | Connection) -> str | None:
    """The database's Alembic revision, or None when it has none (new, or not ours). Given a connection, it
    reads in that connection's transaction (an engine would wait for a SQLite writer the caller holds)."""
    query = text("SELECT version_num FROM alembic_version")
    try:
        if isinstance(bind, Connection):
            versions = bind.execute(query).scalars().all()
        else:
            with bind.connect() as conn:
                versions = conn.execute(query).scalars().all()
    except DBAPIError:
        return None
    return versions[0] if len(versions) == 1 else None


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    if schema_version(engine) == SCHEMA_HEAD:
        return
    from alembic import command

    from mailbot.store.locks import migrating

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    # Two first starts take turns (PostgreSQL once crashed one of them creating the same type twice); the
    # second finds the schema there. The look is in a savepoint: on PostgreSQL a missing table would
    # otherwise end the transaction.
    with engine.begin() as conn, migrating(engine, conn):
        if _version_in_savepoint(conn) == SCHEMA_HEAD:
            return
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _version_in_savepoint(conn: Connection) -> str | None:
    savepoint = conn.begin_nested()
    try:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:
        savepoint.rollback()
        return None
    savepoint.commit()
    return versions[0] if len(versions) == 1 else None


def session(engine: Engine) -> Session:
    # Imported here: the case listing and the status checks run on this module without the ORM.
    from sqlmodel import Session

    return Session(engine, expire_on_commit=False)


def chunks(ids: Iterable[int], size: int = 500) -> Iterator[list[int]]:
    """Ids in sorted runs of ``size``, for ``IN (...)`` lists that stay under every database's parameter limit."""
    ordered = sorted(ids)
    for start in range(0, len(ordered), size):
        yield ordered[start:start + size]


def to_db(dt: datetime | None) -> datetime | None:
    """Aware UTC for storage (SQLModel's UTCDateTime refuses naive values, which is what we want)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt.isoformat()} cannot be stored: its time zone is a guess")
    return dt.astimezone(timezone.utc)


def from_db(dt: datetime | None) -> datetime | None:
    """Whatever the backend returns -> aware UTC (SQLite keeps no offset; its values are UTC)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)
