"""The composition root: builds the store, the domain's data, the adapters and the jobs, and runs them.

Nothing here decides anything about complaints; it only wires the pieces together and owns the
threads and the event loop of the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from mailbot.domain.chain import RouteConfig
from mailbot.domain.directory import DirectoryError, DirectoryFiles
from mailbot.domain.procedures import (
    ProcedureFileError,
    load_procedures,
    load_signposts,
)
from mailbot.domain.workdays import WorkingCalendar, parse_closures
from mailbot.files import make_private_dir
from mailbot.letters import MAILBOT_ID_TAG, LetterRenderer
from mailbot.mail.clamd import ClamdScanner
from mailbot.mail.imap import FirstRunError, ImapConfig, ImapIntake, MailboxHooks
from mailbot.mail.local import (
    LocalListener,
    arrival_from_file,
    mark_processed,
    pending_files,
)
from mailbot.mail.maildir import MaildirTransport
from mailbot.mail.smtp import SmtpTransport
from mailbot.mail.smtp_process import SmtpProcess, WorkerUnavailable
from mailbot.services.casework import Casework, CaseworkConfig
from mailbot.services.compose import Sender
from mailbot.services.delivery import Deliverer, DeliveryReport
from mailbot.services.digest import Digest
from mailbot.services.ingest import Arrival, CursorPosition, Ingestor, read_cursor
from mailbot.services.jobs import Jobs
from mailbot.services.staffdesk import StaffDesk
from mailbot.services.transport import Transport
from mailbot.settings import ConfigError, Settings
from mailbot.store import repo
from mailbot.store.db import open_database, session, to_db
from mailbot.store.sent_journal import SentJournal

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_MAILBOX = "local/maildir"

# Intake commits at least this often, so the delivery worker, sending while intake runs (it marks each
# letter sent right after the server's 250, and reads the outbox), never waits long for SQLite's writer lock.
INTAKE_TRANSACTION_SECONDS = 0.05


class App(MailboxHooks):
    def __init__(self, settings: Settings, now: datetime | None = None) -> None:
        self.settings = settings
        self.fixed_now = now
        self.engine = open_database(settings.database_url_effective)
        self.renderer = LetterRenderer(settings.templates_dir)
        try:
            closures = parse_closures(settings.closures)
        except ValueError as exc:
            raise ConfigError(f"MAILBOT_CLOSURES: {exc}") from None
        self.calendar = WorkingCalendar(settings.timezone, closures, settings.office_opens, settings.office_closes)
        try:
            self.procedures = load_procedures(self._data_file("procedures.toml"))
            self.signposts = load_signposts(self._data_file("procedures.toml"))
        except ProcedureFileError as exc:
            raise ConfigError(str(exc)) from None
        self.directory = DirectoryFiles(settings.data_dir)
        try:
            self.directory.load()
        except DirectoryError as exc:
            raise ConfigError(str(exc)) from None
        make_private_dir(settings.data_dir)
        self.secret = settings.secret_bytes()
        own = frozenset({settings.address})
        self.sender = Sender(settings.org_name, settings.address, settings.domain, settings.auto_reply_cap)
        self.route_config = RouteConfig(
            address=settings.address, own_addresses=own, message_id_suffix=f"{MAILBOT_ID_TAG}{settings.domain}",
            secret=self.secret, trusted_authserv_id=settings.trusted_authserv_id,
        )
        team_cc = tuple(a.strip().lower() for a in (settings.complaints_team_cc or "").split(",") if a.strip())
        self.casework = Casework(CaseworkConfig(self.sender, own, settings.timezone, self.secret, team_cc,
                                                settings.form_sender_set, settings.notification_attachments_bytes),
                                 self.renderer, self.calendar, self.procedures, self.directory, self.signposts,
                                 scan=ClamdScanner(settings.clamd_socket) if settings.clamd_socket else None)
        self.ingestor = Ingestor(self.engine, self.route_config, self.casework, StaffDesk(self.casework),
                                 self.directory, self.clock)
        self.journal_path = settings.data_dir / "sent.journal"
        self.deliverer = Deliverer(self.engine, self.transport_factory(), self.clock,
                                   journal=SentJournal(self.journal_path))
        self.digest = Digest(self.engine, self.casework, settings.digest_time,
                             persistent_threshold=settings.persistent_threshold)
        self.jobs = Jobs(self.engine, self.casework, digest=self.digest)
        # Wakes the delivery worker when intake has committed letters (set while one runs).
        self._poke: Callable[[], None] = lambda: None
        self._stop_daemon: Callable[[], None] = lambda: None

    # ---- wiring helpers ----------------------------------------------------------------------

    def clock(self) -> datetime:
        return self.fixed_now or datetime.now(timezone.utc)

    def _data_file(self, name: str) -> Path:
        """A file from the data dir, falling back to the copy shipped with the code."""
        path = self.settings.data_dir / name
        return path if path.exists() else REPO_ROOT / "data" / name

    def transport_factory(self) -> Callable[[], Transport]:
        s = self.settings
        if s.smtp_host:
            host, port, security = s.smtp_host, s.smtp_port_effective, s.smtp_security
            return lambda: SmtpTransport(host, port, security, s.smtp_user, s.smtp_password)
        sent = s.data_dir / "sent"
        return lambda: MaildirTransport(sent)

    def imap_config(self) -> ImapConfig:
        s = self.settings
        assert s.imap_host and s.imap_user and s.imap_password
        return ImapConfig(host=s.imap_host, port=s.imap_port_effective, user=s.imap_user, password=s.imap_password,
                          security=s.imap_security, folder=s.imap_folder, processed_folder=s.imap_processed_folder,
                          poll_interval=s.imap_poll_interval, idle_renew=s.imap_idle_renew)

    # ---- MailboxHooks ------------------------------------------------------------------------

    def read_cursor(self, mailbox: str) -> tuple[int, int]:
        return read_cursor(self.engine, mailbox)

    def ingest(self, arrivals: list[Arrival], position: CursorPosition, skip_to: int | None = None,
               committed: Callable[[list[int]], None] | None = None) -> None:
        if skip_to is not None:
            self.ingestor.skip_existing(position, skip_to)
            return
        self.ingestor.ingest_batch(arrivals, position, max_seconds=INTAKE_TRANSACTION_SECONDS,
                                   on_commit=self._poke, on_committed=committed)

    def first_run(self, mailbox: str, waiting: int) -> bool:
        """Whether to process mail found in a mailbox this database has never read (False: skip it).

        A new database facing a full mailbox (one deleted or replaced by mistake, say) would otherwise
        acknowledge every complainant again under references starting over at 0001, so it asks.
        """
        choice = self.settings.first_run
        if choice is not None:
            return choice == "process-existing"
        if repo.has_read_mail(self.engine):
            return True  # an existing database meeting a new folder: Message-IDs keep it from repeating
        raise FirstRunError(
            f"MAILBOT_FIRST_RUN: the mailbox {mailbox} already holds {waiting} message(s) and this database "
            f"({self.settings.database_url_effective.split('@')[-1]}) has never read it; set "
            f"MAILBOT_FIRST_RUN=process-existing to answer them all, or skip-existing to answer only mail that "
            f"arrives from now on (restore the database from a backup instead if it was lost)")

    def fetch_succeeded(self, mailbox: str) -> None:
        with session(self.engine) as s:
            cur = repo.cursor_for(s, mailbox)
            cur.last_success_at = to_db(self.clock())
            s.commit()

    def fetch_failed(self, mailbox: str, error: str, auth: bool) -> None:
        with session(self.engine) as s:
            cur = repo.cursor_for(s, mailbox)
            cur.last_error = error[:1000]
            cur.last_error_at = to_db(self.clock())
            cur.error_count += 1
            if auth:
                cur.auth_failures += 1
            s.commit()

    # ---- one pass ----------------------------------------------------------------------------

    def intake_once(self) -> int:
        """Process everything waiting in the mailbox now."""
        if self.settings.local_mode:
            return self.local_intake()
        intake = ImapIntake(self.imap_config(), self)
        try:
            intake.connect()
            return intake.fetch_new()
        except FirstRunError as exc:
            raise ConfigError(str(exc)) from None
        except Exception as exc:
            self.fetch_failed(intake.config.mailbox, f"{type(exc).__name__}: {exc}",
                              auth=type(exc).__name__ == "LoginError")
            raise
        finally:
            intake.disconnect()

    def local_intake(self) -> int:
        maildir = self.settings.data_dir / "maildir"
        count = 0
        for path in pending_files(maildir):
            self.ingestor.ingest(arrival_from_file(path))  # one message, one short transaction
            mark_processed(path)
            self._poke()
            count += 1
        self.fetch_succeeded(LOCAL_MAILBOX)
        return count

    def deliver(self) -> DeliveryReport:
        return asyncio.run(self.deliverer.deliver_due())

    def run_once(self) -> dict[str, object]:
        return asyncio.run(self._run_once())

    async def _run_once(self) -> dict[str, object]:
        """Take in the mailbox, then run the due scheduled work, in a thread, while the outbox is delivered.

        Letters go out as intake commits them (it pokes the delivery loop after each transaction), so a
        backlog's acknowledgements do not wait for the whole mailbox to be read, and the SMTP server works
        while intake does. When the thread is done, one last pass sends whatever it queued since.
        """
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        self._poke = lambda: loop.call_soon_threadsafe(wake.set)

        def take_in() -> tuple[int, int]:
            fetched = self.intake_once()
            return fetched, self.jobs.run_due(self.clock())

        totals = DeliveryReport()
        intake = asyncio.ensure_future(asyncio.to_thread(take_in))
        smtp: SmtpProcess | None = None
        through: dict[str, Any] = {}  # how each pass sends: the deliverer's own transport, or the SMTP child
        try:
            try:
                smtp = await self._smtp_process()
                if smtp is not None:
                    # Twice as many letters in flight as it has connections, so it always has the next in hand.
                    through = {"transport_factory": lambda: smtp, "concurrency": 2 * smtp.connections}
                while not intake.done():
                    wake.clear()
                    totals.add(await self.deliverer.deliver_due(**through))
                    woken = asyncio.ensure_future(wake.wait())
                    await asyncio.wait({intake, woken}, return_when=asyncio.FIRST_COMPLETED)
                    woken.cancel()
            finally:
                # Never leave the thread behind (a failed pass still waits for intake to finish its transaction).
                await asyncio.wait({intake})
                self._poke = lambda: None
            try:
                fetched, jobs = intake.result()
            finally:
                # Whatever intake committed goes out, even when it failed part-way (the error is raised after).
                totals.add(await self.deliverer.deliver_due(**through))
        finally:
            if smtp is not None:
                await smtp.stop()
        return {"fetched": fetched, "jobs": jobs, "sent": totals.sent, "deferred": totals.deferred,
                "failed": totals.failed}

    async def _smtp_process(self) -> SmtpProcess | None:
        """With an SMTP server: a started child process to deliver through (see mail.smtp_process), or
        None to deliver in-process (no SMTP server, or no child could be started)."""
        s = self.settings
        if not s.smtp_host:
            return None
        smtp = SmtpProcess(s.smtp_host, s.smtp_port_effective, s.smtp_security, s.smtp_user, s.smtp_password,
                           connections=self.deliverer.concurrency, journal=self.journal_path)
        try:
            await smtp.start()
        except (OSError, WorkerUnavailable) as exc:  # no child process here: deliver from this one, as the daemon does
            log.warning("could not start the SMTP worker process (%s); delivering in-process", exc)
            return None
        return smtp

    # ---- the daemon --------------------------------------------------------------------------

    def run_forever(self) -> None:
        asyncio.run(self._daemon())

    async def _daemon(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        stopping = asyncio.Event()
        stop = threading.Event()
        local_wake = threading.Event()
        self._poke = lambda: loop.call_soon_threadsafe(wake.set)

        def request_stop() -> None:
            log.info("stopping")
            stop.set()
            local_wake.set()
            stopping.set()
            wake.set()

        # SIGTERM/SIGINT in the process's main thread; ``stop()`` from anywhere (tests, an embedding program).
        self._stop_daemon = lambda: loop.call_soon_threadsafe(request_stop)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, request_stop)

        threads: list[threading.Thread] = []
        fatal: list[ConfigError] = []  # what stopped the daemon that the operator must fix
        listener: LocalListener | None = None
        if self.settings.local_mode:
            listener = LocalListener(self.settings.data_dir / "maildir", self.settings.local_smtp_host,
                                     self.settings.local_smtp_port, local_wake.set)
            threads.append(threading.Thread(target=self._local_loop, args=(stop, local_wake), name="local-intake",
                                            daemon=True))
        else:
            intake = ImapIntake(self.imap_config(), self)

            def read_mailbox() -> None:
                try:
                    intake.run(stop)
                except FirstRunError as exc:
                    log.error("%s", exc)
                    fatal.append(ConfigError(str(exc)))
                    loop.call_soon_threadsafe(request_stop)

            threads.append(threading.Thread(target=read_mailbox, name="imap-intake", daemon=True))

        if listener:
            try:
                listener.start()
            except OSError as exc:
                # Another program (or another mailbot) has the port: say so in one line, as for bad settings.
                raise ConfigError(f"MAILBOT_LOCAL_SMTP_PORT: cannot listen on {self.settings.local_smtp_host}:"
                                  f"{self.settings.local_smtp_port}: {exc.strerror or exc}") from None
            log.info("local mode: send complaints to %s by SMTP on %s:%s", self.settings.address,
                     self.settings.local_smtp_host, self.settings.local_smtp_port)
        scheduler = BackgroundScheduler(timezone=self.settings.timezone)
        scheduler.add_job(self._scheduled, "interval", minutes=1, id="due-work", next_run_time=datetime.now(
            timezone.utc), max_instances=1, coalesce=True)
        scheduler.start()
        for thread in threads:
            thread.start()
        # Letters go through an SMTP child process here too: it reads each 250 on a core and an interpreter
        # of its own and journals it at once (store.sent_journal), so a kill repeats a letter only in that
        # instant; in this process the 250 could wait ~10 ms behind intake for the interpreter lock.
        smtp = await self._smtp_process()
        through: dict[str, Any] = {"transport_factory": lambda: smtp} if smtp is not None else {}
        try:
            while not stopping.is_set():
                # Cleared before the pass, not after: a letter committed while the pass runs (after its
                # last look at the outbox) pokes ``wake`` and must start the next pass at once.
                wake.clear()
                try:
                    await self.deliverer.deliver_due(**through)
                except Exception:  # noqa: BLE001  (delivery problems are recorded per letter; keep running)
                    log.exception("delivery pass failed")
                if stopping.is_set():
                    break
                timeout = self._until_next_delivery()
                try:
                    await asyncio.wait_for(wake.wait(), timeout=timeout)
                except asyncio.TimeoutError:
                    pass
        finally:
            stop.set()
            if smtp is not None:
                await smtp.stop()
            scheduler.shutdown(wait=False)
            if listener:
                listener.stop()
            for thread in threads:
                await asyncio.to_thread(thread.join, 35)
        if fatal:
            raise fatal[0]

    def stop(self) -> None:
        """Ask a running daemon (``run_forever``) to stop cleanly, as SIGTERM does."""
        self._stop_daemon()

    def _scheduled(self) -> None:
        try:
            if self.jobs.run_due(self.clock()):
                self._poke()
        except Exception:  # noqa: BLE001  (a failed job is retried on the next tick)
            log.exception("scheduled work failed")

    def _until_next_delivery(self) -> float:
        due = self.deliverer.next_due_at()
        if due is None:
            return 30.0
        return max(0.05, min(30.0, (due - self.clock()).total_seconds()))

    def _local_loop(self, stop: threading.Event, local_wake: threading.Event) -> None:
        while not stop.is_set():
            try:
                if self.local_intake():
                    self._poke()
            except Exception:  # noqa: BLE001  (kept in the Maildir; retried on the next wake)
                log.exception("local intake failed")
            local_wake.wait(5.0)
            local_wake.clear()
