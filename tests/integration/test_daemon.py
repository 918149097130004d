"""`mailbot run` as a service: IDLE intake, recovery from a restarting IMAP server, a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email
import email.policy
import json
import os
import signal
import smtplib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from email.message import EmailMessage

import psutil
import pytest
from sqlalchemy import text

from mailbot import runtime
from mailbot.bootstrap import App
from mailbot.delivery_process import DeliveryProcess
from mailbot.domain.mail.message import InboundMail
from mailbot.mail import parse_pool
from mailbot.mail.imap import FETCH_CHUNK
from mailbot.mail.parse_pool import ParsePool
from mailbot.services.delivery import DeliveryReport
from tests.integration.bot import Bot, Daemon, make_mail
from tests.servers import free_port


def test_the_daemon_acknowledges_within_a_second_and_survives_an_imap_restart(bot: Bot) -> None:
    daemon = Daemon(bot)
    daemon.start()
    try:
        daemon.wait_log("IMAP intake idling")
        started = time.monotonic()
        bot.append(make_mail(subject="First"))
        bot.sink.wait_for(2, timeout=10)  # the acknowledgement and the staff notification
        assert time.monotonic() - started < 3.0
        assert len(bot.letters("acknowledgement")) == 1

        bot.dovecot.restart()
        bot.append(make_mail(frm="second@example.org", subject="Second"))
        bot.sink.wait_for(4, timeout=30)
        assert len(bot.letters("acknowledgement")) == 2
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log.read_text()[-3000:]
    assert len(bot.letters("acknowledgement")) == 2
    assert {c["subject"] for c in bot.cases_json()} == {"First", "Second"}


def test_local_mode_takes_mail_over_smtp_and_writes_letters_to_a_maildir(bot: Bot) -> None:
    port = free_port()
    bot.extra.update({"MAILBOT_IMAP_HOST": "", "MAILBOT_SMTP_HOST": "", "MAILBOT_LOCAL_SMTP_PORT": str(port)})
    daemon = Daemon(bot)
    daemon.start()
    try:
        daemon.wait_log("local mode")
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "jane@example.com", "complaints@1mm.org.uk", "Local complaint"
        msg["Message-ID"] = "<local-1@example.com>"
        msg.set_content("Nobody called me back.")
        deadline = time.monotonic() + 10
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
                    smtp.send_message(msg)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        sent = bot.data_dir / "sent" / "new"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(list(sent.glob("*"))) < 2:
            time.sleep(0.05)
        letters = [p.read_bytes() for p in sent.glob("*")]
        assert any(b"X-Mailbot-Letter: acknowledgement" in raw and b"1MM-" in raw for raw in letters)
        assert any(b"X-Mailbot-Letter: staff-notification" in raw for raw in letters)
    finally:
        assert daemon.stop() == 0
    assert [c["subject"] for c in bot.cases_json()] == ["Local complaint"]
    assert bot.sink.messages() == []


def test_local_mode_serves_the_complaints_form_and_a_case_appears(bot: Bot) -> None:
    """The README's first command: `mailbot run` in local mode, a browser at /complaints, and the case."""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    port, web = free_port(), free_port()
    bot.extra.update({"MAILBOT_IMAP_HOST": "", "MAILBOT_SMTP_HOST": "", "MAILBOT_LOCAL_SMTP_PORT": str(port),
                      "MAILBOT_HTTP_PORT": str(web)})
    daemon = Daemon(bot)
    daemon.start()
    try:
        daemon.wait_log(f"HTTP listener on http://127.0.0.1:{web}")
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        form = opener.open(f"http://127.0.0.1:{web}/complaints", timeout=10).read().decode()
        token = re.search(r'name="csrf" value="([^"]+)"', form)
        assert token and "Make a complaint" in form
        fields = {"csrf": token.group(1), "reason": "Nobody called me back.", "where_when": "On the phone, Monday.",
                  "outcome": "A call back.", "name": "Jane Doe\r\nBcc: victim@example.org", "email": "jane@example.com",
                  "role": "mentee"}
        answer = opener.open(f"http://127.0.0.1:{web}/complaints", data=urllib.parse.urlencode(fields).encode(),
                             timeout=30).read().decode()
        assert "1MM-2026-0001" in answer
        sent = bot.data_dir / "sent" / "new"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(list(sent.glob("*"))) < 2:
            time.sleep(0.05)
    finally:
        assert daemon.stop() == 0
    [case] = bot.cases_json()
    assert (case["ref"], case["channel"], case["complainant"]) == ("1MM-2026-0001", "web", "jane@example.com")
    letters = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in sent.glob("*")]
    [ack] = [m for m in letters if m["X-Mailbot-Letter"] == "acknowledgement"]
    # A line break typed into the name field added no header to anything we wrote or sent.
    assert all(m["Bcc"] is None and "victim@example.org" not in str(m["To"]) for m in letters)
    assert f"http://127.0.0.1:{web}/cases/1MM-2026-0001/" in ack.get_body(("plain",)).get_content()


