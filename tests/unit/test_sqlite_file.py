"""The file a database URL names: one rule for the database, its privacy, its locks, its backup and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.store.faults import describe
from mailbot.store.sqlite_file import database_file

CASES = [
    # (MAILBOT_DATABASE_URL, the file SQLite opens, or None where there is no file)
    ("sqlite:///data/mailbot.db", "data/mailbot.db"),
    ("sqlite:////var/lib/mailbot/mailbot.db", "/var/lib/mailbot/mailbot.db"),
    ("sqlite+pysqlite:////var/lib/mailbot/mailbot.db", "/var/lib/mailbot/mailbot.db"),
    ("sqlite://", None),
    ("sqlite:///:memory:", None),
    ("postgresql+psycopg://bot:secret@db.example.org/mailbot", None),
    # SQLite URI filenames (https://www.sqlite.org/uri.html), with SQLAlchemy's uri=true or without it
    ("sqlite:///file:data/mailbot.db?uri=true", "data/mailbot.db"),
    ("sqlite:///file:/var/lib/mailbot/mailbot.db?uri=true", "/var/lib/mailbot/mailbot.db"),
    ("sqlite:///file:///var/lib/mailbot/mailbot.db?uri=true", "/var/lib/mailbot/mailbot.db"),
    ("sqlite:///file://localhost/var/lib/mailbot/mailbot.db?uri=true", "/var/lib/mailbot/mailbot.db"),
    ("sqlite:///file:/var/lib/mailbot/mailbot.db", "/var/lib/mailbot/mailbot.db"),
    ("sqlite:///file:data/mailbot.db?mode=rwc&cache=private&uri=true", "data/mailbot.db"),
    ("sqlite:///file:/srv/complaints%2520box/mailbot.db?uri=true", "/srv/complaints box/mailbot.db"),
    ("sqlite:///file:data/mailbot.db%23old?uri=true", "data/mailbot.db"),  # "#" begins the URI's fragment
    ("sqlite:///file::memory:?uri=true", None),
    ("sqlite:///file:shared?mode=memory&cache=shared&uri=true", None),
    ("sqlite:///file:?uri=true", None),  # SQLite's private temporary database
    ("sqlite:///file://?uri=true", None),
]


@pytest.mark.parametrize(("url", "expected"), CASES)
def test_the_file_a_database_url_names_is_the_one_sqlite_opens(url: str, expected: str | None) -> None:
    assert database_file(url) == (Path(expected) if expected is not None else None)


def test_an_error_names_the_file_not_the_uri() -> None:
    unusable = describe(Exception("unable to open database file"), "sqlite:///file:/srv/bot/mailbot.db?uri=true")
    assert "the database /srv/bot/mailbot.db cannot be opened" in str(unusable)
    unusable = describe(Exception("disk I/O error"), "sqlite://")
    assert "the database :memory: could not be read or written" in str(unusable)
