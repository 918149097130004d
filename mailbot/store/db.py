"""Database engine, sessions and schema upgrades (Alembic, applied on start)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The newest migration's revision. A database already there starts without loading Alembic at all
# (about 0.2 s of every `mailbot run --once`); tests/unit/test_migrations.py keeps this in step.
SCHEMA_HEAD = "0001"


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
            # The sqlite3 module otherwise begins a transaction only at the first write, so a
            # SAVEPOINT ... RELEASE commits on its own, and a transaction that read first cannot
            # become a writer once another connection has written (it fails with "database is
            # locked" at once instead of waiting). We begin every transaction ourselves (below).
            dbapi_conn.isolation_level = None

        # BEGIN IMMEDIATE takes the writer's lock up front, waiting (busy_timeout) for the current
        # writer: the intake thread, the scheduler and the outbox worker then simply take turns.
        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def schema_version(engine: Engine) -> str | None:
    """The database's Alembic revision, or None when it has none (new, or not ours)."""
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:
        return None
    return versions[0] if len(versions) == 1 else None


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    if schema_version(engine) == SCHEMA_HEAD:
        return
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


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
