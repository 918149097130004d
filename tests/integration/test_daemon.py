"""`mailbot run` as a service: IDLE intake, recovery from a restarting IMAP server, a clean stop on SIGTERM."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage

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
        while time.monotonic() < deadline and len(list(sent.glob("*"))) < 1:
            time.sleep(0.05)
        letters = [p.read_bytes() for p in sent.glob("*")]
        assert any(b"X-Mailbot-Letter: acknowledgement" in raw and b"1MM-" in raw for raw in letters)
    finally:
        assert daemon.stop() == 0
    assert [c["subject"] for c in bot.cases_json()] == ["Local complaint"]
    assert bot.sink.messages() == []


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
