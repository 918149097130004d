"""Delivery, table-driven, through a fake Transport: what each answer from the mail server does to a letter.

The letters are real (a complaint's acknowledgement and the staff copy, queued by the real services);
only the SMTP server is replaced. tests/integration/test_smtp_transport.py covers the real one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlmodel import col, select

from mailbot.services.delivery import RETRY_DELAYS, Deliverer, DeliveryReport
from mailbot.services.transport import PermanentFailure, TemporaryFailure
from mailbot.store.db import from_db
from mailbot.store.db import session as new_session
from mailbot.store.models import MailMessage
from tests.services.conftest import World, mail

JANE = "jane@example.com"
PRIYA = "priya.shah@1mm.org.uk"


@dataclass
class FakeTransport:
    """Answers each letter by its first recipient: "ok", a note (partly refused), or an exception to raise."""

    answers: dict[str, object] = field(default_factory=dict)
    sent: list[list[str]] = field(default_factory=list)
    closed: int = 0

    async def send(self, raw: bytes, mail_from: str, recipients: list[str]) -> str | None:
        answer = self.answers.get(recipients[0], "ok")
        if isinstance(answer, Exception):
            raise answer
        self.sent.append(recipients)
        return None if answer == "ok" else str(answer)

    async def close(self) -> None:
        self.closed += 1


def deliver(world: World, transport: FakeTransport) -> DeliveryReport:
    deliverer = Deliverer(world.app.engine, lambda: transport, world.app.clock, concurrency=1)
    return asyncio.run(deliverer.deliver_due())


def letter_to(world: World, address: str) -> MailMessage:
    with new_session(world.app.engine) as s:
        row = s.exec(select(MailMessage).where(MailMessage.direction == "out", MailMessage.to_addrs == address)
                     .order_by(col(MailMessage.id))).first()
        assert row is not None
        s.expunge(row)
        return row


@dataclass(frozen=True)
class Answer:
    name: str
    answer: object  # what the server does with the acknowledgement to Jane
    delivery: str  # the letter afterwards
    attempts: int
    retry_after_seconds: float | None  # when a deferred letter is tried again
    error: str  # words of the recorded error ("" for none)
    event: str  # the case's trail
    counts: tuple[int, int, int]  # the pass's report: sent, deferred, failed (the staff copy is always sent)


ANSWERS = [
    Answer("accepted", "ok", "sent", 1, None, "", "", (2, 0, 0)),
    Answer("accepted with some recipients refused", "partly refused: 550 x@example.com", "sent", 1, None,
           "partly refused", "", (2, 0, 0)),
    Answer("a temporary failure waits and tries again", TemporaryFailure("451 try later"), "pending", 1,
           RETRY_DELAYS[0].total_seconds(), "451 try later", "letter_deferred", (1, 1, 0)),
    Answer("a permanent failure is recorded and not retried", PermanentFailure("550 no such user"), "failed", 1,
           None, "550 no such user", "letter_failed", (1, 0, 1)),
    Answer("an unexpected error never loses the letter", RuntimeError("socket went away"), "pending", 1,
           RETRY_DELAYS[0].total_seconds(), "RuntimeError: socket went away", "letter_deferred", (1, 1, 0)),
]


@pytest.mark.parametrize("row", ANSWERS, ids=[a.name for a in ANSWERS])
def test_server_answer(world: World, row: Answer) -> None:
    ref = world.receive(mail(frm=f"Jane Doe <{JANE}>")).ref
    report = deliver(world, FakeTransport({JANE: row.answer}))
    assert (report.sent, report.deferred, report.failed) == row.counts
    letter = letter_to(world, JANE)
    assert (letter.delivery, letter.attempts) == (row.delivery, row.attempts)
    assert row.error in (letter.last_error or "")
    assert bool(letter.last_error) == bool(row.error)
    next_try = from_db(letter.next_attempt_at)
    if row.retry_after_seconds is None:
        assert next_try is None
    else:
        assert next_try is not None and (next_try - world.now).total_seconds() == row.retry_after_seconds
    if row.event:
        assert row.event in world.events(ref)
    assert letter_to(world, PRIYA).delivery == "sent"


def test_acknowledgements_go_before_staff_copies(world: World) -> None:
    for n in range(3):
        world.receive(mail(frm=f"person{n}@example.com"))
    transport = FakeTransport()
    deliver(world, transport)
    assert transport.sent == [["person0@example.com"], ["person1@example.com"], ["person2@example.com"],
                              [PRIYA], [PRIYA], [PRIYA]]
    assert transport.closed == 1


@dataclass
class NamingTransport(FakeTransport):
    """A transport told which letter it sends next (as SmtpTransport is, to put that letter's commands on the wire
    with this one's text): it notes each send that was not the letter named before it."""

    takes_following = True
    named: list[bytes | None] = field(default_factory=list)
    out_of_turn: list[list[str]] = field(default_factory=list)

    async def send(self, raw: bytes, mail_from: str, recipients: list[str],  # type: ignore[override]
                   following: tuple[bytes, str, list[str]] | None = None) -> str | None:
        if self.named and self.named[-1] is not None and self.named[-1] is not raw:
            self.out_of_turn.append(recipients)
        self.named.append(following[0] if following else None)
        await asyncio.sleep(0.001)  # on the wire: the other worker's turn
        return await super().send(raw, mail_from, recipients)


def test_each_worker_names_the_letter_it_sends_next_and_sends_it_next_whatever_became_of_the_one_before(
        world: World) -> None:
    for n in range(4):
        world.receive(mail(frm=f"person{n}@example.com"))
    transports: list[NamingTransport] = []

    def connection() -> NamingTransport:
        transports.append(NamingTransport(answers={"person1@example.com": PermanentFailure("550 no such mailbox"),
                                                   "person2@example.com": TemporaryFailure("451 later")}))
        return transports[-1]

    report = asyncio.run(Deliverer(world.app.engine, connection, world.app.clock, concurrency=2).deliver_due())
    assert (report.sent, report.failed, report.deferred) == (6, 1, 1)
    assert len(transports) == 2 and all(t.closed == 1 for t in transports)
    assert [t.out_of_turn for t in transports] == [[], []]
    assert sum(len(t.named) for t in transports) == 8  # every letter offered once
    assert sum(name is not None for t in transports for name in t.named) >= 4  # and most named the one before
    assert all(t.named[-1] is None for t in transports)  # nothing named that was not then sent
    assert letter_to(world, "person1@example.com").delivery == "failed"
    assert letter_to(world, "person3@example.com").delivery == "sent"


def _two_passes(world: World, kept: bool) -> tuple[list[DeliveryReport], dict[str, list[object]], list[int]]:
    """Two passes of a deliverer with one SMTP connection to a scripted server, a complaint (two letters) taken in
    before each; ``kept``: between ``keep_connections`` and ``let_go``, as a run's and the daemon's passes are. The
    passes' reports, the server's log, and how many QUITs it had read after each pass and at the end."""
    from mailbot.mail.smtp import SmtpTransport
    from tests.servers import ScriptedSmtp

    log = ScriptedSmtp.new_log()

    def quits() -> int:
        return sum(read.count(b"QUIT") for read in log["reads"] if isinstance(read, bytes))

    async def run() -> tuple[list[DeliveryReport], list[int]]:
        server = await asyncio.get_running_loop().create_server(lambda: ScriptedSmtp(True, {}, log), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        deliverer = Deliverer(world.app.engine, lambda: SmtpTransport("127.0.0.1", port, "none"), world.app.clock,
                              concurrency=1)
        if kept:
            deliverer.keep_connections()
        reports, said = [], []
        try:
            for n in range(2):
                await asyncio.to_thread(world.receive, mail(frm=f"person{n}@example.com"))
                reports.append(await deliverer.deliver_due())
                await asyncio.sleep(0.1)  # for a QUIT to arrive
                said.append(quits())
        finally:
            await deliverer.let_go()
            await asyncio.sleep(0.1)
            said.append(quits())
            server.close()
        return reports, said

    reports, said = asyncio.run(run())
    return reports, log, said


def test_a_runs_passes_keep_their_connections_for_the_next_pass_and_close_them_at_its_end(world: World) -> None:
    """A backlog's passes come a quarter of a second apart: each new connection would cost its handshakes again."""
    reports, log, quits = _two_passes(world, kept=True)
    assert [r.sent for r in reports] == [2, 2]
    assert log["connections"] == [1]  # the second pass's letters went on the first pass's connection
    assert quits == [0, 0, 1]  # said at the run's end, not before
    assert len(log["texts"]) == 4


def test_connections_idle_longer_than_a_server_may_keep_them_are_closed_and_the_next_pass_opens_new_ones(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailbot.services import delivery

    monkeypatch.setattr(delivery, "KEEP_IDLE_SECONDS", 0.05)
    reports, log, quits = _two_passes(world, kept=True)
    assert [r.sent for r in reports] == [2, 2]
    assert log["connections"] == [1, 2]
    assert quits == [0, 1, 2]


def test_a_single_pass_closes_its_connections_at_its_end(world: World) -> None:
    """``mailbot deliver`` and any pass outside a run: the connections belong to that pass's event loop."""
    reports, log, quits = _two_passes(world, kept=False)
    assert [r.sent for r in reports] == [2, 2]
    assert log["connections"] == [1, 2]
    assert quits == [1, 2, 2]


def test_large_letters_are_read_from_the_outbox_a_few_at_a_time_and_all_go(world: World,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from mailbot.store import outbox

    for n in range(5):
        world.receive(mail(frm=f"person{n}@example.com"))
    with new_session(world.app.engine) as s:
        sizes = [len(row.raw) for row in s.exec(select(MailMessage).where(MailMessage.direction == "out"))]
    monkeypatch.setattr(outbox, "OUTBOX_BYTES", max(sizes) * 2)  # two letters fit, three do not
    pages: list[int] = []
    reader = outbox.due_page

    def read(*args, **kwargs):  # type: ignore[no-untyped-def]
        page = reader(*args, **kwargs)
        pages.append(len(page))
        return page

    monkeypatch.setattr(outbox, "due_page", read)
    transport = FakeTransport()
    assert deliver(world, transport).sent == 10
    assert transport.sent == [[f"person{n}@example.com"] for n in range(5)] + [[PRIYA]] * 5
    assert pages and max(pages) <= 2 and sum(pages) == 10


def test_a_sent_letter_whose_journal_line_cannot_be_written_is_still_sent_once(
        world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The sent journal is a safeguard for a bot killed mid-pass; a disk that refuses it (full, read-only)
    must not turn a letter the server accepted into a failure to send it again (it stopped the whole pass)."""
    import logging

    from mailbot.store.sent_journal import SentJournal

    (tmp_path / "not-a-folder").write_text("")
    journal = SentJournal(tmp_path / "not-a-folder" / "sent.journal")  # os.open fails: NotADirectoryError
    world.receive(mail(frm=JANE))
    transport = FakeTransport()
    deliverer = Deliverer(world.app.engine, lambda: transport, world.app.clock, concurrency=1, journal=journal)
    with caplog.at_level(logging.ERROR, logger="mailbot.store.sent_journal"):
        report = asyncio.run(deliverer.deliver_due())
    assert report.sent == 2 and report.deferred == 0 and len(transport.sent) == 2
    assert letter_to(world, JANE).delivery == "sent"
    said = [r.getMessage() for r in caplog.records if r.name == "mailbot.store.sent_journal"]
    assert len(said) == 2 and "could not write the sent journal" in said[0] and "2 letters' lines" in said[1]
    assert asyncio.run(deliverer.deliver_due()).sent == 0 and len(transport.sent) == 2  # nothing sent again


def test_a_deferred_letter_waits_for_its_time(world: World) -> None:
    world.receive(mail(frm=JANE))
    deliver(world, FakeTransport({JANE: TemporaryFailure("451")}))
    waiting = FakeTransport()
    world.advance(seconds=RETRY_DELAYS[0].total_seconds() - 1)
    assert deliver(world, waiting).sent == 0 and waiting.sent == []
    world.advance(seconds=1)
    assert deliver(world, waiting).sent == 1 and waiting.sent == [[JANE]]
    assert (letter_to(world, JANE).delivery, letter_to(world, JANE).attempts) == ("sent", 2)


def test_the_last_temporary_failure_gives_up(world: World) -> None:
    world.receive(mail(frm=JANE))
    for delay in RETRY_DELAYS:
        deliver(world, FakeTransport({JANE: TemporaryFailure("451 still busy")}))
        world.advance(seconds=delay.total_seconds())
    report = deliver(world, FakeTransport({JANE: TemporaryFailure("451 still busy")}))
    assert report.failed == 1
    letter = letter_to(world, JANE)
    assert letter.delivery == "failed" and letter.attempts == len(RETRY_DELAYS) + 1
    assert (letter.last_error or "").startswith(f"gave up after {len(RETRY_DELAYS) + 1} attempts")


def test_nothing_due_sends_nothing(world: World) -> None:
    transport = FakeTransport()
    assert deliver(world, transport) == DeliveryReport()
    assert transport.sent == [] and transport.closed == 0


@dataclass
class RefusingServer(FakeTransport):
    """An SMTP server that refuses the bot's sign-in (the password changed, the token was revoked)."""

    refuse: bool = True
    tried: int = 0
    error: str = "sign-in refused: 535 5.7.3 Authentication unsuccessful"

    async def send(self, raw: bytes, mail_from: str, recipients: list[str]) -> str | None:
        self.tried += 1
        if self.refuse:
            raise TemporaryFailure(self.error)
        return await super().send(raw, mail_from, recipients)


@pytest.mark.parametrize("error", [
    "sign-in refused: 535 5.7.3 Authentication unsuccessful",
    "sender refused: 550 5.7.60 SMTP; Client does not have permissions to send as this sender",
], ids=["a refused sign-in", "the bot's address refused"])
def test_a_refused_sign_in_pauses_delivery_and_never_fails_a_letter(world: World, error: str) -> None:
    """One refusal ends the pass (every other letter would be refused too, and an account that keeps failing may
    be locked); the next try waits MAILBOT_SIGN_IN_RETRY, doubling to at most 30 minutes; the letters keep their
    attempts and their case's trail says so once; once sign-in works they all go. The same when the server will
    not take letters from the bot's address: the setting is at fault, not the letter."""
    for n in range(5):
        world.receive(mail(frm=f"person{n}@example.com"))
    server = RefusingServer(error=error)
    deliverer = Deliverer(world.app.engine, lambda: server, world.app.clock, concurrency=1)

    def attempt() -> DeliveryReport:
        return asyncio.run(deliverer.deliver_due())

    assert (attempt().deferred, server.tried) == (1, 1)  # the first refusal ends the pass
    assert (attempt().deferred, server.tried) == (0, 1)  # and nothing is tried again at once
    waits = []
    for _ in range(8):
        before = server.tried
        seconds = 0
        while server.tried == before:
            world.advance(seconds=30)
            seconds += 30
            attempt()
        waits.append(seconds)
    assert waits == [60, 120, 240, 480, 960, 1800, 1800, 1800]
    first = letter_to(world, "person0@example.com")
    assert (first.delivery, first.attempts) == ("pending", 0)
    ref = "1MM-2026-0001"
    assert world.events(ref).count("letter_deferred") == 1
    server.refuse = False
    world.advance(seconds=1800)
    report = attempt()
    assert report.sent == 10 and report.failed == 0
    assert attempt().sent == 0 and server.tried == 9 + 10  # the pause is over and nothing is left
