"""Issue 11.10: large and odd mail still reaches staff in a form they can receive and safely open."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import make_msgid

from tests.integration.bot import Bot

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


def plain(letter) -> str:  # type: ignore[no-untyped-def]
    return letter.message.get_body(preferencelist=("plain",)).get_content()


def complaint_with(files: list[tuple[str, str, bytes]]) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Jane <jane@example.com>", "complaints@1mm.org.uk", "Evidence attached"
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content("Please see the attached evidence.")
    for name, content_type, data in files:
        maintype, subtype = content_type.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def test_attachments_over_the_limit_and_risky_files_are_listed_not_attached(bot: Bot) -> None:
    bot.extra["MAILBOT_NOTIFICATION_ATTACHMENTS_MAX"] = "1M"
    files = [("statement.pdf", "application/pdf", b"%PDF-1.4\n" + os.urandom(300_000)),
             ("video.mov", "video/quicktime", os.urandom(2_000_000)),
             ("photo.jpg", "image/jpeg", os.urandom(400_000)),
             ("setup.exe", "application/octet-stream", b"MZ" + os.urandom(1000)),
             ("budget.xlsm", "application/octet-stream", os.urandom(2000))]
    bot.append(complaint_with(files), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    (note,) = bot.letters("staff-notification")
    attached = sorted(part.get_filename() for part in note.message.iter_attachments())
    assert attached == ["photo.jpg", "statement.pdf"]
    text = plain(note)
    assert "video.mov (1.9 MB): not attached, over the 1.0 MB attachments limit" in text
    assert "setup.exe" in text and "budget.xlsm" in text and "program, script or macro" in text
    assert "kept on the case" in text
    assert len(note.raw) < 1.6 * 1024 * 1024  # the whole notification stays deliverable
    # The files are kept: the complainant's message is on the case whole.
    messages = bot.case_json("1MM-2026-0001")["messages"]
    assert [m["direction"] for m in messages].count("in") == 1


def test_a_nul_byte_does_not_hide_the_complaint_from_staff(bot: Bot) -> None:
    raw = (b"From: Jane <jane@example.com>\r\nTo: complaints@1mm.org.uk\r\nSubject: My mentor\r\n"
           b"Message-ID: <nul-1@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           b"My mentor missed every session.\x00 Nobody replied to me.\r\n")
    # Local mode keeps the bytes as they came (Dovecot itself turns a NUL into 0x80 on APPEND and FETCH).
    bot.extra["MAILBOT_IMAP_HOST"] = ""
    new = bot.data_dir / "maildir" / "new"
    new.mkdir(parents=True)
    for sub in ("cur", "tmp"):
        (new.parent / sub).mkdir()
    (new / "1.nul.eml").write_bytes(raw)
    bot.once(now=T0 + timedelta(seconds=1))
    (note,) = bot.letters("staff-notification")
    text = plain(note)
    assert "My mentor missed every session" in text and "Nobody replied to me." in text
    assert len(bot.letters("acknowledgement")) == 1


def test_non_ascii_addresses_get_idna_domains_and_utf8_headers_never_encoded_words(bot: Bot) -> None:
    for n, sender in enumerate(("Jane <jane@bücher.de>", "Zoë <zoë@example.com>")):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, "complaints@1mm.org.uk", f"Complaint {n}"
        msg["Message-ID"] = make_msgid(domain="example.com")
        msg.set_content("Nobody called me back.")
        bot.append(msg.as_bytes(policy=msg.policy.clone(utf8=True)), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    acks = {tuple(a.rcpt_tos): a for a in bot.letters("acknowledgement")}
    assert set(acks) == {("jane@xn--bcher-kva.de",), ("zoë@example.com",)}
    for ack in acks.values():
        to_line = next(line for line in ack.raw.split(b"\r\n") if line.startswith(b"To:"))
        assert b"=?" not in to_line
    assert b"To: jane@xn--bcher-kva.de" in acks[("jane@xn--bcher-kva.de",)].raw
    assert "To: zoë@example.com".encode() in acks[("zoë@example.com",)].raw


def test_clamd_flags_the_eicar_test_file_which_is_listed_not_attached(bot: Bot, clamd) -> None:  # type: ignore[no-untyped-def]
    from tests.servers import EICAR

    bot.extra["MAILBOT_CLAMD_SOCKET"] = str(clamd.socket)
    bot.append(complaint_with([("statement.pdf", "application/pdf", b"%PDF-1.4 a clean file"),
                               ("eicar.txt", "text/plain", EICAR)]), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    (note,) = bot.letters("staff-notification")
    assert [part.get_filename() for part in note.message.iter_attachments()] == ["statement.pdf"]
    assert "eicar.txt (68 bytes): not attached, the virus scanner flagged it" in plain(note)
    assert EICAR not in note.raw


def test_an_unreachable_clamd_holds_nothing_up(bot: Bot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bot.extra["MAILBOT_CLAMD_SOCKET"] = str(tmp_path / "no-such.sock")
    bot.append(complaint_with([("statement.pdf", "application/pdf", b"%PDF-1.4 a clean file")]), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    (note,) = bot.letters("staff-notification")
    assert [part.get_filename() for part in note.message.iter_attachments()] == ["statement.pdf"]
    assert len(bot.letters("acknowledgement")) == 1


def test_an_undecodable_byte_in_a_message_id_does_not_stop_the_mailbox(bot: Bot) -> None:
    # Python's parser carries the byte as a lone surrogate, which SQLite cannot store: before the fix the message
    # failed, keeping it as a processing error failed the same way, and intake stopped there on every pass.
    def raw(sender: str, message_id: bytes) -> bytes:
        return (f"From: {sender}\r\nTo: complaints@1mm.org.uk\r\nSubject: My complaint\r\n"
                f"Date: Mon, 16 Nov 2026 09:00:00 +0000\r\n").encode() + b"Message-ID: <" + message_id + \
            b">\r\n\r\nNobody called me back.\r\n"

    bot.append(raw("amira@example.org", b"first@example.org"), internaldate=T0)
    bot.append(raw("bob@example.org", b"caf\xe9\xff@example.org"), internaldate=T0)
    bot.append(raw("carol@example.org", b"third@example.org"), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    assert sorted(letter.rcpt_tos for letter in bot.letters("acknowledgement")) == [
        ["amira@example.org"], ["bob@example.org"], ["carol@example.org"]]
    bot.append(raw("dan@example.org", b"fourth@example.org"), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=2))
    assert len(bot.letters("acknowledgement")) == 4  # the mailbox goes on
