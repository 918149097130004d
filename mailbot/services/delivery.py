"""The outbox worker: sends due letters, retries temporary failures, records permanent ones.

Each letter is marked sent straight after the server's 250 (synced to the sent journal first when there
is one, then committed by ``store.outbox.SentMarks``), so the only window in which a crash can send a
letter twice is between that reply and that record. The outbox's reads and writes live in ``store.outbox``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Awaitable, Callable, Iterator

from sqlalchemy.engine import Engine

from mailbot.domain.health import EVERY_LETTER_HELD
from mailbot.domain.mail import wire_address
from mailbot.services.observe import Observer, Unobserved
from mailbot.services.transport import PermanentFailure, TemporaryFailure, Transport
from mailbot.store import outbox
from mailbot.store.db import to_db
from mailbot.store.outbox import DueLetter, SentMarks
from mailbot.store.sent_journal import SentJournal

# Another way for a pass to send than the deliverer's own: each worker's transport, and how many workers.
Route = tuple[Callable[[], Transport], int]

log = logging.getLogger(__name__)

SIGN_IN_PAUSE_MAX = timedelta(minutes=30)
# With a sent journal, each 250 is on disk before its mark: the marks thread gathers this long per commit.
MARKS_GATHER_SECONDS = 0.02
# A pass's connections are kept for the next pass if it begins within this long: a backlog's passes come a quarter
# of a second apart, and each new connection costs its handshakes (TCP, TLS, EHLO, a sign-in: ~1 ms of CPU on
# loopback, several round trips to a distant server). Well below the time a server lets a client idle (Postfix:
# 300 s, 10 s under stress), so the next letter does not find a connection the server has given up on.
KEEP_IDLE_SECONDS = 5.0


class _EveryLetterHeld(Exception):
    """Ends a delivery pass: every other letter would be refused the same way."""


# Waits between attempts after a temporary failure; after the last, the letter is given up on.
RETRY_DELAYS = (
    timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=30),
    timedelta(hours=1), timedelta(hours=2), timedelta(hours=4), timedelta(hours=8), timedelta(hours=16),
    timedelta(hours=24),
)


@dataclass
class DeliveryReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DeliveryReport) -> None:
        """Count another pass's letters in with these."""
        self.sent += other.sent
        self.deferred += other.deferred
        self.failed += other.failed
        self.errors += other.errors


@dataclass(frozen=True)
class _Job:
    id: int
    raw: bytes
    mail_from: str
    recipients: list[str]
    attempts: int
    message_id: str = ""

    @classmethod
    def of(cls, letter: DueLetter) -> _Job:
        return cls(letter.id, letter.raw, letter.mail_from, [wire_address(a) for a in letter.to_addrs.split(",")],
                   letter.attempts, letter.message_id)