def test_demo_plays_the_samples_and_explains_what_happened(bot: Bot) -> None:
    out = bot.cli("demo").stdout
    assert "opened case 1MM-2026-0001" in out
    assert "automated mail: filed, never answered" in out
    assert "X-Mailbot-Letter: acknowledgement" in out


def test_local_mode_says_in_one_line_when_its_port_is_taken(bot: Bot) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bot.extra.update({"MAILBOT_IMAP_HOST": "", "MAILBOT_LOCAL_SMTP_PORT": str(port)})
        result = bot.cli("run", check=False, timeout=30)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mailbot: configuration error: MAILBOT_LOCAL_SMTP_PORT") and "in use" in last


def test_a_complaint_that_arrives_while_letters_are_being_sent_is_answered_at_once(bot: Bot) -> None:
    """Its letters are queued after the running delivery pass last looked at the outbox: they start the next pass.

    The first acknowledgement is held at the SMTP edge until the second complaint's letters are committed;
    the daemon then has every reason to wake again, not to sleep until its 30-second safety timeout.
    """
    app = bot.app()
    smtp = app.deliverer.transport_factory
    first_send = threading.Event()
    release = threading.Event()

    class HeldOnce:
        def __init__(self) -> None:
            self.inner = smtp()

        async def send(self, raw: bytes, mail_from: str, recipients: list[str]) -> str | None:
            if not first_send.is_set():
                first_send.set()
                await asyncio.to_thread(release.wait, 30)
            return await self.inner.send(raw, mail_from, recipients)

        async def close(self) -> None:
            await self.inner.close()

    app.deliverer.transport_factory = HeldOnce

    daemon = runtime.Daemon(app, smtp_child=False)  # the held transport is this process's, so no SMTP child this time
    runner = threading.Thread(target=daemon.run, name="daemon-under-test", daemon=True)
    runner.start()
    try:
        bot.append(make_mail(subject="First"))
        assert first_send.wait(10), "the first letter never reached the SMTP edge"
        bot.append(make_mail(frm="second@example.org", subject="Second"))
        deadline = time.monotonic() + 10
        while _outbound_count(app) < 4:  # the second complaint's acknowledgement and staff notification
            assert time.monotonic() < deadline, "the second complaint was never taken in"
            time.sleep(0.02)
        released = time.monotonic()
        release.set()
        bot.sink.wait_for(4, timeout=5)
        assert time.monotonic() - released < 5
    finally:
        release.set()
        daemon.stop()
        runner.join(40)
        app.engine.dispose()
    assert not runner.is_alive(), "the daemon did not stop"
    assert len(bot.letters("acknowledgement")) == 2


def _outbound_count(app: App) -> int:
    return _message_count(app, "out")


def _inbound_count(app: App) -> int:
    return _message_count(app, "in")


def _message_count(app: App, direction: str) -> int:
    # A connection per look: this engine begins every transaction as a writer, so holding one would stall intake.
    with app.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM message WHERE direction = :d"), {"d": direction})
                   .scalar_one())


class _Handed(DeliveryProcess):
    """The daemon's backlog delivery processes, as started, with how each was ended and what it reported."""

    started: list[_Handed] = []

    async def start(self) -> None:
        await super().start()
        assert self.pid is not None
        self.started_pid: int = self.pid
        self.ended_with: bool | None = None  # finish's last_pass
        self.report: DeliveryReport | None = None
        _Handed.started.append(self)

    async def finish(self, last_pass: bool = True) -> DeliveryReport:
        self.ended_with = last_pass
        self.report = await super().finish(last_pass)
        return self.report


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch, hand_over_first: None) -> list[_Handed]:
    monkeypatch.setattr(_Handed, "started", [])
    monkeypatch.setattr(runtime, "DeliveryProcess", _Handed)
    monkeypatch.setattr(parse_pool, "usable_cpus", lambda: 2.0)  # the hand-over needs two CPUs, as the bot's have
    return _Handed.started


