"""Issue 11.9: a database that cannot be used is one line naming it and what to do, with exit status 3;
the daemon waits for one that waiting can mend."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.integration.bot import Bot, Daemon, make_mail
from tests.servers import free_port


def one_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "case, damage, words",
    [
        ("not a database", lambda db: db.write_bytes(b"this is not a database file at all " * 200),
         "not a SQLite database or is damaged"),
        ("truncated", lambda db: db.write_bytes(db.read_bytes()[:1000]), "damaged"),
        ("a directory", lambda db: (db.unlink(), db.mkdir()), "cannot be opened"),
    ],
)
def test_a_broken_sqlite_file_is_one_line_and_exit_3(bot: Bot, case: str, damage, words: str) -> None:  # type: ignore[no-untyped-def]
    bot.cli("cases")  # a good database first
    db = bot.data_dir / "mailbot.db"
    for extra in ("mailbot.db-wal", "mailbot.db-shm"):
        (bot.data_dir / extra).unlink(missing_ok=True)
    damage(db)
    for command in (("cases",), ("run", "--once")):
        result = bot.cli(*command, check=False)
        assert result.returncode == 3, result.stderr
        line = one_line(result)
        assert str(db) in line and words in line and "Traceback" not in result.stderr


def test_postgresql_down_is_one_line_and_exit_3(bot: Bot) -> None:
    bot.extra["MAILBOT_DATABASE_URL"] = f"postgresql+psycopg://mailbot@127.0.0.1:{free_port()}/mailbot"
    result = bot.cli("cases", check=False)
    assert result.returncode == 3
    line = one_line(result)
    assert "cannot reach the database server 127.0.0.1" in line and "MAILBOT_DATABASE_URL" in line


def test_the_daemon_waits_for_a_locked_database_and_says_so(bot: Bot) -> None:
    # SQLite's own wait for the lock is 30 s; only then does the daemon say so and try again.
    bot.cli("cases")
    holder = sqlite3.connect(bot.data_dir / "mailbot.db", check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    daemon = Daemon(bot)
    daemon.start()
    try:
        daemon.wait_log("is locked by another program", timeout=60)
        daemon.wait_log("trying again", timeout=5)
        holder.rollback()
        holder.close()
        daemon.wait_log("IMAP intake idling", timeout=60)
        bot.append(make_mail(subject="After the lock"))
        deadline = time.monotonic() + 15
        while not bot.letters("acknowledgement") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(bot.letters("acknowledgement")) == 1
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "unbuffered"])
def test_a_listing_whose_reader_went_away_ends_quietly(bot: Bot, unbuffered: str) -> None:
    """`mailbot cases | head -1`: the reader has what it wanted and closes the pipe; no traceback, status 0.
    Buffered (the usual), the write fails at the final flush; unbuffered, at the first print."""
    import subprocess
    import sys

    bot.cli("cases")  # the database exists
    env = {k: v for k, v in bot.env().items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([sys.executable, "-m", "mailbot", "cases"], cwd=bot.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**env, **({"PYTHONUNBUFFERED": "1"} if unbuffered else {})})
    assert proc.stdout is not None
    proc.stdout.close()  # gone before the command has started printing (its imports alone take a few tenths)
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err.decode()) == (0, "")
