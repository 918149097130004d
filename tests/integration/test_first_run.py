"""Issue 11.8: a new database facing a mailbox that already holds mail does not act on its own."""

from __future__ import annotations

from datetime import datetime, timezone

from tests.integration.bot import Bot, Daemon, make_mail

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


def load(bot: Bot, n: int) -> None:
    for i in range(n):
        bot.append(make_mail(frm=f"person{i}@example.com", subject=f"Complaint {i}"), internaldate=T0)


def test_a_replaced_database_stops_and_asks_instead_of_answering_everyone_again(bot: Bot) -> None:
    load(bot, 3)
    bot.cli("run", "--once")  # the first database (tests set process-existing)
    assert len(bot.letters("acknowledgement")) == 3
    (bot.data_dir / "mailbot.db").unlink()
    for extra in ("mailbot.db-wal", "mailbot.db-shm"):
        (bot.data_dir / extra).unlink(missing_ok=True)
    bot.extra["MAILBOT_FIRST_RUN"] = ""  # unset, as in production
    result = bot.cli("run", "--once", check=False)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "MAILBOT_FIRST_RUN" in line and "3 message(s)" in line and "process-existing" in line
    assert "skip-existing" in line
    assert len(bot.letters("acknowledgement")) == 3  # nobody heard from us twice
    assert bot.cases_json() == []


def test_skip_existing_answers_only_what_arrives_later(bot: Bot) -> None:
    load(bot, 2)
    bot.extra["MAILBOT_FIRST_RUN"] = "skip-existing"
    bot.cli("run", "--once")
    assert bot.cases_json() == [] and bot.sink.messages() == []
    bot.append(make_mail(frm="later@example.com", subject="Arrived later"))
    bot.extra["MAILBOT_FIRST_RUN"] = ""  # an existing database asks nothing
    bot.cli("run", "--once")
    assert [c["subject"] for c in bot.cases_json()] == ["Arrived later"]
    assert [m.rcpt_tos for m in bot.letters("acknowledgement")] == [["later@example.com"]]


def test_an_empty_mailbox_asks_nothing_and_later_mail_is_answered(bot: Bot) -> None:
    bot.extra["MAILBOT_FIRST_RUN"] = ""
    bot.cli("run", "--once")
    bot.append(make_mail(subject="First ever"))
    bot.cli("run", "--once")
    assert [c["subject"] for c in bot.cases_json()] == ["First ever"]


def test_the_daemon_stops_with_the_same_line(bot: Bot) -> None:
    load(bot, 1)
    bot.extra["MAILBOT_FIRST_RUN"] = ""
    daemon = Daemon(bot)
    daemon.start()
    assert daemon.proc is not None
    code = daemon.proc.wait(timeout=30)
    assert code == 2
    assert "MAILBOT_FIRST_RUN" in daemon.log.read_text()
    assert bot.sink.messages() == []
