"""`mailbot run` as a service: IDLE intake, recovery from a restarting IMAP server, a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import threading
import time
from email.message import EmailMessage

from sqlalchemy import text

from mailbot import runtime
from mailbot.bootstrap import App
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
    # A connection per look: this engine begins every transaction as a writer, so holding one would stall intake.
    with app.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM message WHERE direction = 'out'")).scalar_one())


def test_a_daemon_meeting_a_backlog_reads_it_in_a_child_that_ends_with_the_fetch(bot: Bot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """After an outage the daemon's first fetch brings a backlog: a full chunk or more is read in a child process
    on the other CPU, as `run --once` reads one (without it the daemon took a 2,000 backlog at ~245/s against
    ~290/s with it). Every complaint is filed and acknowledged once, and the child ends with the fetch: an idle
    daemon keeps no reader process."""
    import multiprocessing

    from mailbot.mail.imap import FETCH_CHUNK
    from mailbot.mail.parse_pool import ParsePool

    pools: list[ParsePool] = []

    class Recorded(ParsePool):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            pools.append(self)

        def start(self, wait: float = 0.0) -> bool:
            return super().start(wait=60)  # ready for the first chunk, so the test does not race the child's start

    monkeypatch.setattr(runtime, "ParsePool", Recorded)
    count = FETCH_CHUNK + 30
    for n in range(count):
        bot.append(make_mail(frm=f"person{n}@example.org", subject=f"Backlog {n}",
                             message_id=f"<backlog-{n}@example.org>"))
    app = bot.app()
    daemon = runtime.Daemon(app)
    runner = threading.Thread(target=daemon.run, name="daemon-under-test", daemon=True)
    runner.start()
    try:
        bot.sink.wait_for(2 * count, timeout=60)  # each complaint's acknowledgement and staff notification
        deadline = time.monotonic() + 10
        while multiprocessing.active_children():
            assert time.monotonic() < deadline, "the reader child outlived the fetch"
            time.sleep(0.05)
        assert pools and pools[0].start_at == FETCH_CHUNK
        assert pools[0].read_there == count  # both chunks, the smaller last one too
        bot.append(make_mail(frm="later@example.org", subject="Later"))  # mail as it arrives: read here
        bot.sink.wait_for(2 * count + 2, timeout=20)
        assert pools[0].read_there == count and multiprocessing.active_children() == []
    finally:
        daemon.stop()
        runner.join(40)
        app.engine.dispose()
    assert not runner.is_alive(), "the daemon did not stop"
    acknowledged = [to for letter in bot.letters("acknowledgement") for to in letter.rcpt_tos]
    assert sorted(acknowledged) == sorted([f"person{n}@example.org" for n in range(count)] + ["later@example.org"])
    assert len(bot.cases_json()) == count + 1
