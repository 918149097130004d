"""The outbox as delivery sees it: which letters are due, and what became of each attempt.

Letters go into the outbox in the intake or command transaction that decides them
(``services.correspondence``); the delivery worker (``services.delivery``) reads them from here a
page at a time and records each answer. A 250 is recorded by ``SentMarks``, from a thread of its own,
so the event loop never waits for the database's writer lock.

Reading the outbox and marking letters sent is SQLAlchemy Core on the light table (``store.light_tables``): a pass
with nothing to send, or with letters that all go, needs neither the ORM nor the table classes. A deferred or failed
letter is recorded with them, since its case's trail gets an event.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection, Engine

from mailbot.domain.batches import sized_batches
from mailbot.store.db import from_db, reading, to_db
from mailbot.store.db import session as new_session
from mailbot.store.light_tables import MESSAGES
from mailbot.store.prebuilt import Prebuilt

log = logging.getLogger(__name__)

# Letters read from the outbox at a time: at most this many, and at most this many bytes of them (a letter
# larger than that comes alone). Staff notifications carry up to 10 MB of files each: two hundred of them were
# one 2 GB read.
OUTBOX_PAGE = 200
OUTBOX_BYTES = 24 * 1024 * 1024

_MARK_SENT = Prebuilt(
    update(MESSAGES).where(MESSAGES.c.id == bindparam("letter_id"))
    .values(delivery="sent", sent_at=bindparam("sent_when"), attempts=bindparam("tries"), last_error=bindparam("note"))
)


@dataclass(frozen=True)
class DueLetter:
    """A letter to send: only the columns sending needs."""

    id: int
    raw: bytes
    mail_from: str
    to_addrs: str
    attempts: int
    message_id: str = ""


class DuePage(list[DueLetter]):
    """A page of due letters; ``more``: another page may follow it, after the id ``last`` (the last letter
    this page looked at, even if it was gone by the time its bytes were read)."""

    more: bool = False
    last: int = 0


def due_page(engine: Engine, now: datetime, *, after: int, automatic: bool,
             conn: Connection | None = None) -> DuePage:
    """The next page of due letters of one kind (automatic or not) with an id above ``after``, oldest first:
    their sizes are read first, and the bytes of only as many as fit in OUTBOX_BYTES."""
    m = MESSAGES.c
    heads = (
        sa_select(m.id, func.length(m.raw), m.from_addr, m.to_addrs, m.attempts, m.message_id)
        .where(m.direction == "out", m.delivery == "pending", m.id > after, m.automatic == automatic,
               m.next_attempt_at.is_(None) | (m.next_attempt_at <= to_db(now)))
        .order_by(m.id)
        .limit(OUTBOX_PAGE)
    )

    def read(conn: Connection) -> DuePage:
        rows = conn.execute(heads).all()
        taken = next(sized_batches(rows, lambda row: row[1], OUTBOX_PAGE, OUTBOX_BYTES), [])
        raws = dict(conn.execute(sa_select(m.id, m.raw).where(m.id.in_([row[0] for row in taken]))).all()) \
            if taken else {}
        page = DuePage(DueLetter(r[0], bytes(raws[r[0]]), r[2], r[3], r[4], r[5]) for r in taken if r[0] in raws)
        page.more = len(rows) == OUTBOX_PAGE or len(taken) < len(rows)
        page.last = taken[-1][0] if taken else after
        return page

    if conn is not None:
        return read(conn)
    with reading(engine) as own:
        return read(own)


def first_pages(engine: Engine, now: datetime) -> tuple[DuePage, DuePage]:
    """The first page of automatic letters and of the others, read in one snapshot (a letter committed
    between two reads could otherwise send a staff copy ahead of its acknowledgement)."""
    with reading(engine) as conn:
        return (due_page(engine, now, after=0, automatic=True, conn=conn),
                due_page(engine, now, after=0, automatic=False, conn=conn))


# How long a claim keeps other deliverers off a letter; a deliverer that dies holding one only delays it.
CLAIM_FOR = timedelta(minutes=10)


def claims(engine: Engine) -> bool:
    """Whether letters are claimed before sending: on PostgreSQL, where two processes could read the same page.
    (SQLite has one writer, and the instance lock keeps a second bot from delivering.)"""
    return engine.url.get_backend_name() == "postgresql"


def claim(engine: Engine, letters: list[DueLetter], now: datetime) -> list[DueLetter]:
    """The letters of a page this deliverer may send: those no other deliverer has claimed, now claimed by
    this one. Rows another transaction is claiming at this moment are skipped, not waited for."""
    if not letters or not claims(engine):
        return letters
    t = MESSAGES
    free = (sa_select(t.c.id)
            .where(t.c.id.in_([letter.id for letter in letters]), t.c.delivery == "pending",
                   or_(t.c.claimed_until.is_(None), t.c.claimed_until < to_db(now)))
            .with_for_update(skip_locked=True))
    with engine.begin() as conn:
        got = set(conn.execute(update(t).where(t.c.id.in_(free)).values(claimed_until=to_db(now + CLAIM_FOR))
                               .returning(t.c.id)).scalars())
    return [letter for letter in letters if letter.id in got]


def release(engine: Engine, letter_ids: set[int]) -> None:
    """Let go of claims on letters still pending at the end of a pass (sent ones are sent)."""
    if not letter_ids or not claims(engine):
        return
    t = MESSAGES
    with engine.begin() as conn:
        conn.execute(update(t).where(t.c.id.in_(sorted(letter_ids)), t.c.delivery == "pending")
                     .values(claimed_until=None))


def next_due_at(engine: Engine) -> datetime | None:
    """When the earliest deferred letter becomes due, for the daemon's sleep."""
    with reading(engine) as conn:
        m = MESSAGES.c
        value = conn.execute(sa_select(func.min(m.next_attempt_at)).where(m.direction == "out",
                                                                          m.delivery == "pending")).scalar()
    return from_db(value)


