"""One bot at a time on a database: the active instance's lock, and the lock schema migrations run under.

On SQLite the lock is ``flock`` on a file beside the database (``<db>.active.lock``); on PostgreSQL it is a
session advisory lock held by a connection kept open for the purpose. The operating system or the server
lets go of either the moment the holder dies, however it dies, so a standby takes over without anyone
cleaning up. Whoever holds the lock writes who they are into ``holder`` (pid and host) for the others' messages.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from mailbot.store.sqlite_file import database_file

# PostgreSQL advisory lock keys (any two numbers that nothing else in the database uses).
ACTIVE_KEY = 0x6D61696C  # "mail"
MIGRATE_KEY = 0x626F7431  # "bot1"


def whoami() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


class InstanceLock:
    """Held by the active bot for as long as it runs; ``try_acquire`` never waits."""

    def try_acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def holder(self) -> str:
        """Who holds it, as well as can be told ("another mailbot" when that is all that is known)."""
        return "another mailbot"

    def still_held(self) -> bool:
        """Whether a lock this process took is still ours (a PostgreSQL connection can be lost)."""
        return True

    def inheritable_fd(self) -> int | None:
        """A descriptor that holds the lock in a child process given it, until the child too has ended (None
        where the lock is not a descriptor's)."""
        return None

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class FileLock(InstanceLock):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, whoami().encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor lets go of the lock

    def inheritable_fd(self) -> int | None:
        return self._fd  # flock belongs to the open file, which a child given the descriptor shares

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "another mailbot"
        except OSError:
            return "another mailbot"


class AdvisoryLock(InstanceLock):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return True
        conn = self.engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ACTIVE_KEY}).scalar())
            conn.commit()  # the lock is the session's, not the transaction's
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ACTIVE_KEY})
                conn.commit()
            with contextlib.suppress(Exception):
                conn.invalidate()  # never back into the pool holding anything

    def holder(self) -> str:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(text(
                    "SELECT a.pid, a.client_addr, a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.objid = :k AND l.granted"),
                    {"k": ACTIVE_KEY}).first()
        except Exception:  # noqa: BLE001  (a message, not a decision)
            return "another mailbot"
        if row is None:
            return "another mailbot"
        return f"a mailbot connected from {row.client_addr or 'a local socket'} (database server process {row.pid})"

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
            return True
        except Exception:  # noqa: BLE001  (the connection, and so the lock, is gone)
            return False


class NoLock(InstanceLock):
    """An in-memory database belongs to one process anyway."""

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None


def instance_lock(engine: Engine) -> InstanceLock:
    if engine.url.get_backend_name() == "postgresql":
        return AdvisoryLock(engine)
    path = database_file(engine.url)
    return FileLock(path.with_name(path.name + ".active.lock")) if path else NoLock()


@contextlib.contextmanager
def migrating(engine: Engine, conn: Connection) -> Iterator[None]:
    """Hold the migration lock for the transaction ``conn`` is in: two first starts take turns, and the second
    finds the schema already there. PostgreSQL lets go at commit; on SQLite the file lock is let go after."""
    if engine.url.get_backend_name() == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATE_KEY})
        yield
        return
    path = database_file(engine.url)
    if path is None:
        yield
        return
    fd = os.open(path.with_name(path.name + ".migrate.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
