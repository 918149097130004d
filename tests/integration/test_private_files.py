"""Issue 11.5: the signing key, the database and the data directory are private, and a weak key stops start-up."""

from __future__ import annotations

import shutil
import sqlite3
import stat
from pathlib import Path

from tests.integration.bot import Bot, make_mail


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_the_database_and_the_data_dir_are_private(bot: Bot) -> None:
    bot.extra["MAILBOT_SECRET"] = ""  # no configured key: the bot makes its own
    bot.data_dir.chmod(0o755)
    bot.append(make_mail())
    bot.cli("run", "--once")
    key = bot.data_dir / "secret.key"
    assert mode(key) == 0o600 and len(key.read_bytes().strip()) == 64
    assert mode(bot.data_dir) == 0o700
    db = bot.data_dir / "mailbot.db"
    assert mode(db) == 0o600
    for extra in ("mailbot.db-wal", "mailbot.db-shm"):
        if (bot.data_dir / extra).exists():
            assert mode(bot.data_dir / extra) == 0o600
    assert not list(bot.data_dir.glob(".secret.key.*"))  # no temporary file left behind
    # An existing database made before this rule is tightened on the next start.
    db.chmod(0o644)
    bot.cli("cases")
    assert mode(db) == 0o600


def test_an_empty_or_short_key_file_stops_start_up_with_one_line(bot: Bot) -> None:
    bot.extra["MAILBOT_SECRET"] = ""
    for content in (b"", b"\n", b"short-key\n"):
        (bot.data_dir / "secret.key").write_bytes(content)
        result = bot.cli("run", "--once", check=False)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "secret.key" in lines[0] and "fewer than 32" in lines[0], result.stderr
        assert not (bot.data_dir / "mailbot.db").exists() or bot.cases_json() == []


def test_a_short_configured_secret_stops_start_up_with_one_line(bot: Bot) -> None:
    bot.extra["MAILBOT_SECRET"] = "too-short"
    result = bot.cli("cases", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "MAILBOT_SECRET" in result.stderr and "32" in result.stderr


def test_a_backup_restores_into_a_fresh_data_dir(bot: Bot, tmp_path: Path) -> None:
    import shutil
    import stat

    from tests.integration.bot import make_mail, staff_reply

    bot.extra["MAILBOT_SECRET"] = ""  # the key in data/secret.key, as by default
    bot.append(make_mail(frm="jane@example.com", subject="Complaint"))
    bot.once()
    target = tmp_path / "backup"
    written = bot.cli("backup", str(target)).stdout.split()
    assert {Path(p).name for p in written} >= {"mailbot.db", "secret.key", "staff.toml", "participants.csv"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(Path(p).stat().st_mode) == 0o600 for p in written)

    # Restore: the backup's files are a data dir.
    fresh = tmp_path / "restored"
    shutil.copytree(target, fresh)
    bot.extra["MAILBOT_DATA_DIR"] = str(fresh)
    restored = bot.case_json("1MM-2026-0001")
    assert restored["complainant"] == "jane@example.com"
    # The signing key came too: staff can still answer the notifications they already have.
    note = bot.letters("staff-notification")[0]
    bot.append(staff_reply(note, "Priya Shah <priya.shah@1mm.org.uk>", "#note\nrestored fine"))
    bot.once()
    assert any(e["type"] == "internal_note" for e in bot.case_json("1MM-2026-0001")["events"])


def test_a_backup_of_postgresql_says_to_use_pg_dump(bot: Bot, tmp_path: Path) -> None:
    bot.extra["MAILBOT_DATABASE_URL"] = "postgresql+psycopg://mailbot@127.0.0.1:1/mailbot"
    result = bot.cli("backup", str(tmp_path / "b"), check=False)
    assert result.returncode in (2, 3)
    assert result.stderr.strip().splitlines()[-1].startswith("mailbot: ")


def test_a_stopped_bots_work_is_in_the_database_file_itself(bot: Bot, tmp_path: Path) -> None:
    # A clean stop closes every connection, so SQLite folds its write-ahead log into mailbot.db: a copy of that one
    # file (an operator's cold copy, a volume snapshot) holds the case just opened.
    bot.append(make_mail(subject="Kept"))
    bot.cli("run", "--once")
    assert not (bot.data_dir / "mailbot.db-wal").exists()

    copy = tmp_path / "copy.db"
    shutil.copy(bot.data_dir / "mailbot.db", copy)
    with sqlite3.connect(copy) as conn:
        assert conn.execute('SELECT subject FROM "case"').fetchall() == [("Kept",)]


def test_a_database_named_by_a_sqlite_uri_is_one_private_file_to_every_part(bot: Bot, tmp_path: Path) -> None:
    # MAILBOT_DATABASE_URL takes any SQLAlchemy URL, SQLite's URI filenames among them. The file they name is the
    # one every part uses: `db upgrade` once failed on a lock file under "file:data/", and left the database it
    # had just made readable by all.
    from tests.integration.bot import Daemon

    by_uri = "sqlite:///file:data/complaints%2520db.sqlite?mode=rwc&uri=true"  # "complaints db.sqlite", relative
    db = bot.data_dir / "complaints db.sqlite"
    bot.extra["MAILBOT_DATABASE_URL"] = by_uri
    bot.cli("db", "upgrade")
    assert mode(db) == 0o600
    bot.append(make_mail(frm="jane@example.com", subject="Named by a URI"))
    bot.cli("run", "--once")
    assert [case["subject"] for case in bot.cases_json()] == ["Named by a URI"]
    assert len(bot.letters("acknowledgement")) == 1
    assert not list(bot.root.glob("file:*")) and not list(bot.data_dir.glob("file:*"))
    backup = bot.cli("backup", str(tmp_path / "backup")).stdout.split()
    with sqlite3.connect(next(p for p in backup if p.endswith("mailbot.db"))) as conn:
        assert conn.execute('SELECT subject FROM "case"').fetchall() == [("Named by a URI",)]

    # A daemon naming the file by its path and a pass naming it by the URI are two bots on one database.
    daemon = Daemon(bot, MAILBOT_DATABASE_URL=f"sqlite:///{db}")
    daemon.start()
    try:
        daemon.wait_log("IMAP intake idling", timeout=30)
        result = bot.cli("run", "--once")
        assert "is running on this database" in result.stdout, result.stdout + result.stderr
    finally:
        assert daemon.stop() == 0
