"""The bot over TLS end to end, as production runs it: the mailbox over IMAPS (MAILBOT_IMAP_SECURITY's default,
port 993 at Microsoft 365 and Gmail) or STARTTLS, and letters after SMTP's STARTTLS (MAILBOT_SMTP_SECURITY's
default, port 587). The sink takes no letter in clear here; Dovecot would take a password in clear from loopback,
so its log shows that each sign-in came over TLS. The machine trusts the servers' certificate through
SSL_CERT_FILE, as it would trust a public authority through its store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.bot import Bot, Daemon, make_mail, new_bot
from tests.servers import SmtpSink, dovecot_binary, self_signed_cert, throwaway_dovecot


@pytest.fixture
def tls_bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bot]:
    if dovecot_binary() is None:
        pytest.fail("dovecot is not installed: run scripts/setup.sh (it installs dovecot-imapd)", pytrace=False)
    cert, key = self_signed_cert(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the bot, its child processes and its commands trust it
    with throwaway_dovecot(tls=(cert, key)) as dovecot, SmtpSink(tmp_path / "sink", starttls=(cert, key)) as sink:
        bot = new_bot(tmp_path / "bot", dovecot, sink)
        bot.extra.update({"MAILBOT_IMAP_SECURITY": "ssl", "MAILBOT_IMAP_PORT": str(dovecot.tls_port),
                          "MAILBOT_SMTP_SECURITY": "starttls"})
        yield bot


@pytest.mark.parametrize("imap_security", ["ssl", "starttls"])
def test_the_daemon_reads_the_mailbox_over_tls_idles_there_and_answers_over_tls(
        tls_bot: Bot, imap_security: str) -> None:
    if imap_security == "starttls":
        tls_bot.extra.update({"MAILBOT_IMAP_SECURITY": "starttls", "MAILBOT_IMAP_PORT": str(tls_bot.dovecot.port)})
    daemon = Daemon(tls_bot)
    daemon.start()
    try:
        daemon.wait_log("IMAP intake idling")
        tls_bot.append(make_mail(frm="jane@example.org", subject="Over TLS"))  # IDLE tells the bot, through TLS
        arrived = tls_bot.sink.wait_for(2, timeout=15)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log.read_text()[-3000:]
    assert sorted(m.message["X-Mailbot-Letter"] for m in arrived) == ["acknowledgement", "staff-notification"]
    assert all(m.tls for m in arrived)
    # Dovecot takes a password in clear from loopback ("secured"), so its log is what shows each sign-in's TLS.
    logins = [line for line in tls_bot.dovecot.log_path.read_text().splitlines() if "imap-login: Info: Login:" in line]
    assert len(logins) >= 2 and all(", TLS, " in line for line in logins), logins  # the test's APPEND and the bot


def test_a_mailbox_whose_certificate_nobody_vouches_for_is_not_read_and_its_mail_waits(
        tls_bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone between the bot and the mailbox (or a server's certificate gone wrong) gets no password and no mail
    read: `run --once` stops with one line saying why, and the mail is answered once the certificate checks."""
    tls_bot.append(make_mail(frm="jane@example.org", subject="Waiting"))
    other, _ = self_signed_cert(tls_bot.root / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    refused = tls_bot.cli("run", "--once", check=False)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"mailbot: could not read the mailbox at 127.0.0.1:{tls_bot.dovecot.tls_port}: ")
    assert "CERTIFICATE_VERIFY_FAILED" in line
    assert tls_bot.sink.count() == 0

    monkeypatch.setenv("SSL_CERT_FILE", str(tls_bot.dovecot.tls[0]))  # type: ignore[index]
    tls_bot.cli("run", "--once")
    assert [m.rcpt_tos for m in tls_bot.letters("acknowledgement")] == [["jane@example.org"]]
