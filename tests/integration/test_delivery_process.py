"""A backlog's letters go out from a delivery process of their own (mailbot.delivery_process), through the real
Dovecot and SMTP sink: each letter once, the run's totals right, and delivery back in the bot's own process when
that process cannot start or dies."""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from mailbot import delivery_process
from mailbot.delivery_process import DeliveryProcess
from mailbot.launch import child_environment
from mailbot.mail import parse_pool
from tests.integration.bot import Bot, make_mail
from tests.servers import PostgresServer

BACKLOG = 12  # more than parse_pool.MIN_BATCH: a backlog


@pytest.fixture(autouse=True)
def two_cpus(monkeypatch: pytest.MonkeyPatch, hand_over_first: None) -> None:
    """The hand-over needs two CPUs (a child on the same one could only take turns with intake): as on the
    machines the bot runs on, whatever runs these tests. And these small backlogs wait for it to be made."""
    monkeypatch.setattr(parse_pool, "usable_cpus", lambda: 2.0)


def _backlog(bot: Bot, count: int = BACKLOG) -> None:
    for n in range(count):
        bot.append(make_mail(frm=f"person{n}@example.org", subject=f"Complaint {n}"))


def _copies(bot: Bot, count: int = BACKLOG) -> collections.Counter[str]:
    """How many times each letter reached the sink, once every complainant is seen to have an acknowledgement."""
    assert {m.message["To"] for m in bot.letters("acknowledgement")} == {f"person{n}@example.org" for n in range(count)}
    return collections.Counter(m.message["Message-ID"] for m in bot.sink.messages())


def _backlog_sent_each_once(bot: Bot, caplog: pytest.LogCaptureFixture) -> list[str]:
    """A backlog put in the mailbox and taken in by one `run --once`, each of its letters sent once; the log's
    lines saying a delivery process took it over."""
    _backlog(bot)
    with caplog.at_level(logging.INFO, logger="mailbot.runtime"):
        result = bot.once()
    assert (result["fetched"], result["sent"], result["deferred"], result["failed"]) == (BACKLOG, 2 * BACKLOG, 0, 0)
    copies = _copies(bot)
    assert len(copies) == 2 * BACKLOG and set(copies.values()) == {1}
    return [r.getMessage() for r in caplog.records if "delivery process of their own" in r.getMessage()]