@pytest.fixture
def slow_backlog(bot: Bot, monkeypatch: pytest.MonkeyPatch, handed: list[_Handed]) -> int:
    """A backlog of 30 complaints in the mailbox, which the daemon hands over (a fetch of 10 is one here), taken in
    slowly enough (0.1 s a message) that its fetch still lasts when the test acts on the delivery process."""
    monkeypatch.setattr(runtime, "FETCH_CHUNK", 10)

    class Slow(runtime.ParsePool):  # type: ignore[name-defined,misc]
        def read(self, raws: Sequence[bytes]) -> Iterator[InboundMail]:
            for mail in super().read(raws):
                time.sleep(0.1)
                yield mail

    monkeypatch.setattr(runtime, "ParsePool", Slow)
    for n in range(30):
        bot.append(make_mail(frm=f"person{n}@example.org", subject=f"Backlog {n}"))
    return 30


@contextlib.contextmanager
def _daemon_running(bot: Bot) -> Iterator[App]:
    """An in-process daemon on the bot's mailbox (so the test can patch what it runs), stopped as SIGTERM stops it
    when the block ends; it must have stopped within 40 s."""
    app = bot.app()
    daemon = runtime.Daemon(app)
    runner = threading.Thread(target=daemon.run, name="daemon-under-test", daemon=True)
    runner.start()
    try:
        yield app
    finally:
        daemon.stop()
        runner.join(40)
        app.engine.dispose()
    assert not runner.is_alive(), "the daemon did not stop"


