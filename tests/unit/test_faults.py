"""store.faults.describe: a driver's error becomes one line naming the database, what to do, and whether to wait."""

from __future__ import annotations

import pytest

from mailbot.store.faults import describe

SQLITE = "sqlite:///data/mailbot.db"
PG = "postgresql+psycopg://bot:pw@db.internal:5433/mailbot"


@pytest.mark.parametrize(
    "url, error, words, retryable",
    [
        (SQLITE, "file is not a database", "data/mailbot.db is not a SQLite database or is damaged", False),
        (SQLITE, "database disk image is malformed", "restore it from a backup", False),
        (SQLITE, "database is locked", "is locked by another program", True),
        (SQLITE, "database or disk is full", "the disk is full", True),
        (SQLITE, "[Errno 21] Is a directory: 'data/mailbot.db'", "cannot be opened", False),
        (SQLITE, "unable to open database file", "cannot be opened", False),
        (SQLITE, "attempt to write a readonly database", "is read-only", False),
        (SQLITE, "something new", "data/mailbot.db cannot be used: something new", False),
        (PG, "connection failed: Connection refused", "cannot reach the database server db.internal:5433", True),
        (PG, 'password authentication failed for user "bot"', "refused the sign-in", False),
        (PG, 'database "mailbot" does not exist', "has no such database", False),
        (PG, "could not extend file: No space left on device", "out of disk space", True),
    ],
)
def test_describe(url: str, error: str, words: str, retryable: bool) -> None:
    fault = describe(RuntimeError(error), url)
    assert words in str(fault) and "\n" not in str(fault)
    assert fault.retryable is retryable
    assert "pw" not in str(fault)  # never the password