def test_a_backlog_s_letters_go_out_from_a_delivery_process_each_once(
        bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    handed = _backlog_sent_each_once(bot, caplog)
    assert len(handed) == 1 and f"(pid {os.getpid()})" not in handed[0]
    # The letters are recorded as sent in the database the bot reads (the child marked them): none pending.
    assert json.loads(bot.cli("status", "--json").stdout)["outbox"] == {"sent": 2 * BACKLOG}

    bot.append(make_mail(frm="late@example.org", subject="One more"))
    with caplog.at_level(logging.INFO, logger="mailbot.runtime"):
        caplog.clear()
        assert bot.once()["sent"] == 2  # one message is no backlog: delivered from the bot's own process
    assert not [r for r in caplog.records if "delivery process" in r.getMessage()]
    assert set(collections.Counter(m.message["Message-ID"] for m in bot.sink.messages()).values()) == {1}


@pytest.mark.parametrize(("at", "handed_over"), [(str(BACKLOG + 1), False), (str(BACKLOG), True), ("0", False)])
def test_only_a_fetch_of_mailbot_delivery_process_at_messages_or_more_starts_a_delivery_process(
        bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, at: str,
        handed_over: bool) -> None:
    """The process's start costs ~0.4 s of CPU, more than it saves on a backlog of a few hundred: a smaller fetch
    (or any, with 0) is sent from the bot's own process, and no process is asked for. Each letter goes once."""
    bot.extra["MAILBOT_DELIVERY_PROCESS_AT"] = at
    asked: list[DeliveryProcess] = []
    real = DeliveryProcess.start

    async def start(self: DeliveryProcess) -> None:
        asked.append(self)
        await real(self)

    monkeypatch.setattr(DeliveryProcess, "start", start)
    handed = _backlog_sent_each_once(bot, caplog)
    assert len(asked) == len(handed) == (1 if handed_over else 0)


def test_on_postgresql_the_delivery_process_sends_each_letter_once(
        bot: Bot, postgres: PostgresServer, caplog: pytest.LogCaptureFixture) -> None:
    """The production database: the process opens its own connections to the server (where each letter is claimed
    before it is sent); each letter goes once, and the bot's status sees every one of them sent."""
    bot.extra["MAILBOT_DATABASE_URL"] = postgres.url
    _backlog(bot)
    with caplog.at_level(logging.INFO, logger="mailbot.runtime"):
        result = bot.once()
    assert (result["fetched"], result["sent"]) == (BACKLOG, 2 * BACKLOG)
    assert any("delivery process of their own" in r.getMessage() for r in caplog.records)
    assert set(_copies(bot).values()) == {1} and len(_copies(bot)) == 2 * BACKLOG
    assert json.loads(bot.cli("status", "--json").stdout)["outbox"] == {"sent": 2 * BACKLOG}


def test_a_delivery_process_that_cannot_start_leaves_delivery_in_the_bot_s_process(
        bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    real = delivery_process.DeliveryProcess.start

    async def cannot_start(self: DeliveryProcess) -> None:
        self.python = "/nonexistent/python"  # as a missing or broken interpreter would
        await real(self)

    monkeypatch.setattr(DeliveryProcess, "start", cannot_start)
    _backlog(bot)
    result = bot.once()
    assert result["sent"] == 2 * BACKLOG
    assert set(_copies(bot).values()) == {1}
    assert any("could not start the delivery process" in r.getMessage() and "delivering from this process"
               in r.getMessage() for r in caplog.records)


def test_a_delivery_process_killed_mid_backlog_leaves_the_rest_to_the_bot_s_process(
        bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Nothing is lost: what the killed process had not sent goes from the bot's own process at the end of the
    run; what it had sent is in its journal, so only a letter whose 250 came in the instant of the kill can go
    twice."""
    real_start = DeliveryProcess.start
    killed: list[int] = []

    def kill_once_letters_flow(pid: int) -> None:
        deadline = time.monotonic() + 60
        while bot.sink.count() < 4 and time.monotonic() < deadline:  # letters flowing, most still to go
            time.sleep(0.001)
        # Not the moment a letter reaches the sink, before its 250 has even been sent: that would aim at the
        # window the promise allows, not sample it (bench/kill_repeats.py).
        time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    async def start(self: DeliveryProcess) -> None:
        await real_start(self)
        assert self.pid is not None
        threading.Thread(target=kill_once_letters_flow, args=(self.pid,), daemon=True).start()

    monkeypatch.setattr(DeliveryProcess, "start", start)
    _backlog(bot, 40)
    result = bot.once()
    assert killed, "the delivery process was never seen sending"
    copies = _copies(bot, 40)
    assert len(copies) == 80 and max(copies.values()) <= 2
    assert any("ended without its report" in r.getMessage() and "delivering the rest from this process"
               in r.getMessage() for r in caplog.records)
    assert result["deferred"] == result["failed"] == 0
    assert json.loads(bot.cli("status", "--json").stdout)["outbox"] == {"sent": 80}


def test_a_bot_killed_outright_keeps_its_database_until_its_delivery_process_has_ended(bot: Bot) -> None:
    """On SQLite the delivery process holds the instance lock with the bot: a second bot started after a kill -9
    of the first cannot deliver beside the first one's delivery process (both could send the same letters)."""
    _backlog(bot, 40)
    run = subprocess.Popen([sys.executable, "-m", "mailbot", "run", "--once"], env=bot.env(), cwd=bot.root,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = None
    deadline = time.monotonic() + 60
    while child is None and time.monotonic() < deadline and run.poll() is None:
        for proc in psutil.Process(run.pid).children(recursive=True):
            try:
                if "mailbot.delivery_process" in " ".join(proc.cmdline()):
                    child = proc
            except psutil.Error:
                pass
        time.sleep(0.01)
    assert child is not None, "no delivery process was started for the backlog"
    others = [proc for proc in psutil.Process(run.pid).children(recursive=True) if proc.pid != child.pid]
    child.suspend()
    run.kill()
    run.wait()

    second = bot.cli("run", "--once")
    assert "is running on this database" in second.stdout and "nothing was done" in second.stdout

    child.resume()  # it finds its parent gone, ends its pass and exits, letting go of the lock
    child.wait(timeout=60)
    # The reader of the mail (mail.parse_pool) ended too: nothing of the killed bot is left running.
    _, alive = psutil.wait_procs(others, timeout=10)
    assert alive == [], [proc.cmdline() for proc in alive]
    bot.once()
    copies = _copies(bot, 40)
    assert len(copies) == 80 and max(copies.values()) <= 2


def test_the_delivery_process_refuses_a_parent_that_says_nothing() -> None:
    """Started and left without its settings (the parent died at once), it exits rather than wait."""
    proc = subprocess.run([sys.executable, "-m", "mailbot.delivery_process"], input=b"", capture_output=True,
                          timeout=60, env=child_environment())
    assert proc.returncode == 1 and proc.stdout == b"" and b"Traceback" not in proc.stderr


def test_a_delivery_process_that_cannot_open_the_database_says_so_in_one_line_and_the_bot_delivers(
        bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    """A child given settings it cannot build a bot from (here a PostgreSQL server that is not there) ends with
    one line in the log, no traceback, and the bot delivers the backlog itself."""
    real_init = DeliveryProcess.__init__

    def unusable(self: DeliveryProcess, settings: object, *args: object, **kwargs: object) -> None:
        real_init(self, settings, *args, **kwargs)  # type: ignore[arg-type]
        broken = copy.copy(self.config.settings)
        broken.database_url = "postgresql://nobody@127.0.0.1:1/nothing"
        self.config = dataclasses.replace(self.config, settings=broken)

    monkeypatch.setattr(DeliveryProcess, "__init__", unusable)
    _backlog(bot)
    assert bot.once()["sent"] == 2 * BACKLOG
    assert set(_copies(bot).values()) == {1}
    err = capfd.readouterr().err
    assert "the delivery process could not start" in err and "Traceback" not in err
    assert any("did not start" in r.getMessage() and "delivering from this process" in r.getMessage()
               for r in caplog.records)


def test_a_delivery_process_makes_no_pass_until_it_is_woken(bot: Bot) -> None:
    """The bot goes on delivering while its delivery process starts, so the process must not send a letter before
    the bot says so (two deliverers at once could send the same letter twice on SQLite, where nothing is claimed)."""
    from mailbot import runtime

    _backlog(bot)
    app = bot.app()
    try:
        assert runtime.intake_once(app) == BACKLOG  # taken in, the letters waiting in the outbox

        async def hand_over() -> tuple[int, int, int]:
            delivery = DeliveryProcess(app.settings, None, runtime.PASS_SPACING)
            await delivery.start()
            await asyncio.sleep(1.5)  # ready, and left alone
            before = bot.sink.count()
            delivery.wake()
            await asyncio.to_thread(bot.sink.wait_for, 2 * BACKLOG, 30)
            return before, bot.sink.count(), (await delivery.finish()).sent

        before, after, reported = asyncio.run(hand_over())
    finally:
        app.engine.dispose()
    assert (before, after, reported) == (0, 2 * BACKLOG, 2 * BACKLOG)


def test_a_backlog_taken_in_before_its_delivery_process_is_ready_is_sent_from_the_bot_s_process(
        bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """The first letters do not wait for the delivery process's start: the bot delivers meanwhile. A backlog it
    has finished before that process is ready is all sent from the bot's own process, each letter once, and the
    process, never used, is ended with the run."""
    from mailbot import runtime
    from mailbot.mail.parse_pool import ParsePool

    monkeypatch.setattr(runtime, "ParsePool", ParsePool)  # no waiting for the hand-over (hand_over_first)
    # As a slow machine's start would be: the run is over before the process is ready.
    slow_python = tmp_path / "slow-python"
    slow_python.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import os, sys, time; time.sleep(10); "
                           f"os.execv(sys.executable, [sys.executable, *sys.argv[1:]])' \"$@\"\n")
    slow_python.chmod(0o755)
    started: list[int] = []
    real_create = asyncio.create_subprocess_exec

    async def create(program: str, *args: object, **kwargs: object) -> asyncio.subprocess.Process:
        if "mailbot.delivery_process" not in args:  # the SMTP worker
            return await real_create(program, *args, **kwargs)
        proc = await real_create(str(slow_python), *args, **kwargs)
        started.append(proc.pid)
        return proc

    monkeypatch.setattr(delivery_process.asyncio, "create_subprocess_exec", create)

    _backlog(bot)
    with caplog.at_level(logging.INFO, logger="mailbot.runtime"):
        began = time.monotonic()
        result = bot.once()
        took = time.monotonic() - began
    assert (result["fetched"], result["sent"]) == (BACKLOG, 2 * BACKLOG)
    assert set(_copies(bot).values()) == {1} and len(_copies(bot)) == 2 * BACKLOG
    assert len(started) == 1 and not psutil.pid_exists(started[0])  # its start given up with the run, it ended
    assert not [r for r in caplog.records if "delivery process of their own" in r.getMessage()]
    assert took < 8, "the run waited for the delivery process it did not use"
