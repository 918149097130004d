"""Database engine, sessions and schema upgrades (Alembic, applied on start)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs to be safe under concurrent use."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        # WAL lets the outbox worker and the scheduler read while intake writes; NORMAL
        # synchronous is durable across application crashes, which is what we need.
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


def begin_write(s: Session) -> None:
    """Start the session's transaction as a writer now, on SQLite (BEGIN IMMEDIATE; elsewhere nothing).

    The sqlite3 driver begins a transaction only at the first INSERT/UPDATE, so without this a
    transaction that reads first (a) has each SAVEPOINT ... RELEASE commit on its own, and (b) fails
    at once with "database is locked" if another process wrote between its first read and its first
    write (a stale snapshot cannot be upgraded; SQLite does not wait for that case).
    """
    connection = s.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class WriteGate:
    """Takes turns at SQLite's one writer slot between two processes of one `run --once`.

    SQLite's own wait for a locked database sleeps in steps of up to 100 ms and is not fair: intake,
    committing and beginning again at once, could keep the delivery process from marking a letter
    sent for a long time, which would widen the window in which a crash sends that letter twice.
    So delivery says it is waiting, and intake lets it in before starting its next transaction: a
    letter waits for at most one intake transaction (ingest.TRANSACTION_BUDGET). Delivery waits for
    its turn without blocking its event loop. The base class is the no-op gate for everything else
    (one process, or PostgreSQL's row locks).
    """

    @contextmanager
    def intake(self) -> Iterator[None]:
        yield

    @asynccontextmanager
    async def delivery(self) -> AsyncIterator[None]:
        yield


class ProcessWriteGate(WriteGate):
    # The gate only makes turns fair; SQLite's locking keeps the data correct without it. So if the
    # delivery process died holding or wanting the turn, intake goes on without the gate after a while.
    GIVE_UP = 5.0

    def __init__(self, context: Any) -> None:  # a multiprocessing context (spawn)
        self._lock = context.Lock()
        self._waiting = context.Value("i", 0)

    @contextmanager
    def intake(self) -> Iterator[None]:
        deadline = time.monotonic() + self.GIVE_UP
        while self._waiting.value and time.monotonic() < deadline:
            time.sleep(0.0002)
        acquired = self._lock.acquire(timeout=self.GIVE_UP)
        try:
            yield
        finally:
            if acquired:
                self._lock.release()

    @asynccontextmanager
    async def delivery(self) -> AsyncIterator[None]:
        with self._waiting.get_lock():
            self._waiting.value += 1
        try:
            while not self._lock.acquire(block=False):
                await asyncio.sleep(0.0005)
        finally:
            with self._waiting.get_lock():
                self._waiting.value -= 1
        try:
            yield
        finally:
            self._lock.release()


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
