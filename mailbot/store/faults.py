"""A database that cannot be used, said in one line that names it and what to do.

A corrupt file, a directory where the file should be, a lock held by another program, a full disk or
a PostgreSQL server that is down used to end start-up in a 120-line traceback. ``describe`` turns the
driver's error into a ``DatabaseUnusable`` (pure: it only reads the message), and says whether waiting
can help, so the daemon retries those and stops on the rest.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mailbot.store.sqlite_file import database_file


class DatabaseUnusable(Exception):
    """The database cannot be used; ``str()`` is one line for the operator."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


# (words in the driver's message, what it means, what to do, whether waiting can help)
_SQLITE_FAULTS: tuple[tuple[tuple[str, ...], str, str, bool], ...] = (
    (("file is not a database", "malformed", "not a database", "file is encrypted", "disk image"),
     "is not a SQLite database or is damaged",
     "restore it from a backup (README, Backups), or move it aside to start an empty one", False),
    (("database is locked", "database table is locked", "busy"),
     "is locked by another program",
     "stop the other program (another mailbot, a backup, sqlite3) or wait for it", True),
    (("disk is full", "database or disk is full", "no space left"),
     "cannot be written: the disk is full", "free some space on its disk", True),
    (("readonly database", "read-only", "attempt to write a readonly"),
     "is read-only", "give the bot's user write access to the file and its folder", False),
    (("unable to open database file", "is a directory", "permission denied", "no such file or directory"),
     "cannot be opened", "check that the path is a file the bot's user may read and write, in a folder it may "
     "write to", False),
    (("disk i/o error",), "could not be read or written (disk I/O error)",
     "check the disk; restore the file from a backup if it is damaged", True),
)


def sqlite_path(url: str) -> str:
    """The file as SQLite opens it (``store.sqlite_file``), or ":memory:". ``url`` is one an engine was made from,
    so SQLAlchemy has read it already."""
    path = database_file(url)
    return str(path) if path is not None else ":memory:"


def describe(exc: BaseException, url: str) -> DatabaseUnusable:
    """The error as one line naming the database and what to do."""
    text = " ".join(str(getattr(exc, "orig", None) or exc).split()) or type(exc).__name__
    lowered = text.lower()
    if url.startswith("sqlite"):
        where = f"the database {sqlite_path(url)}"
        for words, meaning, todo, retryable in _SQLITE_FAULTS:
            if any(word in lowered for word in words):
                return DatabaseUnusable(f"{where} {meaning}: {todo} ({text[:200]})", retryable)
        return DatabaseUnusable(f"{where} cannot be used: {text[:300]}", False)
    parts = urlsplit(url)
    where = f"the database server {parts.hostname or 'localhost'}:{parts.port or 5432}"
    if any(word in lowered for word in ("connection refused", "could not connect", "timeout", "timed out",
                                        "server closed the connection", "no route to host", "is starting up",
                                        "terminating connection", "could not translate host name",
                                        "name or service not known", "connection is bad")):
        return DatabaseUnusable(f"cannot reach {where} (MAILBOT_DATABASE_URL): start it or check the address "
                                f"({text[:200]})", True)
    if "password authentication failed" in lowered or "role" in lowered and "does not exist" in lowered:
        return DatabaseUnusable(f"{where} refused the sign-in: check the user and password in "
                                f"MAILBOT_DATABASE_URL ({text[:200]})", False)
    if "database" in lowered and "does not exist" in lowered:
        return DatabaseUnusable(f"{where} has no such database: create it or fix MAILBOT_DATABASE_URL "
                                f"({text[:200]})", False)
    if "no space left" in lowered or "disk full" in lowered:
        return DatabaseUnusable(f"{where} is out of disk space: free some ({text[:200]})", True)
    return DatabaseUnusable(f"{where} cannot be used: {text[:300]}", False)
