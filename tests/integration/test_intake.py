"""Issue 2 end to end: complaints are acknowledged once, replies thread, automated mail is never answered."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event

from mailbot import runtime
from mailbot.domain.mail.message import InboundMail
from mailbot.mail.smtp_process import SmtpProcess, WorkerUnavailable
from mailbot.services.delivery import DeliveryReport
from mailbot.services.mailbox import Arrival
from mailbot.services.transport import Transport
from mailbot.store import mailbox_rows
from tests.integration.bot import Bot, make_mail, msgid, new_bot
from tests.probes import run_once_probe
from tests.samples import dsn_bounce
from tests.servers import DovecotServer, SmtpSink, self_signed_cert

# Dovecot ignores an APPEND date in the future, so the tests live in the recent past.
MONDAY_10 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


def test_a_complaint_gets_one_acknowledgement_with_a_reference(bot: Bot) -> None:
    raw = make_mail(subject="Nobody called me back", body="I was promised a call.\nJane")
    bot.append(raw, internaldate=MONDAY_10)
    bot.once(now=MONDAY_10 + timedelta(seconds=1))

    acks = bot.letters("acknowledgement")
    assert len(acks) == 1
    ack = acks[0].message
    assert acks[0].rcpt_tos == ["jane@example.com"]
    ref = re.search(r"\[(1MM-2026-\d{4})\]", ack["Subject"]).group(1)
    assert ref == "1MM-2026-0001"
    assert ack["From"] == "One Million Mentors <complaints@1mm.org.uk>"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == f"<{msgid(raw)}>"
    assert f"<{msgid(raw)}>" in ack["References"]
    assert ack["Message-ID"].endswith(".mailbot@1mm.org.uk>")
    text = ack.get_body(preferencelist=("plain",)).get_content()
    html = ack.get_body(preferencelist=("html",)).get_content()
    assert ref in text and ref in html
    for thing in ("the reason for your complaint", "where and when it happened", "anyone involved",
                  "the outcome you are hoping for", "your contact details"):
        assert thing in text
    # The procedure's promises come with real dates: Monday 10:00 -> reply by the end of Tuesday.
    assert "the end of Tuesday 17 November 2026" in text

    case = bot.case_json(ref)
    assert case["complainant"] == "jane@example.com"
    assert case["procedure"] == "external"
    assert case["subject"] == "Nobody called me back"
    assert case["opened_at"].startswith("2026-11-16T10:00:00")
    kinds = [(m["direction"], m["kind"]) for m in case["messages"]]
    assert ("in", "new_case") in kinds and ("out", "acknowledgement") in kinds


def test_a_reused_message_id_through_dovecot_is_two_complaints_and_a_redelivery_is_one(bot: Bot) -> None:
    """The Message-ID is the sender's to write: a second person's complaint under an id already kept was once
    dropped as a duplicate. Through the real mailbox and sink: each gets one acknowledgement, and the first
    message delivered again (another relay's Received line on it) gets none."""
    reused = "<reused.id@example.com>"
    first = make_mail(frm="Amira Khan <amira@example.org>", subject="No mentor came", message_id=reused,
                      date=MONDAY_10)
    bot.append(first, internaldate=MONDAY_10)
    bot.append(b"Received: by another.relay.example; Mon, 16 Nov 2026 10:00:05 +0000\r\n" + first,
               internaldate=MONDAY_10)
    bot.append(make_mail(frm="Bob Lee <bob@example.org>", subject="Nobody replied", message_id=reused,
                         date=MONDAY_10), internaldate=MONDAY_10)
    bot.once(now=MONDAY_10 + timedelta(seconds=1))
    assert sorted(letter.rcpt_tos[0] for letter in bot.letters("acknowledgement")) == [
        "amira@example.org", "bob@example.org"]
    complainants = {bot.case_json(f"1MM-2026-000{n}")["complainant"] for n in (1, 2)}
    assert complainants == {"amira@example.org", "bob@example.org"}


def test_replies_join_the_case_by_headers_subject_or_plus_address_without_a_second_ack(bot: Bot) -> None:
    complaint = make_mail(subject="Rude volunteer")
    bot.append(complaint, internaldate=MONDAY_10)
    bot.once(now=MONDAY_10)
    ack = bot.letters("acknowledgement")[0].message
    ack_id = ack["Message-ID"].strip("<>")

    by_header = make_mail(subject="Re: something else entirely", body="More detail.",
                          In_Reply_To=f"<{ack_id}>", References=f"<{msgid(complaint)}> <{ack_id}>")
    by_subject = make_mail(subject="AW: Fwd: RE: [1MM-2026-0001] We have received your complaint", body="And this.")
    by_plus = make_mail(subject="one more thing", to="complaints+1mm-2026-0001@1mm.org.uk", body="Also this.")
    for raw in (by_header, by_subject, by_plus):
        bot.append(raw, internaldate=MONDAY_10 + timedelta(minutes=5))
    bot.once(now=MONDAY_10 + timedelta(minutes=6))

    assert len(bot.letters("acknowledgement")) == 1
    cases = bot.cases_json()
    assert [c["ref"] for c in cases] == ["1MM-2026-0001"]
    case = bot.case_json("1MM-2026-0001")
    inbound = [m for m in case["messages"] if m["direction"] == "in"]
    assert [m["kind"] for m in inbound] == ["new_case", "follow_up", "follow_up", "follow_up"]
    assert case["message_count"] >= 5


def test_reply_to_that_is_not_ours_names_the_complainant(bot: Bot) -> None:
    bot.append(make_mail(frm="Web Form <forms@example.net>", Reply_To="Sam Hill <sam@example.org>"))
    bot.once()
    assert bot.letters("acknowledgement")[0].rcpt_tos == ["sam@example.org"]
    assert bot.cases_json()[0]["complainant"] == "sam@example.org"


def test_automated_mail_is_filed_never_answered(bot: Bot) -> None:
    complaint = make_mail(frm="jane@example.com", subject="Complaint")
    bot.append(complaint)
    bot.once()
    ack = bot.letters("acknowledgement")[0].message
    ack_id = ack["Message-ID"].strip("<>")

    ooo = make_mail(frm="jane@example.com", subject="Automatic reply: [1MM-2026-0001] We have received",
                    Auto_Submitted="auto-replied", In_Reply_To=f"<{ack_id}>")
    listmail = make_mail(frm="news@lists.example.org", subject="Weekly news", List_Id="<news.example.org>",
                         Precedence="bulk")
    noreply = make_mail(frm="no-reply@shop.example.com", subject="Your order")
    ours = make_mail(frm="complaints@1mm.org.uk", subject="Loop?")
    bounce = dsn_bounce(ack_id, "jane@example.com", "1MM-2026-0001")
    for raw in (ooo, listmail, noreply, ours, bounce):
        bot.append(raw)
    bot.once()

    assert len(bot.sink.messages()) == 2  # the acknowledgement and the assignee's notification, nothing else
    case = bot.case_json("1MM-2026-0001")
    kinds = {m["kind"] for m in case["messages"] if m["direction"] == "in"}
    assert {"auto_reply", "bounce"} <= kinds
    ack_row = next(m for m in case["messages"] if m["kind"] == "acknowledgement")
    assert ack_row["delivery"] == "undelivered"
    unfiled = bot.cli("unfiled", "--json").stdout
    assert "news@lists.example.org" in unfiled and "no-reply@shop.example.com" in unfiled


def test_restarts_and_redelivery_never_answer_twice(bot: Bot) -> None:
    raw = make_mail(subject="Twice?")
    bot.append(raw)
    bot.once()
    bot.once()
    # The same message delivered again (a new UID) is recognised by its Message-ID.
    bot.append(raw)
    bot.once()
    assert len(bot.letters("acknowledgement")) == 1
    assert bot.cases_json()[0]["message_count"] >= 2
    # Recognised as the same message, not filed again as a follow-up (and no second staff copy for it).
    inbound = [m for m in bot.case_json("1MM-2026-0001")["messages"] if m["direction"] == "in"]
    assert [m["kind"] for m in inbound] == ["new_case"]
    assert len(bot.letters("staff-notification")) == 1


def test_an_old_letter_of_ours_coming_back_stripped_is_filed_not_answered(bot: Bot) -> None:
    """The charity moved the complaints address to a new domain; a forwarder that rewrites From and drops the
    headers that mark our letters brings an old acknowledgement back. Only the store knows its Message-ID is one of
    our letters (asked in the same query as "a duplicate?"): no case opens and nobody is written to. (Redelivery
    of a complaint, the query's other question, is test_restarts_and_redelivery_never_answer_twice.)"""
    complaint = make_mail(frm="jane@example.com", subject="Complaint")
    bot.append(complaint)
    bot.once()
    ack = email.message_from_bytes(bot.letters("acknowledgement")[0].raw, policy=email.policy.default)
    for marker in ("From", "Auto-Submitted", "X-Auto-Response-Suppress", "X-Mailbot-Letter", "X-Mailbot-Case"):
        del ack[marker]
    ack["From"] = "Forwarder <fwd@example.net>"
    bot.extra["MAILBOT_ADDRESS"] = "complaints@newname.example.org"  # our letters' ids now end differently
    bot.append(ack.as_bytes())
    bot.once()
    assert len(bot.sink.messages()) == 2  # still only the acknowledgement and the assignee's notification
    assert [c["ref"] for c in bot.cases_json()] == ["1MM-2026-0001"]
    inbound = [(m["from"], m["kind"]) for m in bot.case_json("1MM-2026-0001")["messages"] if m["direction"] == "in"]
    unfiled = [(m["from"], m["kind"]) for m in json.loads(bot.cli("unfiled", "--json").stdout)]
    assert ("fwd@example.net", "own_mail") in inbound + unfiled


def test_fetching_leaves_the_shared_mailbox_flags_alone(bot: Bot) -> None:
    uid = bot.append(make_mail())
    bot.once()
    imap = bot.dovecot.client()
    try:
        imap.select_folder("INBOX", readonly=True)
        assert b"\\Seen" not in imap.get_flags([uid])[uid]
    finally:
        imap.logout()


def folder_sizes(bot: Bot, *folders: str) -> list[int]:
    imap = bot.dovecot.client()
    try:
        return [imap.select_folder(folder)[b"EXISTS"] for folder in folders]
    finally:
        imap.logout()


def test_processed_mail_can_be_moved_to_a_folder(bot: Bot) -> None:
    bot.extra["MAILBOT_IMAP_PROCESSED_FOLDER"] = "Processed"
    bot.append(make_mail())
    bot.once()
    assert folder_sizes(bot, "INBOX", "Processed") == [0, 1]
    assert len(bot.letters("acknowledgement")) == 1


def test_an_smtp_server_that_refuses_for_a_while_gets_the_letter_once_later(bot: Bot) -> None:
    bot.sink.refuse(451)
    bot.append(make_mail(subject="Please answer"))
    first = bot.once(now=MONDAY_10)
    assert first["sent"] == 0 and first["deferred"] >= 1
    case = bot.case_json("1MM-2026-0001")
    assert any(e["type"] == "letter_deferred" for e in case["events"])
    bot.sink.accept()
    # Not due yet: the retry waits its backoff.
    assert bot.once(now=MONDAY_10 + timedelta(seconds=5))["sent"] == 0
    later = bot.once(now=MONDAY_10 + timedelta(minutes=1))
    assert later["sent"] >= 1
    assert len(bot.letters("acknowledgement")) == 1


def test_a_permanent_refusal_is_recorded_for_staff(bot: Bot) -> None:
    bot.sink.refuse(550)
    bot.append(make_mail())
    bot.once()
    case = bot.case_json("1MM-2026-0001")
    ack = next(m for m in case["messages"] if m["kind"] == "acknowledgement")
    assert ack["delivery"] == "failed" and "550" in ack["error"]
    assert any(e["type"] == "letter_failed" for e in case["events"])


def test_at_most_five_automatic_letters_to_one_address_a_day(bot: Bot) -> None:
    for n in range(7):
        bot.append(make_mail(subject=f"Complaint number {n}"))
    bot.once(now=MONDAY_10)
    assert len(bot.letters("acknowledgement")) == 5
    assert len(bot.cases_json()) == 7  # every message still opens its case
    bot.append(make_mail(subject="The next day"))
    bot.once(now=MONDAY_10 + timedelta(hours=25))
    assert len(bot.letters("acknowledgement")) == 6


def test_a_letter_committed_but_not_sent_before_a_crash_is_sent_once_on_restart(bot: Bot) -> None:
    bot.append(make_mail())
    app = bot.app()
    runtime.intake_once(app)  # the crash: intake committed, delivery never ran
    app.engine.dispose()
    assert bot.sink.messages() == []
    bot.once()
    bot.once()
    assert len(bot.letters("acknowledgement")) == 1


def test_after_downtime_complainants_are_acknowledged_before_staff_get_their_copies(bot: Bot) -> None:
    for n in range(3):
        bot.append(make_mail(frm=f"waiting{n}@example.org", subject=f"Waiting {n}"))
    app = bot.app()
    runtime.intake_once(app)  # three complaints taken in while the SMTP side was down: six letters queued
    app.deliverer.concurrency = 1  # one connection, so the sink sees the outbox's order exactly
    runtime.deliver(app)
    app.engine.dispose()
    kinds = [m.message["X-Mailbot-Letter"] for m in bot.sink.messages()]
    assert kinds == ["acknowledgement"] * 3 + ["staff-notification"] * 3
    assert [m.rcpt_tos for m in bot.sink.messages()[:3]] == [[f"waiting{n}@example.org"] for n in range(3)]


def test_letters_keep_going_out_while_another_writer_holds_the_database(bot: Bot) -> None:
    # On SQLite, intake holds the writer's lock while it takes mail in; marking a letter sent must not
    # stop the other letters meanwhile, and the pass must not end before its letters are marked sent.
    for n in range(12):
        bot.append(make_mail(frm=f"busy{n}@example.org", subject=f"Busy {n}"))
    app = bot.app()
    runtime.intake_once(app)  # 24 letters queued, more than the 8 connections can carry at once
    writer = sqlite3.connect(app.settings.database_url_effective.split("///", 1)[1], isolation_level=None,
                             check_same_thread=False)
    held = threading.Event()

    class TakesTheLockFirst:
        """The first letter handed to the server finds the database busy with another writer."""

        def __init__(self, inner: Transport) -> None:
            self.inner = inner

        async def send(self, raw: bytes, mail_from: str, recipients: list[str]) -> str | None:
            if not held.is_set():
                writer.execute("BEGIN IMMEDIATE")
                held.set()
            return await self.inner.send(raw, mail_from, recipients)

        async def close(self) -> None:
            await self.inner.close()

    smtp = app.deliverer.transport_factory
    app.deliverer.transport_factory = lambda: TakesTheLockFirst(smtp())
    reports: list[DeliveryReport] = []
    passing = threading.Thread(target=lambda: reports.append(runtime.deliver(app)))
    passing.start()
    try:
        bot.sink.wait_for(24, timeout=15)  # every letter reached the server while the lock was held
        assert held.is_set() and passing.is_alive()  # and the pass waits to record them
    finally:
        writer.execute("COMMIT")
        writer.close()
    passing.join(timeout=30)
    assert [r.sent for r in reports] == [24]
    assert runtime.deliver(app).sent == 0  # every letter was marked sent: none goes twice
    app.engine.dispose()
    assert bot.sink.count() == 24


def test_run_once_sends_letters_while_it_is_still_taking_mail_in(bot: Bot) -> None:
    bot.append(make_mail(frm="early@example.org", subject="Early"))
    app = bot.app()
    scheduled = app.jobs.run_due

    def scheduled_work_once_the_acknowledgement_is_out(now: datetime) -> int:
        # Runs in intake's thread after the mailbox: a run that only delivers at the end never gets here.
        arrived = bot.sink.wait_for(2, timeout=15)
        assert sorted(m.message["X-Mailbot-Letter"] for m in arrived) == ["acknowledgement", "staff-notification"]
        return scheduled(now)

    app.jobs.run_due = scheduled_work_once_the_acknowledgement_is_out  # type: ignore[method-assign]
    result = runtime.run_once(app)
    app.engine.dispose()
    assert (result["fetched"], result["sent"]) == (1, 2)


def test_run_once_lets_intake_run_first_while_delivery_and_the_reader_yield(bot: Bot, hand_over_first: None) -> None:
    """In a backlog intake's thread is the critical path: the event loop's thread and the process delivering the
    letters (the delivery process where there are two CPUs, else the SMTP worker) are batch work (``cpu_policy``),
    intake's thread an ordinary one, and so is the child reading the mail, which intake waits for; the pass leaves
    the thread that called it as it was. (Intake waits for the hand-over: eight messages are otherwise often sent
    before the delivery process is ready, from the SMTP worker.)"""
    import psutil

    from mailbot.mail.parse_pool import usable_cpus

    def policies(kind: str) -> list[int]:
        found = []
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if kind in " ".join(child.cmdline()):
                    found.append(os.sched_getscheduler(child.pid))
        return found

    for n in range(8):  # a batch large enough for the reader child (parse_pool.MIN_BATCH)
        bot.append(make_mail(frm=f"person{n}@example.org", subject=f"Complaint {n}"))
    app = bot.app()
    seen: dict[str, object] = {}
    ingest_batch, run_due = app.ingestor.ingest_batch, app.jobs.run_due

    def reading(*args: object, **kwargs: object) -> object:
        done = ingest_batch(*args, **kwargs)  # type: ignore[arg-type]
        seen["reader"] = policies("multiprocessing.spawn")  # the reader child lives until the mailbox is read
        return done

    def scheduled(now: datetime) -> int:
        bot.sink.wait_for(16, timeout=30)  # every letter is out: whatever delivers them is running
        seen["intake"] = os.sched_getscheduler(0)  # the scheduled work runs in intake's thread, after the mailbox
        seen["loop"] = os.sched_getscheduler(caller)  # the thread that called run_once runs its event loop
        seen["smtp worker"] = policies("mailbot.mail.smtp_process")
        seen["delivery process"] = policies("mailbot.delivery_process")
        return run_due(now)

    app.ingestor.ingest_batch = reading  # type: ignore[method-assign]
    app.jobs.run_due = scheduled  # type: ignore[method-assign]
    caller, before = threading.get_native_id(), os.sched_getscheduler(0)
    result = runtime.run_once(app)
    app.engine.dispose()
    assert (result["fetched"], result["sent"]) == (8, 16)
    two = usable_cpus() >= 2  # with one CPU there is no reader child, and delivery stays with the SMTP worker
    assert seen == {"reader": [os.SCHED_OTHER] if two else [], "intake": os.SCHED_OTHER, "loop": os.SCHED_BATCH,
                    "smtp worker": [] if two else [os.SCHED_BATCH],
                    "delivery process": [os.SCHED_BATCH] if two else []}
    assert before == os.sched_getscheduler(0) == os.SCHED_OTHER


def test_run_once_delivers_in_process_when_its_smtp_worker_cannot_start(
        bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    async def cannot_start(self: SmtpProcess) -> None:
        raise WorkerUnavailable("the SMTP worker process did not start (exit code 1)")

    monkeypatch.setattr(SmtpProcess, "start", cannot_start)
    bot.append(make_mail(frm="fallback@example.org", subject="Still answered"))
    assert bot.once()["sent"] == 2
    assert [m.rcpt_tos for m in bot.letters("acknowledgement")] == [["fallback@example.org"]]


def test_run_once_starts_its_smtp_worker_once_it_sees_mail_before_the_first_letter_is_written(
        bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's start (a new interpreter, ~0.3 s) overlaps intake's first messages instead of holding up the
    first pass with letters: here intake may not read the first message until the worker is starting. An idle
    run starts none."""
    starting = threading.Event()
    real_start = SmtpProcess.start

    async def start(self: SmtpProcess) -> None:
        starting.set()
        await real_start(self)

    class Reader(runtime.ParsePool):  # type: ignore[name-defined,misc]
        def read(self, raws: Sequence[bytes]) -> Iterator[InboundMail]:
            waited.append(starting.wait(20))
            return super().read(raws)

    waited: list[bool] = []
    monkeypatch.setattr(SmtpProcess, "start", start)
    monkeypatch.setattr(runtime, "ParsePool", Reader)
    assert bot.once()["fetched"] == 0 and not starting.is_set()  # nothing to read: no worker
    bot.append(make_mail(frm="early@example.org", subject="Answered soon"))
    assert bot.once()["sent"] == 2
    assert waited == [True]
    assert [m.rcpt_tos for m in bot.letters("acknowledgement")] == [["early@example.org"]]


def test_run_once_sends_its_letters_after_starttls_as_the_default_security_asks(
        tmp_path: Path, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAILBOT_SMTP_SECURITY's default, STARTTLS, as on Microsoft 365's and Gmail's port 587: the SMTP worker
    process upgrades its connections before the first letter, and the server takes none in clear."""
    cert, key = self_signed_cert(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the worker inherits it: the machine trusts this server
    with SmtpSink(tmp_path / "sink", starttls=(cert, key)) as sink:
        bot = new_bot(tmp_path / "bot", dovecot, sink)
        bot.extra["MAILBOT_SMTP_SECURITY"] = "starttls"
        bot.append(make_mail(frm="jane@example.org", subject="Over TLS"))
        assert bot.once()["sent"] == 2
        arrived = sink.wait_for(2)
        assert sorted(m.message["X-Mailbot-Letter"] for m in arrived) == ["acknowledgement", "staff-notification"]
        assert all(m.tls for m in arrived)


def test_a_server_asking_for_a_sign_in_the_bot_did_not_give_holds_the_letters_until_the_setting_is_mended(
        tmp_path: Path, dovecot: DovecotServer) -> None:
    """MAILBOT_SMTP_USER left unset where the server needs a sign-in: it answers MAIL with 530. No letter fails
    for good over the bot's own setting. They wait without spending an attempt, `mailbot status` says why, and
    they go once the server takes them."""
    t0 = MONDAY_10
    with SmtpSink(tmp_path / "sink", xoauth2_tokens={"token-1": "complaints"}) as sink:  # wants a sign-in
        bot = new_bot(tmp_path / "bot", dovecot, sink)
        bot.append(make_mail(frm="jane@example.org", subject="Waiting"), internaldate=t0)
        assert bot.once(now=t0)["sent"] == 0
        ack = next(m for m in bot.case_json("1MM-2026-0001")["messages"] if m["kind"] == "acknowledgement")
        assert ack["delivery"] == "pending"
        assert ack["error"] == "sign-in refused: 530 5.7.0 Authentication required"
        with contextlib.closing(sqlite3.connect(bot.data_dir / "mailbot.db")) as db:
            assert db.execute("SELECT attempts FROM message WHERE direction = 'out'").fetchall() == [(0,), (0,)]
        status = json.loads(bot.cli("status", "--json", check=False).stdout)
        assert any("sign-in refused" in reason for reason in status["reasons"]), status
        # `mailbot auth test`, which the alert points to, says what is wrong without sending anything.
        auth = bot.cli("auth", "test", check=False)
        assert auth.returncode == 1
        assert (f"SMTP 127.0.0.1:{sink.port}: connected (no sign-in configured), but it will not take a letter from "
                "complaints@1mm.org.uk: 530 5.7.0 Authentication required") in auth.stdout.splitlines()
        assert sink.count() == 0
    with SmtpSink(tmp_path / "sink2", port=sink.port) as open_sink:  # the server now takes the bot's mail
        bot.sink = open_sink
        assert f"SMTP 127.0.0.1:{sink.port}: connected (no sign-in configured); it takes letters from " \
               "complaints@1mm.org.uk" in bot.cli("auth", "test").stdout.splitlines()
        assert bot.once(now=t0 + timedelta(hours=1))["sent"] == 2
        assert sorted(m.message["X-Mailbot-Letter"] for m in open_sink.wait_for(2)) == [
            "acknowledgement", "staff-notification"]


def test_a_server_that_will_not_take_letters_from_the_bots_address_holds_them_until_it_does(
        tmp_path: Path, dovecot: DovecotServer) -> None:
    """Microsoft 365 answers MAIL FROM with 5.7.60 when the signed-in account may not send as the complaints
    address, and Gmail with 5.4.5 when a day's quota is spent: every letter would meet it. None fails for good;
    they wait without spending an attempt, `mailbot status` says why, `mailbot auth test` shows the server's
    answer, and they go once the server takes them."""
    t0 = MONDAY_10
    refusal = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
    with SmtpSink(tmp_path / "sink") as sink:
        sink.refuse_senders({"complaints@1mm.org.uk": refusal})
        bot = new_bot(tmp_path / "bot", dovecot, sink)
        bot.append(make_mail(frm="jane@example.org", subject="Waiting for the setting"), internaldate=t0)
        assert bot.once(now=t0)["sent"] == 0
        ack = next(m for m in bot.case_json("1MM-2026-0001")["messages"] if m["kind"] == "acknowledgement")
        assert (ack["delivery"], ack["error"]) == ("pending", f"sender refused: {refusal}")
        with contextlib.closing(sqlite3.connect(bot.data_dir / "mailbot.db")) as db:
            assert db.execute("SELECT attempts FROM message WHERE direction = 'out'").fetchall() == [(0,), (0,)]
        status = json.loads(bot.cli("status", "--json", check=False).stdout)
        assert status["state"] == "failing"
        assert f"the SMTP server will not take letters from the bot's address (sender refused: {refusal})" \
            in status["reasons"], status
        assert status["sign_in_state"]["smtp"] == "ok"  # it signed in; the address is what it refuses
        auth = bot.cli("auth", "test", check=False)
        assert auth.returncode == 1
        assert f"it will not take a letter from complaints@1mm.org.uk: {refusal}" in auth.stdout
        # Hours later, still refused: the letters still wait, their attempts unspent.
        assert bot.once(now=t0 + timedelta(hours=3))["sent"] == 0
        with contextlib.closing(sqlite3.connect(bot.data_dir / "mailbot.db")) as db:
            assert db.execute("SELECT delivery, attempts FROM message WHERE direction = 'out'").fetchall() == [
                ("pending", 0), ("pending", 0)]
        assert sink.count() == 0
        sink.accept()  # the account may now send as the complaints address
        assert bot.once(now=t0 + timedelta(hours=4))["sent"] == 2
        assert sorted(m.message["X-Mailbot-Letter"] for m in sink.wait_for(2)) == [
            "acknowledgement", "staff-notification"]
        status = json.loads(bot.cli("status", "--json", check=False).stdout)
        assert not any("will not take letters" in reason for reason in status["reasons"]), status


def test_run_once_starts_its_smtp_worker_only_when_there_is_a_letter_to_send(
        bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    # A run from cron every few minutes mostly finds nothing: it should not start (and stop) a second Python.
    started: list[SmtpProcess] = []
    start = SmtpProcess.start

    async def counted(self: SmtpProcess) -> None:
        started.append(self)
        await start(self)

    monkeypatch.setattr(SmtpProcess, "start", counted)
    assert bot.once()["sent"] == 0 and started == []
    bot.append(make_mail(frm="later@example.org", subject="Now there is mail"))
    assert bot.once()["sent"] == 2 and len(started) == 1
    assert [m.rcpt_tos for m in bot.letters("acknowledgement")] == [["later@example.org"]]


def test_a_pass_that_finds_nothing_new_loads_no_case_machinery_and_the_next_one_answers_mail(bot: Bot) -> None:
    # An idle pass reads the mailbox's cursor, the outbox and what is due in Core, and builds the ingest pipeline,
    # the ORM and the letters only when there is something for them: in a fresh interpreter, as from cron. On a
    # fixed clock, so that no reminder can fall due between the passes.
    def fresh_pass(now: str) -> list[str]:
        probe = run_once_probe(("sqlmodel", "mailbot.store.models", "jinja2", "mailbot.domain.mail.parse",
                                "mailbot.services.ingest", "mailbot.services.correspondence", "aiosmtplib"),
                               args=("--now", now))
        done = subprocess.run([sys.executable, "-c", probe], env=bot.env(), cwd=bot.root, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[-2:]

    bot.append(make_mail(frm="first@example.org", subject="The first"))
    assert bot.once(now=MONDAY_10)["sent"] == 2
    assert fresh_pass("2026-11-16T10:01:00+00:00") == [
        "fetched 0 message(s); scheduled work queued 0 letter(s); sent 0, deferred 0, failed 0", "0 []"]
    bot.append(make_mail(frm="second@example.org", subject="The second"))
    first, imported = fresh_pass("2026-11-16T10:02:00+00:00")
    assert first == "fetched 1 message(s); scheduled work queued 0 letter(s); sent 2, deferred 0, failed 0"
    assert "mailbot.services.ingest" in imported and "sqlmodel" in imported
    assert [m.rcpt_tos for m in bot.letters("acknowledgement")] == [["first@example.org"], ["second@example.org"]]


def test_run_once_sends_what_was_taken_in_even_when_a_later_step_fails(bot: Bot) -> None:
    bot.append(make_mail(frm="first@example.org", subject="Before the failure"))
    app = bot.app()

    def broken(now: datetime) -> int:
        raise RuntimeError("scheduled work failed")

    app.jobs.run_due = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="scheduled work failed"):
        runtime.run_once(app)
    assert runtime.deliver(app).sent == 0  # nothing left behind in the outbox
    app.engine.dispose()
    assert sorted(m.message["X-Mailbot-Letter"] for m in bot.sink.messages()) == [
        "acknowledgement", "staff-notification"]


def test_a_time_limit_splits_a_fetch_into_short_transactions_and_loses_nothing(bot: Bot) -> None:
    # Intake's limit: the outbox worker, sending meanwhile, must not wait behind a whole fetch.
    app = bot.app(MONDAY_10)
    commits: list[int] = []
    event.listen(app.engine, "commit", lambda conn: commits.append(1))
    arrivals = [Arrival(make_mail(frm=f"split{n}@example.org", subject=f"Split {n}"), MONDAY_10, uid=n + 1)
                for n in range(3)]
    outcomes = app.ingestor.ingest_batch(arrivals, max_seconds=0)
    assert [o.action for o in outcomes] == ["new_case"] * 3
    assert len(commits) == 3  # one transaction per message with a zero limit
    commits.clear()
    more = [Arrival(make_mail(frm=f"whole{n}@example.org", subject=f"Whole {n}"), MONDAY_10, uid=n + 4)
            for n in range(3)]
    assert len(app.ingestor.ingest_batch(more)) == 3
    assert len(commits) == 1  # without a limit, the fetch is one transaction
    app.engine.dispose()
    assert len(bot.cases_json()) == 6


def test_unreadable_mail_is_kept_and_shown_to_staff(bot: Bot) -> None:
    bot.append(b"\x00\x01\x02 garbage \xff\xfe\r\n\r\n\x00")
    bot.once()
    assert bot.letters("acknowledgement") == []
    rows = bot.cli("unfiled", "--json").stdout
    assert "unreadable" in rows
    alerts = bot.letters("unreadable-alert")
    assert len(alerts) == 1 and alerts[0].rcpt_tos == ["priya.shah@1mm.org.uk"]


def test_cli_lists_cases_with_the_contract_fields(bot: Bot) -> None:
    bot.append(make_mail(subject="One"), internaldate=MONDAY_10)
    bot.append(make_mail(frm="bob@example.org", subject="Two"), internaldate=MONDAY_10)
    bot.cli("run", "--once", "--now", "2026-11-16T10:00:05+00:00")
    cases = bot.cases_json()
    assert [c["ref"] for c in cases] == ["1MM-2026-0001", "1MM-2026-0002"]
    for c in cases:
        assert {"ref", "status", "stage", "procedure", "complainant", "subject", "opened_at",
                "message_count"} <= set(c)
    detail = bot.case_json("1MM-2026-0002")
    for m in detail["messages"]:
        assert {"direction", "message_id", "subject", "at", "kind"} <= set(m)
    for e in detail["events"]:
        assert {"at", "type", "detail"} <= set(e)
    text = bot.cli("cases").stdout
    assert "1MM-2026-0001" in text and "bob@example.org" in text
    # The listing reads its own columns (not the summary): each line says what --json says of that case.
    lines = text.splitlines()
    assert len(lines) == len(cases)
    for c, line in zip(cases, lines):
        assert line == (f"{c['ref']}  {c['status']:<14} stage {c['stage']}  {c['procedure']:<8} "
                        f"{c['complainant']:<32} {c['message_count']:>3} msg  {c['subject']}")
        assert c["message_count"] >= 3  # the complaint, its acknowledgement and the staff copy
    missing = bot.cli("case", "1MM-2026-9999", check=False)
    assert missing.returncode == 1 and "no case 1MM-2026-9999" in missing.stderr


@pytest.mark.parametrize(
    "name, value, expected",
    [
        # the README's example, word for word
        ("MAILBOT_IMAP_PORT", "imap", "mailbot: configuration error: MAILBOT_IMAP_PORT: must be a whole number "
                                      "(got 'imap')"),
        ("MAILBOT_IMAP_SECURITY", "tls-please", "MAILBOT_IMAP_SECURITY"),
        ("MAILBOT_TIMEZONE", "Mars/Olympus", "MAILBOT_TIMEZONE"),
        ("MAILBOT_ADDRESS", "not-an-address", "MAILBOT_ADDRESS"),
        ("MAILBOT_AUTH", "kerberos", "MAILBOT_AUTH"),
        ("MAILBOT_AUTH", "command", "MAILBOT_OAUTH_TOKEN_COMMAND must be set with MAILBOT_AUTH=command"),
        ("MAILBOT_CEO_ADDRESS", "Alex <alex@1mm.org.uk>", "MAILBOT_CEO_ADDRESS"),
    ],
)
def test_a_misconfiguration_stops_start_up_with_one_line(bot: Bot, name: str, value: str, expected: str) -> None:
    bot.extra[name] = value
    result = bot.cli("run", "--once", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]


def test_an_unreachable_imap_server_is_one_line_and_recorded(bot: Bot) -> None:
    bot.dovecot.stop(graceful=False)
    result = bot.cli("run", "--once", check=False)
    assert result.returncode == 3  # a server that cannot be used (README, Exit statuses)
    assert result.stderr.strip().splitlines()[-1].startswith("mailbot: could not read the mailbox at 127.0.0.1")


def test_wrong_credentials_are_one_line(bot: Bot) -> None:
    bot.extra["MAILBOT_IMAP_PASSWORD"] = "wrong"
    result = bot.cli("run", "--once", check=False)
    assert result.returncode == 2 and "could not read the mailbox" in result.stderr  # configuration


def test_a_broken_directory_stops_start_up_with_the_file_and_line(bot: Bot) -> None:
    (bot.data_dir / "participants.csv").write_text(
        "email,name,role,status,region,coordinator_email\nx@example.org,X,volunteer,current,London,\n")
    result = bot.cli("run", "--once", check=False)
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "participants.csv, line 2" in line and "role must be mentee or mentor" in line


def test_a_message_the_bot_fails_on_is_kept_skipped_and_shown_to_staff(bot: Bot, tmp_path) -> None:
    import shutil

    from tests.integration.bot import REPO

    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    # A template edit gone wrong: the acknowledgement names a variable that does not exist.
    (templates / "letters" / "acknowledgement.txt").write_text("Subject: [{{ ref }}] {{ no_such_thing }}\n\nHi\n")
    bot.extra["MAILBOT_TEMPLATES_DIR"] = str(templates)
    bot.append(make_mail(subject="First"))
    bot.append(make_mail(frm="follow@example.org", subject="Re: something", Auto_Submitted="auto-replied"))
    bot.once()
    unfiled = bot.cli("unfiled", "--json").stdout
    assert "processing_error" in unfiled and "First" in unfiled
    alerts = bot.letters("unreadable-alert")
    assert len(alerts) == 1 and "no_such_thing" in alerts[0].message.get_body(("plain",)).get_content()
    assert bot.cases_json() == []  # the failed message's half-made case was rolled back with it
    bot.once()  # the cursor moved past it: nothing is retried or sent again
    assert len(bot.letters("unreadable-alert")) == 1


def test_processed_mail_left_in_the_inbox_by_a_stop_is_moved_on_the_next_start(bot: Bot) -> None:
    """A kill between a transaction's commit and the move left its messages in INBOX for good."""
    from sqlalchemy import create_engine, text

    bot.extra["MAILBOT_IMAP_PROCESSED_FOLDER"] = "Processed"
    bot.append(make_mail(subject="First"))
    bot.once()
    # The state a kill leaves: a message processed and its cursor committed, but still in INBOX.
    uid = bot.append(make_mail(subject="Processed but not moved"))
    raw = bot.dovecot.client()
    try:
        raw.select_folder("INBOX")
        fetched = raw.fetch([uid], ["BODY.PEEK[]", "INTERNALDATE"])[uid]
    finally:
        raw.logout()
    from mailbot.services.mailbox import Arrival, CursorPosition

    app = bot.app()
    try:
        cursor = app.imap_config().mailbox
        validity = mailbox_rows.read_cursor(app.engine, cursor)[0]
        app.ingestor.ingest_batch([Arrival(bytes(fetched[b"BODY[]"]), datetime.now(timezone.utc), uid)],
                                  CursorPosition(cursor, validity))
    finally:
        app.engine.dispose()
    bot.once()
    assert folder_sizes(bot, "INBOX", "Processed") == [0, 2]
    assert len(bot.letters("acknowledgement")) == 2  # each once: the stranded one was not processed again
    engine = create_engine(f"sqlite:///{bot.data_dir / 'mailbot.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM message WHERE direction='in'")).scalar() == 2
    engine.dispose()


def test_mailbot_status_turns_red_when_the_mailbox_is_unreachable_and_green_again(bot: Bot) -> None:
    import json as json_lib

    start = datetime.now(timezone.utc)
    bot.append(make_mail(subject="Complaint"))
    bot.once()
    healthy = bot.cli("status", "--json")
    report = json_lib.loads(healthy.stdout)
    assert (report["state"], report["mode"], report["outbox"]) == ("healthy", "imap", {"sent": 2})
    assert report["schema_revision"] and report["version"]

    bot.dovecot.stop(graceful=False)
    bot.cli("run", "--once", check=False)  # records the failed read
    later = (start + timedelta(minutes=20)).isoformat()
    failing = bot.cli("status", "--json", "--now", later, check=False)
    assert failing.returncode == 3
    assert json_lib.loads(failing.stdout)["state"] == "failing"
    text = bot.cli("status", "--now", later, check=False).stdout
    assert text.startswith("mailbot ") and "failing" in text and "not read since" in text

    bot.dovecot.start()
    bot.once()
    assert bot.cli("status", "--json").returncode == 0


def test_the_log_has_a_line_per_message_and_per_letter_and_never_their_words(bot: Bot) -> None:
    import json as json_lib

    bot.extra["MAILBOT_LOG_FORMAT"] = "json"
    bot.append(make_mail(subject="A private matter", body="My private words about my mentor."))
    result = bot.cli("run", "--once")
    lines = [json_lib.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    messages = [line for line in lines if line.get("event") == "message"]
    letters = [line for line in lines if line.get("event") == "letter"]
    assert [(m["verdict"], m["case"], m["letters"]) for m in messages] == \
        [("new_case", "1MM-2026-0001", ["acknowledgement", "staff-notification"])]
    assert sorted(line["state"] for line in letters) == ["sent", "sent"]
    assert all(line["message_id"] for line in letters)
    assert "private words" not in result.stderr and "A private matter" not in result.stderr
    assert "Running job" not in result.stderr  # the scheduler's chatter stays at debug


def test_the_log_level_is_a_setting(bot: Bot) -> None:
    bot.extra["MAILBOT_LOG_LEVEL"] = "warning"
    bot.append(make_mail(subject="Complaint"))
    result = bot.cli("run", "--once")
    assert "message <" not in result.stderr


def test_a_real_mailbox_is_never_served_from_the_fictional_sample_directory(bot: Bot) -> None:
    bot.extra["MAILBOT_SAMPLE_DIRECTORY"] = "refuse"  # the default
    result = bot.cli("run", "--once", check=False)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "fictional sample directory" in line and "MAILBOT_SAMPLE_DIRECTORY=allow" in line
    # The charity's own directory (the marker line deleted) is served.
    staff = bot.data_dir / "staff.toml"
    staff.write_text("".join(line for line in staff.read_text().splitlines(keepends=True)
                             if not line.startswith("# mailbot-sample-directory:")))
    assert bot.cli("run", "--once").returncode == 0


def test_run_help_says_which_mode_it_will_run_in_and_where_settings_come_from(bot: Bot) -> None:
    text = " ".join(bot.cli("run", "--help").stdout.split())
    assert f"reads the mailbox complaints@{bot.dovecot.host} over IMAP (signing in with a password)" in text
    assert f"sends letters through {bot.sink.host}" in text
    assert "Settings come from MAILBOT_* environment variables and a .env file" in text


def _unreadable_on_the_server(bot: Bot, subject: str) -> None:
    """Make the server unable to give the message with this subject: its Maildir file unreadable to Dovecot,
    which then answers any FETCH that includes it with NO and ends the session."""
    for path in (bot.dovecot.maildir() / "new").iterdir():
        if f"Subject: {subject}".encode() in path.read_bytes():
            os.chown(path, 0, 0)
            path.chmod(0o000)
            return
    raise AssertionError(f"no message {subject!r} in the Maildir")


def _unfiled(bot: Bot) -> list[dict]:
    return json.loads(bot.cli("unfiled", "--json").stdout)


@pytest.mark.parametrize("processed_folder", [None, "Processed"])
def test_a_message_the_server_will_not_give_is_filed_for_staff_and_the_mail_around_it_is_answered(
        bot: Bot, processed_folder: str | None) -> None:
    """One message the server cannot give used to stop intake for good: every FETCH that included it failed,
    so the complaints before and after it were never answered, on every pass."""
    if processed_folder:
        bot.extra["MAILBOT_IMAP_PROCESSED_FOLDER"] = processed_folder
    bot.once(now=MONDAY_10)  # the mailbox read once, empty
    for who in ("ann", "bob", "cat"):
        bot.deliver(make_mail(frm=f"{who}@example.org", subject=f"Complaint from {who}"), MONDAY_10)
    _unreadable_on_the_server(bot, "Complaint from bob")

    bot.once(now=MONDAY_10)
    assert sorted(a["To"] for a in (m.message for m in bot.letters("acknowledgement"))) == [
        "ann@example.org", "cat@example.org"]
    alert = bot.letters("unreadable-alert")
    assert len(alert) == 1 and "would not give the bot this message" in alert[0].message.get_body(("plain",)).get_content()
    kept = [m for m in _unfiled(bot) if m["kind"] == "processing_error"]
    assert len(kept) == 1 and "UID 2" in kept[0]["subject"], kept
    if processed_folder:
        assert folder_sizes(bot, "INBOX", processed_folder) == [1, 2]  # the refused one stays where staff look

    bot.deliver(make_mail(frm="dan@example.org", subject="Complaint from dan"), MONDAY_10)
    bot.once(now=MONDAY_10)  # the refused message is not filed again, and it stops nothing
    assert len(bot.letters("acknowledgement")) == 3 and len(bot.letters("unreadable-alert")) == 1
    assert len([m for m in _unfiled(bot) if m["kind"] == "processing_error"]) == 1


def test_a_refused_message_with_nothing_else_to_read_waits_instead_of_being_filed(bot: Bot) -> None:
    """When the server gives nothing at all, the fault may be the server's: nothing is filed (the message
    could be read once the server is mended); the pass fails as an outage does, and is tried again."""
    bot.once(now=MONDAY_10)
    for who in ("ann", "eve"):  # every message the server has, refused: as a server failing would
        bot.deliver(make_mail(frm=f"{who}@example.org", subject=f"Complaint from {who}"), MONDAY_10)
        _unreadable_on_the_server(bot, f"Complaint from {who}")
    for _ in range(2):
        with pytest.raises(Exception, match="would not give message UID 1"):
            bot.once(now=MONDAY_10)
    assert _unfiled(bot) == [] and bot.letters("unreadable-alert") == []
    bot.deliver(make_mail(frm="bob@example.org", subject="Complaint from bob"), MONDAY_10)
    bot.once(now=MONDAY_10)  # another message comes: the refusals are the messages', so they are filed now
    assert [m.message["To"] for m in bot.letters("acknowledgement")] == ["bob@example.org"]
    assert len(bot.letters("unreadable-alert")) == 2


def test_a_backlog_with_large_messages_is_fetched_within_the_byte_budget_asking_only_their_sizes(
        bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan of a backlog's FETCHes (mail.imap): every FETCH within the count and the bytes allowed, measured on
    what the server really sent, though only the large messages' sizes were asked for (SEARCH LARGER), and every
    message taken in. The budget is shrunk so that a few 40 KB messages are "large", and a 7 KB one near it."""
    from mailbot.mail import imap

    monkeypatch.setattr(imap, "FETCH_CHUNK", 10)
    monkeypatch.setattr(imap, "FETCH_BYTES", 100_000)
    monkeypatch.setattr(imap, "SMALL", 10_000)
    large_at = {4, 5, 13, 24}
    near = 9  # under SMALL but over half of it: a server may compare a smaller stored size, so it is asked too
    for n in range(26):
        body = f"Complaint number {n}."
        if n in large_at:
            body = "A long account of what happened. " * 1300
        elif n == near:
            body = "A longer account. " * 400
        bot.append(make_mail(frm=f"person{n}@example.org", subject=f"Complaint {n}", body=body))

    fetched: list[list[int]] = []  # the size of each message of each FETCH, as the server sent it
    real_fetch = imap.ImapIntake._fetch

    def fetch(self: imap.ImapIntake, chunk: list[int], uidvalidity: int) -> tuple[list[Arrival], dict[int, str]]:
        arrivals, refused = real_fetch(self, chunk, uidvalidity)
        fetched.append([len(a.raw) for a in arrivals])
        return arrivals, refused

    asked: list[int] = []  # how many sizes the server was asked for
    real_sizes = imap.ImapIntake._sizes

    def sizes(self: imap.ImapIntake, uids: list[int], uidvalidity: int) -> dict[int, int]:
        assert self.client is not None
        client_fetch = self.client.fetch

        def counting(messages: list[int], items: list[str], *args: object, **kwargs: object) -> dict:
            if "RFC822.SIZE" in items:
                asked.append(len(messages))
            return client_fetch(messages, items, *args, **kwargs)

        self.client.fetch = counting  # type: ignore[method-assign]
        try:
            return real_sizes(self, uids, uidvalidity)
        finally:
            del self.client.fetch

    monkeypatch.setattr(imap.ImapIntake, "_fetch", fetch)
    monkeypatch.setattr(imap.ImapIntake, "_sizes", sizes)
    assert bot.once()["fetched"] == 26
    assert sum(asked) == len(large_at) + 1  # the four large ones and the one near SMALL, not all 26
    assert all(len(each) <= 10 and sum(each) <= 100_000 for each in fetched), fetched
    assert sum(len(each) for each in fetched) == 26
    assert any(size > 40_000 for size in sum(fetched, [])) and len(fetched) >= 4  # the budget split the backlog
    assert len(bot.cases_json()) == 26
    assert {m.message["To"] for m in bot.letters("acknowledgement")} == {f"person{n}@example.org" for n in range(26)}