def _wait_until(condition: Callable[[], object], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _sent_in_metrics(app: App) -> float:
    assert app.metrics is not None
    for line in app.metrics.exposition().decode().splitlines():
        if line.startswith('mailbot_letters_total{state="sent"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_daemon_meeting_a_backlog_reads_and_sends_it_from_children_that_end_with_the_fetch(
        bot: Bot, monkeypatch: pytest.MonkeyPatch, handed: list[_Handed]) -> None:
    """After an outage the daemon's first fetch brings a backlog: a full chunk or more is read in a child process
    on the other CPU, as `run --once` reads one (without it the daemon took a 2,000 backlog at ~245/s against
    ~290/s with it), and its letters go out from a delivery process of their own, as in `run --once`. Every
    complaint is filed and acknowledged once, and both children end with the fetch: an idle daemon keeps neither,
    and sends mail as it arrives from its own process."""
    import multiprocessing

    pools: list[ParsePool] = []

    class Recorded(runtime.ParsePool):  # type: ignore[name-defined,misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            pools.append(self)

        def start(self, wait: float = 0.0) -> bool:
            return super().start(wait=60)  # ready for the first chunk, so the test does not race the child's start

    monkeypatch.setattr(runtime, "ParsePool", Recorded)
    count = FETCH_CHUNK + 30
    for n in range(count):
        bot.append(make_mail(frm=f"person{n}@example.org", subject=f"Backlog {n}",
                             message_id=f"<backlog-{n}@example.org>"))
    with _daemon_running(bot) as app:
        bot.sink.wait_for(2 * count, timeout=60)  # each complaint's acknowledgement and staff notification
        _wait_until(lambda: not multiprocessing.active_children(), "the reader child outlived the fetch", 10)
        assert pools and pools[0].start_at == FETCH_CHUNK
        assert pools[0].read_there == count  # both chunks, the smaller last one too
        _wait_until(lambda: handed and handed[0].report is not None, "the delivery process was not taken back")
        assert len(handed) == 1 and handed[0].ended_with is True  # ended after a last pass, not by a stop
        sent_there = handed[0].report.sent  # type: ignore[union-attr]
        assert sent_there > 0 and not psutil.pid_exists(handed[0].started_pid)  # letters left from it; it has ended
        bot.append(make_mail(frm="later@example.org", subject="Later"))  # mail as it arrives: read and sent here
        bot.sink.wait_for(2 * count + 2, timeout=20)
        assert pools[0].read_there == count and multiprocessing.active_children() == []
        assert len(handed) == 1
        # /metrics counts the delivery process's letters with the daemon's own.
        _wait_until(lambda: _sent_in_metrics(app) == 2 * count + 2, "a letter missing from /metrics", 5)
    acknowledged = [to for letter in bot.letters("acknowledgement") for to in letter.rcpt_tos]
    assert sorted(acknowledged) == sorted([f"person{n}@example.org" for n in range(count)] + ["later@example.org"])
    assert set(collections.Counter(m.message["Message-ID"] for m in bot.sink.messages()).values()) == {1}
    assert len(bot.cases_json()) == count + 1


def test_a_daemon_stopped_while_a_delivery_process_sends_a_backlog_loses_and_repeats_nothing(
        bot: Bot, handed: list[_Handed], slow_backlog: int) -> None:
    """SIGTERM in the middle of a backlog: the delivery process ends after the pass under way rather than sending
    the rest, the daemon stops, and the next run sends what was left; every letter reaches the sink once."""
    count = slow_backlog
    with _daemon_running(bot):
        _wait_until(lambda: handed and bot.sink.count() >= 2, "the delivery process was never seen sending", 60)
    assert len(handed) == 1 and handed[0].ended_with is False and handed[0].report is not None
    assert not psutil.pid_exists(handed[0].started_pid)
    bot.once()  # the next start sends whatever the stop left in the outbox
    copies = collections.Counter(m.message["Message-ID"] for m in bot.sink.messages())
    assert len(copies) == 2 * count and set(copies.values()) == {1}
    assert json.loads(bot.cli("status", "--json").stdout)["outbox"] == {"sent": 2 * count}


def test_a_daemon_whose_delivery_process_dies_sends_the_rest_itself(
        bot: Bot, handed: list[_Handed], slow_backlog: int, caplog: pytest.LogCaptureFixture) -> None:
    """The delivery process killed outright mid-backlog: the daemon sees it gone and delivers the rest from its own
    process at once, without waiting for the fetch to end. Only a letter whose 250 came in the instant of the
    kill may go twice (its journal has the rest)."""
    count = slow_backlog
    with _daemon_running(bot) as app:
        _wait_until(lambda: handed and bot.sink.count() >= 4, "the delivery process was never seen sending", 60)
        time.sleep(0.02)  # not the moment a letter reaches the sink: sample the window, do not aim at it
        os.kill(handed[0].started_pid, signal.SIGKILL)
        _wait_until(lambda: any("ended without its report" in r.getMessage() for r in caplog.records),
                    "the daemon did not notice its delivery process had gone")
        assert _inbound_count(app) < count, "the daemon waited for the end of the fetch to deliver again"
        bot.sink.wait_for(2 * count, timeout=60)
    copies = collections.Counter(m.message["Message-ID"] for m in bot.sink.messages())
    assert len(copies) == 2 * count and max(copies.values()) <= 2
    assert json.loads(bot.cli("status", "--json").stdout)["outbox"] == {"sent": 2 * count}


def test_a_daemon_meeting_a_backlog_under_mailbot_delivery_process_at_sends_it_from_its_own_process(
        bot: Bot, monkeypatch: pytest.MonkeyPatch, handed: list[_Handed]) -> None:
    """A fetch large enough for the reader child (a full chunk, 10 here) but under MAILBOT_DELIVERY_PROCESS_AT
    starts no delivery process: its start would cost more than it saves. Every letter still goes once."""
    monkeypatch.setattr(runtime, "FETCH_CHUNK", 10)
    bot.extra["MAILBOT_DELIVERY_PROCESS_AT"] = "13"
    read_there: list[int] = []

    class Recorded(runtime.ParsePool):  # type: ignore[name-defined,misc]
        def start(self, wait: float = 0.0) -> bool:
            return super().start(wait=60)  # ready for the chunk, so the test does not race the child's start

        def close(self) -> None:
            read_there.append(self.read_there)
            super().close()

    monkeypatch.setattr(runtime, "ParsePool", Recorded)
    for n in range(12):
        bot.append(make_mail(frm=f"person{n}@example.org", subject=f"Backlog {n}"))
    with _daemon_running(bot):
        bot.sink.wait_for(24, timeout=60)
        _wait_until(lambda: sum(read_there) == 12, "the fetch was not read in the reader child")
    assert handed == []
    assert set(collections.Counter(m.message["Message-ID"] for m in bot.sink.messages()).values()) == {1}
    assert len(bot.sink.messages()) == 24
