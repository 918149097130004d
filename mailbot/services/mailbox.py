"""The mailbox port: what a mailbox adapter (``mail.imap``, ``mail.local``) hands the bot, and the bot's side of it.

Kept apart from the ingest pipeline (``services.ingest``) so that reading a mailbox with nothing new in it (an idle
`run --once`, the daemon's quiet minutes) needs neither the pipeline nor the case machinery behind it: the cursor
and the mailbox's health are read and written here, and the ingestor is built (``ingestor``, a callable) only when
there is something to ingest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Iterator, Protocol, Sequence

from sqlalchemy.engine import Engine

from mailbot.services.observe import Observer, Unobserved
from mailbot.store import mailbox_rows

if TYPE_CHECKING:
    from mailbot.domain.commands import OnBehalf
    from mailbot.domain.mail import InboundMail
    from mailbot.services.ingest import Ingestor


@dataclass(frozen=True)
class Arrival:
    raw: bytes
    received_at: datetime  # the server's arrival time (IMAP INTERNALDATE), aware
    uid: int | None = None
    # Set only by the bot's own web form (never read from a message): who the complaint is from and how to
    # reach them, and the form's fields as typed, kept with the message.
    submission: OnBehalf | None = None
    form: dict[str, str] | None = None
    # Set only by the mailbox adapter, never read from a message: the server would not give this message (its
    # words), and ``raw`` is the bot's own record saying so (``domain.mail.unfetchable_record``).
    unfetchable: str | None = None


@dataclass(frozen=True)
class CursorPosition:
    mailbox: str
    uidvalidity: int


# Intake commits at least this often, so the delivery worker, sending while intake runs (it marks each
# letter sent right after the server's 250, and reads the outbox), never waits long for SQLite's writer lock.
INTAKE_TRANSACTION_SECONDS = 0.05
# Parses a batch's messages, in order, lazily (Ingestor.ingest_batch's ``reader``; by default ``parse_each``).
Reader = Callable[[Sequence[bytes]], Iterator["InboundMail"]]


class FirstRunError(Exception):
    """A new database facing a mailbox that already holds mail, with nobody having said what to do."""


class MailboxHooks(Protocol):
    """What a mailbox adapter calls back into: the cursor, the ingest pipeline and the health record."""

    def read_cursor(self, mailbox: str) -> tuple[int, int]: ...

    def ingest(self, arrivals: list[Arrival], position: CursorPosition, skip_to: int | None = None,
               committed: Callable[[list[int]], None] | None = None) -> None:
        """Process arrivals; ``committed`` is called with the UIDs of each transaction once it commits."""

    def first_run(self, mailbox: str, waiting: int) -> bool:
        """Called when the mailbox has never been read and holds mail: True to process it, False to skip
        it (the cursor moves past it); raising stops intake (see FirstRunError)."""

    def fetch_succeeded(self, mailbox: str) -> None: ...

    def fetch_failed(self, mailbox: str, error: str, auth: bool) -> None: ...


class MailboxIntake:
    """The bot's side of the mailbox port: arrivals into the ingestor, the cursor and health into the store.

    ``ingestor`` gives the ingest pipeline, built the first time there is mail to ingest; ``first_run_choice`` is
    MAILBOT_FIRST_RUN ("process-existing", "skip-existing" or None: ask); ``on_commit`` wakes the delivery worker
    after each commit (there are letters to send); ``reader`` parses each fetch's messages
    (``Ingestor.ingest_batch``).
    """

    def __init__(self, ingestor: Callable[[], Ingestor], engine: Engine, clock: Callable[[], datetime],
                 first_run_choice: str | None, database_label: str, on_commit: Callable[[], None],
                 after_failure: Callable[[], int] | None = None, after_success: Callable[[], int] | None = None,
                 reader: Reader | None = None, observer: Observer | None = None) -> None:
        # Called after a failed or a successful read is recorded; each returns how many letters it queued
        # (the administrator's alert, or its "recovered").
        self.after_failure = after_failure
        self.after_success = after_success
        self.ingestor = ingestor
        self.engine = engine
        self.clock = clock
        self.observer: Observer = observer or Unobserved()
        self.first_run_choice = first_run_choice
        self.database_label = database_label
        self.on_commit = on_commit
        self.reader = reader

    def read_cursor(self, mailbox: str) -> tuple[int, int]:
        return mailbox_rows.read_cursor(self.engine, mailbox)

    def ingest(self, arrivals: list[Arrival], position: CursorPosition, skip_to: int | None = None,
               committed: Callable[[list[int]], None] | None = None) -> None:
        if skip_to is not None:
            self.ingestor().skip_existing(position, skip_to)
            return
        self.ingestor().ingest_batch(arrivals, position, max_seconds=INTAKE_TRANSACTION_SECONDS,
                                     on_commit=self.on_commit, on_committed=committed, reader=self.reader)

    def first_run(self, mailbox: str, waiting: int) -> bool:
        """Whether to process mail found in a mailbox this database has never read (False: skip it).

        A new database facing a full mailbox (one deleted or replaced by mistake, say) would otherwise
        acknowledge every complainant again under references starting over at 0001, so it asks.
        """
        if self.first_run_choice is not None:
            return self.first_run_choice == "process-existing"
        if mailbox_rows.has_read_mail(self.engine):
            return True  # an existing database meeting a new folder: Message-IDs keep it from repeating
        raise FirstRunError(
            f"MAILBOT_FIRST_RUN: the mailbox {mailbox} already holds {waiting} message(s) and this database "
            f"({self.database_label}) has never read it; set MAILBOT_FIRST_RUN=process-existing to answer them "
            f"all, or skip-existing to answer only mail that arrives from now on (restore the database from a "
            f"backup instead if it was lost)")

    def fetch_succeeded(self, mailbox: str) -> None:
        mailbox_rows.record_fetch(self.engine, mailbox, self.clock())
        if self.after_success is not None and self.after_success():
            self.on_commit()

    def fetch_failed(self, mailbox: str, error: str, auth: bool) -> None:
        mailbox_rows.record_fetch(self.engine, mailbox, self.clock(), error=error, auth=auth)
        self.observer.fetch_failed(auth)
        if self.after_failure is not None and self.after_failure():
            self.on_commit()