def record_deferred(engine: Engine, letter_id: int, attempts: int, retry_at: datetime, error: str,
                    now: datetime, repeat_in_trail: bool = True) -> None:
    """A temporary failure: the letter waits until ``retry_at``, and the case's trail says why (with
    ``repeat_in_trail`` False, only when the reason is new for this letter)."""
    from mailbot.store import repo
    from mailbot.store.models import Case, MailMessage

    with new_session(engine) as session:
        row = session.get(MailMessage, letter_id)
        if row is not None:
            said = row.last_error == error[:1000]
            row.attempts = attempts
            row.next_attempt_at = to_db(retry_at)
            row.claimed_until = None  # due again at retry_at, whoever delivers then
            row.last_error = error[:1000]
            if repeat_in_trail or not said:
                case = session.get(Case, row.case_id) if row.case_id else None
                repo.add_event(session, case, now, "letter_deferred", template=row.kind, attempt=attempts,
                               error=error[:300], retry_at=retry_at.isoformat())
            session.commit()


def record_failed(engine: Engine, letter_id: int, attempts: int, error: str, now: datetime) -> None:
    """A permanent failure (or the last temporary one): the letter is given up on, and the case's trail says why."""
    from mailbot.store import repo
    from mailbot.store.models import Case, MailMessage

    with new_session(engine) as session:
        row = session.get(MailMessage, letter_id)
        if row is not None:
            row.delivery = "failed"
            row.attempts = attempts
            row.last_error = error[:1000]
            case = session.get(Case, row.case_id) if row.case_id else None
            repo.add_event(session, case, now, "letter_failed", template=row.kind, to=row.to_addrs, error=error[:300])
            session.commit()


def mark_sent(conn: Connection, marks: list[dict[str, object]]) -> None:
    """Letters the server accepted: each mark has ``letter_id``, ``sent_when``, ``tries`` and ``note``."""
    _MARK_SENT.run_many(conn, marks)


class SentMarks:
    """Commits one delivery pass's "sent" marks from a thread of its own.

    A mark is queued the moment the server answers 250 and committed as soon as the writer's lock is
    free, together with any marks that arrived meanwhile. The event loop never waits for that lock (on
    SQLite, intake holds it for up to ~50 ms at a time), so the other workers keep sending. A failed
    commit is retried, keeping the marks, until it succeeds; ``close`` returns once every mark is
    committed, so the next pass never sees a letter that went out as still pending.

    With ``gather`` (seconds), a batch waits that long after its first mark for more to join it. Where the
    sent journal already holds every 250, a mark a few milliseconds later costs nothing, and each commit saves
    one: on PostgreSQL nothing else makes the marks wait, so they went one or two a transaction, and each
    transaction is four round trips (the pool's ping, BEGIN, the UPDATEs, COMMIT).
    """

    RETRY_SECONDS = (0.05, 0.2, 1.0, 5.0, 30.0)

    def __init__(self, engine: Engine, gather: float = 0.0) -> None:
        self.engine = engine
        self.gather = gather
        self.queue: queue.SimpleQueue[dict[str, object] | None] = queue.SimpleQueue()
        self._closing = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sent-marks", daemon=True)
        self.thread.start()

    def put(self, letter_id: int, sent_when: datetime, tries: int, note: str | None) -> None:
        self.queue.put({"letter_id": letter_id, "sent_when": to_db(sent_when), "tries": tries, "note": note})

    def close(self) -> None:
        """Wait until every mark queued so far is committed."""
        self.queue.put(None)
        self._closing.set()  # a batch still gathering goes now
        self.thread.join()

    def _run(self) -> None:
        closing = False
        while not closing:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            if self.gather:
                # The window is slept through, and what arrived meanwhile is taken after: waiting on the queue
                # instead woke this thread for every mark (4,000 a backlog), each wake-up taking the interpreter
                # lock from intake.
                self._closing.wait(self.gather)
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
                    mark_sent(conn, batch)
                return
            except Exception:  # noqa: BLE001  (the letters went out: the marks must not be dropped)
                delay = self.RETRY_SECONDS[min(failures, len(self.RETRY_SECONDS) - 1)]
                failures += 1
                log.exception("could not mark %d sent letter(s) as sent (attempt %d); retrying in %s s",
                              len(batch), failures, delay)
                time.sleep(delay)
