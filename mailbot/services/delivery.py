"""The outbox worker: sends due letters, retries temporary failures, records permanent ones.

Each letter is marked sent straight after the server's 250: the mark goes to a thread of its own that
commits it (with any others that arrived meanwhile) as soon as the database's writer lock is free, so
the only window in which a crash can send a letter twice is between that reply and that commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterator

from sqlalchemy import bindparam, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col, func

from mailbot.domain.mail import wire_address
from mailbot.services.transport import PermanentFailure, TemporaryFailure, Transport
from mailbot.store import repo
from mailbot.store.db import from_db, reading, to_db
from mailbot.store.db import session as new_session
from mailbot.store.models import MESSAGE_TABLE, Case, MailMessage
from mailbot.store.prebuilt import Prebuilt
from mailbot.store.sent_journal import SentJournal

log = logging.getLogger(__name__)

# Letters read from the outbox at a time.
OUTBOX_PAGE = 200

# Waits between attempts after a temporary failure; after the last, the letter is given up on.
RETRY_DELAYS = (
    timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=30),
    timedelta(hours=1), timedelta(hours=2), timedelta(hours=4), timedelta(hours=8), timedelta(hours=16),
    timedelta(hours=24),
)


# Built once: constructing an UPDATE and its cache key cost more than running it, once per letter.
_MARK_SENT = Prebuilt(
    update(MESSAGE_TABLE).where(MESSAGE_TABLE.c.id == bindparam("letter_id"))
    .values(delivery="sent", sent_at=bindparam("sent_when"), attempts=bindparam("tries"), last_error=bindparam("note"))
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


class Deliverer:
    def __init__(self, engine: Engine, transport_factory: Callable[[], Transport], clock: Callable[[], datetime],
                 concurrency: int = 8, journal: SentJournal | None = None) -> None:
        self.engine = engine
        self.transport_factory = transport_factory
        self.clock = clock
        self.concurrency = concurrency
        # Each 250 is synced here first (store.sent_journal), so a crash never loses the fact that a letter went.
        self.journal = journal

    async def deliver_due(self, transport_factory: Callable[[], Transport] | None = None,
                          concurrency: int | None = None) -> DeliveryReport:
        """Send every letter that is due now; returns what happened.

        One set of workers (each with its own kept-open connection) serves the whole pass, fed from the
        outbox a page at a time, so a large backlog neither reconnects every page nor waits for a page's
        slowest letter before starting the next. Automatic replies (the acknowledgements the procedure
        promises within minutes) go first, then everything else, each in the order it was queued: after
        downtime, complainants hear from us before staff get their copies.

        ``transport_factory`` and ``concurrency`` replace the deliverer's own for this pass (`run --once`
        sends through its SMTP child process this way).
        """
        report = DeliveryReport()
        if self.journal is not None:
            # Marks a stopped bot synced but never committed: those letters are sent, not due.
            await asyncio.to_thread(self.journal.fold, self.engine)
            self.journal.close()
        # Outbox reads happen in a thread, so the loop never waits on the database.
        firsts = await asyncio.to_thread(self._first_pages)
        waiting = sum(len(page) for page in firsts)
        if not waiting:
            return report
        workers = min(concurrency or self.concurrency, waiting)
        marks = _SentMarks(self.engine)
        try:
            return await self._deliver(self._pages(firsts), workers, transport_factory or self.transport_factory,
                                       marks, report)
        finally:
            await asyncio.to_thread(marks.close)
            if self.journal is not None:
                self.journal.close()

    def _pages(self, firsts: list[list[_Job]]) -> Iterator[list[_Job]]:
        """The outbox page by page: automatic letters, then the others, each by id (read as they are needed)."""
        for automatic, jobs in zip((True, False), firsts):
            while jobs:
                yield jobs
                if len(jobs) < OUTBOX_PAGE:
                    break
                jobs = self._due_jobs(after=jobs[-1].id, automatic=automatic)

    async def _deliver(self, pages: Iterator[list[_Job]], workers_wanted: int,
                       transport_factory: Callable[[], Transport], marks: _SentMarks,
                       report: DeliveryReport) -> DeliveryReport:
        queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        want_more = asyncio.Event()
        workers = [asyncio.create_task(self._worker(queue, transport_factory(), marks, report, want_more,
                                                    refill_below=workers_wanted))
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
        with reading(self.engine) as conn:
            value = conn.execute(sa_select(func.min(col(MailMessage.next_attempt_at))).where(
                MailMessage.direction == "out", MailMessage.delivery == "pending")).scalar()
        return from_db(value)

    def _first_pages(self) -> list[list[_Job]]:
        """The first page of automatic letters and of the others, read together (one snapshot: a letter
        committed between two reads could otherwise send a staff copy ahead of its acknowledgement)."""
        with reading(self.engine) as conn:
            return [self._due_jobs(after=0, automatic=True, conn=conn),
                    self._due_jobs(after=0, automatic=False, conn=conn)]

    def _due_jobs(self, after: int, automatic: bool, conn: Connection | None = None) -> list[_Job]:
        """The next page of due letters of one kind with an id above ``after``: only the columns sending needs."""
        # Only the columns sending needs, not whole ORM rows.
        now = to_db(self.clock())
        query = (
            sa_select(MailMessage.id, MailMessage.raw, MailMessage.from_addr, MailMessage.to_addrs,
                      MailMessage.attempts)
            .where(MailMessage.direction == "out", MailMessage.delivery == "pending", col(MailMessage.id) > after,
                   MailMessage.automatic == automatic,
                   (col(MailMessage.next_attempt_at).is_(None)) | (col(MailMessage.next_attempt_at) <= now))
            .order_by(col(MailMessage.id))
            .limit(OUTBOX_PAGE)
        )
        if conn is None:
            with reading(self.engine) as own:
                rows = own.execute(query).all()
        else:
            rows = conn.execute(query).all()
        return [_Job(r.id, r.raw, r.from_addr, [wire_address(a) for a in r.to_addrs.split(",")], r.attempts)
                for r in rows if r.id]

    async def _worker(self, queue: asyncio.Queue[_Job | None], transport: Transport, marks: _SentMarks,
                      report: DeliveryReport, want_more: asyncio.Event, refill_below: int) -> None:
        try:
            while (job := await queue.get()) is not None:
                if queue.qsize() <= refill_below:
                    want_more.set()
                journalled_by_transport = getattr(transport, "journals_sent", False)
                try:
                    if journalled_by_transport:
                        note = await transport.send(job.raw, job.mail_from, job.recipients,  # type: ignore[call-arg]
                                                    mark=(job.id, job.attempts + 1))
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
                    # Committed by the marks thread, at once or with the next batch (see _SentMarks).
                    marks.put({"letter_id": job.id, "sent_when": sent_when, "tries": job.attempts + 1,
                               "note": note})
                    report.sent += 1
        finally:
            await transport.close()

    def _deferred(self, job: _Job, error: str, report: DeliveryReport) -> None:
        now = self.clock()
        attempts = job.attempts + 1
        if attempts > len(RETRY_DELAYS):
            self._failed(job, f"gave up after {attempts} attempts: {error}", report)
            return
        with new_session(self.engine) as session:
            row = session.get(MailMessage, job.id)
            if row is not None:
                row.attempts = attempts
                row.next_attempt_at = to_db(now + RETRY_DELAYS[attempts - 1])
                row.last_error = error[:1000]
                case = session.get(Case, row.case_id) if row.case_id else None
                repo.add_event(session, case, now, "letter_deferred", template=row.kind, attempt=attempts,
                               error=error[:300], retry_at=(now + RETRY_DELAYS[attempts - 1]).isoformat())
                session.commit()
        report.deferred += 1
        report.errors.append(error)

    def _failed(self, job: _Job, error: str, report: DeliveryReport) -> None:
        now = self.clock()
        with new_session(self.engine) as session:
            row = session.get(MailMessage, job.id)
            if row is not None:
                row.delivery = "failed"
                row.attempts = job.attempts + 1
                row.last_error = error[:1000]
                case = session.get(Case, row.case_id) if row.case_id else None
                repo.add_event(session, case, now, "letter_failed", template=row.kind, to=row.to_addrs,
                               error=error[:300])
                session.commit()
        report.failed += 1
        report.errors.append(error)


class _SentMarks:
    """Commits one pass's "sent" marks from a thread of its own.

    A mark is queued the moment the server answers 250 and committed as soon as the writer's lock is
    free, together with any marks that arrived meanwhile. The event loop never waits for that lock (on
    SQLite, intake holds it for up to ~50 ms at a time), so the other workers keep sending. A failed
    commit is retried, keeping the marks, until it succeeds; ``close`` returns once every mark is
    committed, so the next pass never sees a letter that went out as still pending.
    """

    RETRY_SECONDS = (0.05, 0.2, 1.0, 5.0, 30.0)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.queue: queue.SimpleQueue[dict[str, object] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="sent-marks", daemon=True)
        self.thread.start()

    def put(self, params: dict[str, object]) -> None:
        self.queue.put(params)

    def close(self) -> None:
        """Wait until every mark queued so far is committed."""
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        closing = False
        while not closing:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[dict[str, object]]) -> None:
        failures = 0
        while True:
            try:
                with self.engine.begin() as conn:
                    _MARK_SENT.run_many(conn, batch)
                return
            except Exception:  # noqa: BLE001  (the letters went out: the marks must not be dropped)
                delay = self.RETRY_SECONDS[min(failures, len(self.RETRY_SECONDS) - 1)]
                failures += 1
                log.exception("could not mark %d sent letter(s) as sent (attempt %d); retrying in %s s",
                              len(batch), failures, delay)
                time.sleep(delay)
