"""Issue 11.5: the signing key, the database and the data directory are private, and a weak key stops start-up."""

from __future__ import annotations

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
