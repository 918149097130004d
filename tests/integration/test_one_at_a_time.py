"""Issue 14, point 4: one bot at a time on a database, with real processes. Before the instance lock, two
daemons on one SQLite file sent 93 letters twice out of 400, and two `run --once` 521."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.bot import Bot, Daemon, make_mail, wait_for
from tests.servers import PostgresServer


def acks_by_recipient(bot: Bot) -> collections.Counter[str]:
    return collections.Counter(r for letter in bot.letters("acknowledgement") for r in letter.rcpt_tos)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_second_daemon_waits_as_standby_and_takes_over_when_the_first_dies(bot: Bot, database: str,
                                                                             request: pytest.FixtureRequest) -> None:
    if database == "postgresql":
        bot.extra["MAILBOT_DATABASE_URL"] = request.getfixturevalue("postgres").url
    first, second = Daemon(bot), Daemon(bot, "second")
    first.start()
    first.wait_log("IMAP intake idling", timeout=30)
    second.start()
    second.wait_log("standby: ", timeout=30)
    try:
        for n in range(40):
            bot.append(make_mail(frm=f"person{n}@example.com", subject=f"Complaint {n}"))
        wait_for(lambda: len(acks_by_recipient(bot)) == 40, 60, "40 acknowledgements")
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)  # dies without letting go of anything itself
        first.proc.wait()
        for n in range(40, 50):
            bot.append(make_mail(frm=f"person{n}@example.com", subject=f"Complaint {n}"))
        second.wait_log("this one takes over", timeout=60)
        wait_for(lambda: len(acks_by_recipient(bot)) == 50, 60, "the standby to answer the later ten")
        time.sleep(2)  # anything sent twice would have arrived by now
        counts = acks_by_recipient(bot)
        assert sorted(counts.values()) == [1] * 50, {r: c for r, c in counts.items() if c > 1}
    finally:
        assert second.stop() == 0
        if first.proc is not None and first.proc.poll() is None:
            first.stop()


def test_run_once_while_a_daemon_is_active_says_so_and_touches_nothing(bot: Bot) -> None:
    daemon = Daemon(bot)
    daemon.start()
    try:
        daemon.wait_log("IMAP intake idling", timeout=30)
        logins_before = bot.dovecot.log_path.read_text().count("Login: user=")
        assert logins_before >= 1  # the daemon's own sign-in is there to be counted
        result = bot.cli("run", "--once")
        assert result.returncode == 0
        assert result.stdout.strip().startswith("mailbot: pid ") and "is running on this database" in result.stdout
        assert bot.dovecot.log_path.read_text().count("Login: user=") == logins_before  # the mailbox untouched
    finally:
        assert daemon.stop() == 0


def test_two_run_once_at_the_same_moment_send_each_letter_once(bot: Bot) -> None:
    for n in range(60):
        bot.append(make_mail(frm=f"person{n}@example.com", subject=f"Complaint {n}"))
    results: list[subprocess.CompletedProcess[str]] = []
    start = threading.Barrier(2)

    def once() -> None:
        start.wait()
        results.append(subprocess.run([sys.executable, "-m", "mailbot", "run", "--once"], env=bot.env(),
                                      cwd=bot.root, capture_output=True, text=True, timeout=120))

    threads = [threading.Thread(target=once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    counts = acks_by_recipient(bot)
    assert len(counts) == 60 and set(counts.values()) == {1}


def test_two_first_starts_on_an_empty_postgresql_both_come_up(bot: Bot, postgres: PostgresServer) -> None:
    """Migrations run under a lock: the second waits for the first and finds the schema there."""
    bot.extra["MAILBOT_DATABASE_URL"] = postgres.url
    import psycopg

    for _ in range(3):
        with psycopg.connect(postgres.url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        procs = [subprocess.Popen([sys.executable, "-m", "mailbot", "db", "upgrade"], env=bot.env(), cwd=bot.root,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errors