class Deliverer:
    def __init__(self, engine: Engine, transport_factory: Callable[[], Transport], clock: Callable[[], datetime],
                 concurrency: int = 8, journal: SentJournal | None = None, observer: Observer | None = None,
                 sign_in_pause: timedelta = timedelta(seconds=60)) -> None:
        self.engine = engine
        self.observer: Observer = observer or Unobserved()
        # The letters this pass claimed (PostgreSQL), let go of at its end.
        self._claimed: set[int] = set()
        # After the SMTP server refused sign-in or the bot's address: no pass before this (see _refused).
        self.sign_in_pause = sign_in_pause
        self._pause = sign_in_pause
        self._paused_until: datetime | None = None
        self.transport_factory = transport_factory
        self.clock = clock
        self.concurrency = concurrency
        # Each 250 is synced here first (store.sent_journal), so a crash never loses the fact that a letter went.
        self.journal = journal
        # Between ``keep_connections`` and ``let_go``: the deliverer's own transports the last pass left open, and
        # when it ended.
        self._keeping = False
        self._idle: list[Transport] = []
        self._idle_since = 0.0

    async def deliver_due(self, route: Callable[[], Awaitable[Route | None]] | None = None) -> DeliveryReport:
        """Send every letter that is due now; returns what happened.

        One set of workers (each with its own kept-open connection) serves the whole pass, fed from the
        outbox a page at a time, so a large backlog neither reconnects every page nor waits for a page's
        slowest letter before starting the next. Automatic replies (the acknowledgements the procedure
        promises within minutes) go first, then everything else, each in the order it was queued: after
        downtime, complainants hear from us before staff get their copies.

        ``route``, awaited once there is a letter to send, may give another transport factory and number of
        workers for this pass than the deliverer's own: the runtime sends through its SMTP child process this
        way, and starts that child only when a pass first has letters for it.
        """
        report = DeliveryReport()
        if self._paused_until is not None and self.clock() < self._paused_until:
            return report  # the SMTP server refused sign-in a moment ago: not yet
        if self.journal is not None:
            # Marks a stopped bot synced but never committed: those letters are sent, not due.
            await asyncio.to_thread(self.journal.fold, self.engine)
            self.journal.close()
        # Outbox reads happen in a thread, so the loop never waits on the database.
        firsts = await asyncio.to_thread(self._first_pages)
        waiting = sum(len(page) for page in firsts)
        if not waiting:
            return report
        factory, concurrency = self.transport_factory, self.concurrency
        if route is not None and (chosen := await route()) is not None:
            factory, concurrency = chosen
        if self._idle and (factory is not self.transport_factory
                           or time.monotonic() - self._idle_since > KEEP_IDLE_SECONDS):
            await self._close_idle()
        if self._keeping and factory is self.transport_factory:
            factory = self._kept_or_new
        workers = min(concurrency, waiting)
        marks = SentMarks(self.engine, gather=MARKS_GATHER_SECONDS if self.journal is not None else 0.0)
        try:
            report = await self._deliver(self._pages(firsts), workers, factory, marks, report)
            if report.sent:
                self._paused_until = None  # signed in again
            return report
        except _EveryLetterHeld:
            return report
        finally:
            await asyncio.to_thread(marks.close)
            if self.journal is not None:
                self.journal.close()
            # After the sent marks are committed: what is still pending can be claimed by the next pass.
            claimed, self._claimed = self._claimed, set()
            await asyncio.to_thread(outbox.release, self.engine, claimed)

    def keep_connections(self) -> None:
        """From now until ``let_go`` (a run's or the daemon's passes, on one event loop), a pass leaves its own
        connections open for the next if that begins within KEEP_IDLE_SECONDS. Otherwise each pass closes its
        connections, as a single pass must: they belong to its event loop."""
        self._keeping = True

    async def let_go(self) -> None:
        """Close the connections kept from the last pass, and keep none from now on."""
        self._keeping = False
        await self._close_idle()

    def _kept_or_new(self) -> Transport:
        """A connection the last pass left open, or a new one."""
        return self._idle.pop() if self._idle else self.transport_factory()

    def _keep(self, transport: Transport) -> None:
        """A worker's transport, at the end of a pass it finished: kept for the next pass."""
        self._idle.append(transport)
        self._idle_since = time.monotonic()

    async def _close_idle(self) -> None:
        """All at once: each says QUIT and waits for the answer, a round trip to a distant server, and a pass that
        begins by closing stale ones would otherwise hold its first letter back that many round trips."""
        idle, self._idle = self._idle, []
        for outcome in await asyncio.gather(*(transport.close() for transport in idle), return_exceptions=True):
            if isinstance(outcome, Exception):  # a connection that will not close politely is dropped all the same
                log.debug("could not close an idle connection: %s", outcome)

    def _pages(self, firsts: list[outbox.DuePage]) -> Iterator[list[_Job]]:
        """The outbox page by page: automatic letters, then the others, each by id (read as they are needed).
        Each page's letters are claimed as it is taken (PostgreSQL); a page another deliverer had all of is
        passed over, and the next starts after the page, not after what this one claimed."""
        for automatic, page in zip((True, False), firsts):
            while page:
                jobs = self._claimed_jobs(page)
                if jobs:
                    yield jobs
                if not page.more:
                    break
                page = outbox.due_page(self.engine, self.clock(), after=page.last, automatic=automatic)

    async def _deliver(self, pages: Iterator[list[_Job]], workers_wanted: int,
                       transport_factory: Callable[[], Transport], marks: SentMarks,
                       report: DeliveryReport) -> DeliveryReport:
        queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        want_more = asyncio.Event()
        keep = transport_factory == self._kept_or_new  # the deliverer's own connections, kept for the next pass
        workers = [asyncio.create_task(self._worker(queue, transport_factory(), marks, report, want_more,
                                                    refill_below=workers_wanted, keep=keep))
                   for _ in range(workers_wanted)]
        producer = asyncio.create_task(self._feed(queue, pages, len(workers), want_more))
        tasks = [producer, *workers]
        try:
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
        if pending:
            # Something failed: queue nothing more, let the other workers finish the letter in hand, then stop.
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            while not queue.empty():
                queue.get_nowait()
            for _ in workers:
                queue.put_nowait(None)
            await asyncio.gather(*workers, return_exceptions=True)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return report

    async def _feed(self, queue: asyncio.Queue[_Job | None], pages: Iterator[list[_Job]], workers: int,
                    want_more: asyncio.Event) -> None:
        """Queue a page; when the workers are nearly through it, read the next."""
        while page := await asyncio.to_thread(next, pages, None):
            for job in page:
                queue.put_nowait(job)
            want_more.clear()
            await want_more.wait()
        for _ in range(workers):
            queue.put_nowait(None)

    def next_due_at(self) -> datetime | None:
        """When the earliest deferred letter becomes due, for the daemon's sleep."""
        return outbox.next_due_at(self.engine)

    def _first_pages(self) -> list[outbox.DuePage]:
        return list(outbox.first_pages(self.engine, self.clock()))

    def _claimed_jobs(self, page: list[DueLetter]) -> list[_Job]:
        """The page's letters this deliverer claimed (all of them on SQLite)."""
        mine = outbox.claim(self.engine, page, self.clock())
        self._claimed.update(letter.id for letter in mine)
        return [_Job.of(letter) for letter in mine]

    async def _worker(self, queue: asyncio.Queue[_Job | None], transport: Transport, marks: SentMarks,
                      report: DeliveryReport, want_more: asyncio.Event, refill_below: int, keep: bool = False) -> None:
        journalled_by_transport = getattr(transport, "journals_sent", False)
        # A transport that can put the next letter's commands on the wire with this letter's text is told which
        # letter this worker sends next (one round trip a letter instead of two: mail.smtp_pipeline). That letter
        # is then this worker's, taken from the queue now, and it is the next one it sends.
        takes_following = getattr(transport, "takes_following", False)
        taken: list[_Job | None] = []  # the letter taken ahead (or the end of the queue), sent next
        finished = False  # the pass ended with every letter this worker took answered
        try:
            while (job := taken.pop() if taken else await queue.get()) is not None:
                if queue.qsize() <= refill_below:
                    want_more.set()
                following = None
                if takes_following and not queue.empty():
                    taken.append(queue.get_nowait())
                    following = taken[0]
                began = time.monotonic()
                try:
                    if journalled_by_transport:
                        note = await transport.send(job.raw, job.mail_from, job.recipients,  # type: ignore[call-arg]
                                                    mark=(job.id, job.attempts + 1))
                    elif following is not None:
                        note = await transport.send(job.raw, job.mail_from, job.recipients,  # type: ignore[call-arg]
                                                    following=(following.raw, following.mail_from,
                                                               following.recipients))
                    else:
                        note = await transport.send(job.raw, job.mail_from, job.recipients)
                except TemporaryFailure as exc:
                    self._deferred(job, str(exc), report)
                except PermanentFailure as exc:
                    self._failed(job, str(exc), report)
                except Exception as exc:  # noqa: BLE001  (an unknown error must never lose a letter)
                    log.exception("unexpected error sending letter %s", job.id)
                    self._deferred(job, f"{type(exc).__name__}: {exc}", report)
                else:
                    sent_when = to_db(self.clock())
                    if self.journal is not None and not journalled_by_transport:
                        self.journal.record(job.id, sent_when, job.attempts + 1, note)
                    # Committed by the marks thread, at once or with the next batch (see SentMarks).
                    marks.put(job.id, sent_when, job.attempts + 1, note)
                    report.sent += 1
                    self.observer.letter("sent", time.monotonic() - began)
                    log.info("letter %s <%s> sent to %d recipient(s)%s", job.id, job.message_id, len(job.recipients),
                             f" ({note})" if note else "", extra={"event": "letter", "letter_id": job.id,
                                                                  "message_id": job.message_id, "state": "sent"})
            finished = True
        finally:
            if finished and keep:
                self._keep(transport)
            else:
                await transport.close()

    def _refused(self, job: _Job, error: str, report: DeliveryReport) -> None:
        """The SMTP server refused the bot's sign-in, or letters from the bot's own address: the bot's problem
        (its setting, its account), not the letter's. The letter waits without losing an attempt (it never fails
        for good over a stale password or token, or a quota reached), the case's trail says so once, and delivery
        pauses (MAILBOT_SIGN_IN_RETRY, doubling while it lasts, at most 30 minutes) so the server is not asked
        again and again, which can lock the account."""
        now = self.clock()
        if self._paused_until is None or now >= self._paused_until:  # not a second worker refused in one pass
            self._pause = min(self._pause * 2, SIGN_IN_PAUSE_MAX) if self._paused_until else self.sign_in_pause
            self._paused_until = now + self._pause
        outbox.record_deferred(self.engine, job.id, job.attempts, self._paused_until, error, now,
                               repeat_in_trail=False)
        log.error("letter %s <%s> waits: the SMTP server will not take the bot's letters (%s); trying again in %d s",
                  job.id, job.message_id, error[:300], self._pause.total_seconds(),
                  extra={"event": "letter", "letter_id": job.id, "message_id": job.message_id, "state": "deferred",
                         "error": error[:300]})
        report.deferred += 1
        report.errors.append(error)
        self.observer.letter("deferred")
        raise _EveryLetterHeld(error)

    def _deferred(self, job: _Job, error: str, report: DeliveryReport) -> None:
        if error.startswith(EVERY_LETTER_HELD):
            self._refused(job, error, report)
        now = self.clock()
        attempts = job.attempts + 1
        if attempts > len(RETRY_DELAYS):
            self._failed(job, f"gave up after {attempts} attempts: {error}", report)
            return
        outbox.record_deferred(self.engine, job.id, attempts, now + RETRY_DELAYS[attempts - 1], error, now)
        log.warning("letter %s <%s> deferred (attempt %d): %s", job.id, job.message_id, attempts, error[:300],
                    extra={"event": "letter", "letter_id": job.id, "message_id": job.message_id, "state": "deferred",
                           "attempt": attempts, "error": error[:300]})
        report.deferred += 1
        report.errors.append(error)
        self.observer.letter("deferred")

    def _failed(self, job: _Job, error: str, report: DeliveryReport) -> None:
        outbox.record_failed(self.engine, job.id, job.attempts + 1, error, self.clock())
        log.warning("letter %s <%s> failed for good: %s", job.id, job.message_id, error[:300],
                    extra={"event": "letter", "letter_id": job.id, "message_id": job.message_id, "state": "failed",
                           "error": error[:300]})
        report.failed += 1
        report.errors.append(error)
        self.observer.letter("failed")
