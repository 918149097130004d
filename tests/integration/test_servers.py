"""Prove the real test servers behave as the bot's tests will rely on."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.servers import DovecotServer, SmtpSink

pytestmark = pytest.mark.integration

RAW = b"From: mentee@example.org\r\nTo: complaints@1mm.test\r\nSubject: A complaint\r\n\r\nHello.\r\n"


def _message(subject: str = "Acknowledgement") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "complaints@1mm.test"
    message["To"] = "mentee@example.org"
    message["Subject"] = subject
    message.set_content("We have received your complaint.")
    return message


def test_peek_fetch_leaves_message_unseen(dovecot: DovecotServer) -> None:
    uid = dovecot.append(RAW)
    imap = dovecot.client()
    try:
        imap.select_folder("INBOX")
        fetched = imap.fetch([uid], ["BODY.PEEK[]"])
        assert fetched[uid][b"BODY[]"] == RAW
        flags = imap.get_flags([uid])[uid]
    finally:
        imap.logout()
    assert b"\\Seen" not in flags


def test_append_sets_internaldate_and_flags(dovecot: DovecotServer) -> None:
    when = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
    uid = dovecot.append(RAW, internaldate=when, flags=[b"\\Flagged"])
    imap = dovecot.client()
    try:
        imap.select_folder("INBOX")
        data = imap.fetch([uid], ["INTERNALDATE", "FLAGS"])[uid]
    finally:
        imap.logout()
    assert data[b"INTERNALDATE"].astimezone(timezone.utc).replace(tzinfo=None) == when.replace(tzinfo=None)
    assert b"\\Flagged" in data[b"FLAGS"]


def test_create_folder_and_append_there(dovecot: DovecotServer) -> None:
    dovecot.create_folder("Processed")
    uid = dovecot.append(RAW, folder="Processed")
    imap = dovecot.client()
    try:
        assert imap.folder_exists("Processed")
        imap.select_folder("Processed", readonly=True)
        assert imap.search("ALL") == [uid]
    finally:
        imap.logout()


def test_idle_sees_append_from_another_connection(dovecot: DovecotServer) -> None:
    imap = dovecot.client()
    try:
        imap.select_folder("INBOX")
        imap.idle()
        started = time.monotonic()
        dovecot.append(RAW)
        responses = imap.idle_check(timeout=2)
        waited = time.monotonic() - started
        imap.idle_done()
    finally:
        imap.logout()
    assert (1, b"EXISTS") in responses
    # Dovecot waits a fixed 0.5 s before notifying an idling client.
    assert waited < 1.0


def test_restart_keeps_port_and_mail(dovecot: DovecotServer) -> None:
    uid = dovecot.append(RAW)
    port = dovecot.port
    idler = dovecot.client()
    try:
        idler.select_folder("INBOX")
        idler.idle()
        dovecot.restart()
        # A graceful restart says goodbye to idling clients before it drops them.
        responses = idler.idle_check(timeout=2)
    finally:
        idler.shutdown()
    assert any(r[0] == b"BYE" for r in responses), responses
    assert dovecot.port == port
    imap = dovecot.client()
    try:
        imap.select_folder("INBOX")
        assert imap.search("ALL") == [uid]
    finally:
        imap.logout()


def test_extra_user_has_own_mailbox(dovecot: DovecotServer) -> None:
    dovecot.add_user("staff", "pw")
    dovecot.append(RAW, user="staff")
    imap = dovecot.client("complaints")
    try:
        imap.select_folder("INBOX")
        assert imap.search("ALL") == []
    finally:
        imap.logout()


def test_sink_receives_message_with_envelope(smtp_sink: SmtpSink) -> None:
    before = time.time()
    asyncio.run(
        aiosmtplib.send(
            _message(),
            hostname=smtp_sink.host,
            port=smtp_sink.port,
            sender="bounces@1mm.test",
            recipients=["mentee@example.org", "cc@example.org"],
        )
    )
    [received] = smtp_sink.wait_for(1)
    assert received.mail_from == "bounces@1mm.test"
    assert received.rcpt_tos == ["mentee@example.org", "cc@example.org"]
    assert received.message["Subject"] == "Acknowledgement"
    assert b"We have received your complaint." in received.raw
    assert before <= received.received_at <= time.time()


def test_sink_keeps_arrival_order_and_clears(smtp_sink: SmtpSink) -> None:
    async def send_all() -> None:
        async with aiosmtplib.SMTP(hostname=smtp_sink.host, port=smtp_sink.port) as client:
            for n in range(5):
                await client.send_message(_message(f"n{n}"))

    asyncio.run(send_all())
    assert [m.message["Subject"] for m in smtp_sink.wait_for(5)] == [f"n{n}" for n in range(5)]
    smtp_sink.clear()
    assert smtp_sink.messages() == []


def test_sink_refuses_then_accepts(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse(451)
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            asyncio.run(aiosmtplib.send(_message(), hostname=smtp_sink.host, port=smtp_sink.port))
        assert refused.value.code == 451
    smtp_sink.accept()
    asyncio.run(aiosmtplib.send(_message(), hostname=smtp_sink.host, port=smtp_sink.port))
    assert len(smtp_sink.wait_for(1)) == 1


def test_sink_refuses_only_n_times(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse(550, times=1)
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        asyncio.run(aiosmtplib.send(_message(), hostname=smtp_sink.host, port=smtp_sink.port))
    assert refused.value.code == 550
    asyncio.run(aiosmtplib.send(_message(), hostname=smtp_sink.host, port=smtp_sink.port))
    assert len(smtp_sink.wait_for(1)) == 1


def test_sink_restarts_on_same_port(smtp_sink: SmtpSink) -> None:
    asyncio.run(aiosmtplib.send(_message("first"), hostname=smtp_sink.host, port=smtp_sink.port))
    smtp_sink.wait_for(1)
    port = smtp_sink.port
    smtp_sink.stop()
    with pytest.raises(aiosmtplib.SMTPConnectError):
        asyncio.run(aiosmtplib.send(_message(), hostname=smtp_sink.host, port=port))
    smtp_sink.start()
    asyncio.run(aiosmtplib.send(_message("second"), hostname=smtp_sink.host, port=port))
    assert [m.message["Subject"] for m in smtp_sink.wait_for(2)] == ["first", "second"]
