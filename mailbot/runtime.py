"""Running what ``mailbot.bootstrap`` built: one pass (``mailbot run --once``) or the daemon.

Both runtimes are the same three workers: intake (a thread reading the mailbox into the database), the
delivery loop (the event loop, sending the outbox through the SMTP child process) and the scheduled work.
Intake and the scheduler wake the delivery loop with ``wake`` after every commit that may have queued
letters (while they keep committing, a pass begins at most every PASS_SPACING); the daemon stops when its ``stop``
event is set (SIGTERM, SIGINT, or ``Daemon.stop`` from anywhere).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from mailbot import cpu_policy
from mailbot.bootstrap import App
from mailbot.delivery_process import DeliveryProcess, DeliveryUnavailable
from mailbot.domain import categories
from mailbot.domain.procedures import opening_letters
from mailbot.mail.imap import FETCH_CHUNK, ImapIntake
from mailbot.mail.local import LocalListener, arrival_from_file, mark_processed, pending_files
from mailbot.mail.parse_pool import ParsePool
from mailbot.mail.smtp_process import SmtpProcess, WorkerUnavailable
from mailbot.services.delivery import DeliveryReport, Route
from mailbot.services.mailbox import FirstRunError
from mailbot.settings import ConfigError
from mailbot.store import mailbox_rows
from mailbot.store.locks import InstanceLock, instance_lock

if TYPE_CHECKING:
    from mailbot.web.server import HttpListener

log = logging.getLogger(__name__)

LOCAL_MAILBOX = "local/maildir"
# How often a standby tries to take over (so within seconds of the active bot's death).
STANDBY_POLL = 5.0
# While intake keeps committing (a backlog, a burst), a delivery pass begins at most this often, so each carries
# the letters of several intake transactions. A pass has a fixed cost (the journal's fold, the first pages, the
# claims and their release, the marks' commits: on PostgreSQL seven checkouts, each with its ping, and six
# commits; bench/pass_cost.py). One pass per intake commit (every ~50 ms) held a 2,000-complaint backlog on
# PostgreSQL to 63 acks/s against 82 at 0.25 s (89 at 0.5 s; SQLite, whose passes are cheap, did not move).
# A complaint that arrives after a quiet moment meets no wait: the last pass began long before.
PASS_SPACING = 0.25

# While a backlog's delivery process sends, how often the daemon wakes it without a commit to tell it of (a
# deferred letter coming due).
HANDED_OVER_LOOK = 1.0

Wake = Callable[[], None]


def _then_set(first: Callable[[], None] | None, event: asyncio.Event) -> None:
    if first is not None:
        first()
    event.set()


def _nobody() -> None:
    """A wake-up with no delivery loop to wake (intake or delivery run on their own)."""


# ---- the parts one pass and the daemon share ------------------------------------------------------------


def worth_a_delivery_process(app: App, intake: ImapIntake) -> bool:
    """Whether the fetch under way brings enough mail for a delivery process of its own: MAILBOT_DELIVERY_PROCESS_AT
    messages or more (0: never). Its start (~0.4 s of CPU, on the core the reader child wants too) costs more than
    the process saves until then: in alternating pairs of `run --once` it lost at 300 and broke even at 800
    (bench/README.md, the thirty-fourth look)."""
    at = app.settings.delivery_process_at
    return bool(at) and intake.waiting >= at


def intake_once(app: App, wake: Wake = _nobody, on_backlog: Callable[[], None] | None = None,
                on_mail: Callable[[int], None] | None = None) -> int:
    """Take in everything waiting in the mailbox now; ``wake`` is called after each commit. A backlog's
    messages are read in a child process, which ends with the pass (mail.parse_pool); ``on_backlog`` is called
    once, from this thread, when a fetch brings one (and there are two CPUs for a child) large enough for a delivery
    process (``worth_a_delivery_process``). ``on_mail`` is told, from this thread, how many messages a fetch will
    read, before it reads the first, when there are any."""
    if app.settings.local_mode:
        return local_intake(app, wake)

    def backlog() -> None:
        if on_backlog is not None and worth_a_delivery_process(app, intake):
            on_backlog()

    with ParsePool(log_format=app.settings.log_format, on_backlog=backlog) as reader:
        mailbox = app.mailbox(on_commit=wake, reader=reader.read)
        intake = ImapIntake(app.imap_config(), mailbox, on_waiting=on_mail)
        try:
            intake.connect()
            return intake.fetch_new()
        except FirstRunError as exc:
            raise ConfigError(str(exc)) from None
        except Exception as exc:
            mailbox.fetch_failed(intake.config.mailbox, f"{type(exc).__name__}: {exc}",
                                 auth=type(exc).__name__ == "LoginError")
            raise
        finally:
            intake.disconnect()


def local_intake(app: App, wake: Wake = _nobody) -> int:
    """Local mode: the files the local SMTP listener left in the Maildir, one message per transaction."""
    count = 0
    for path in pending_files(app.settings.data_dir / "maildir"):
        app.ingestor.ingest(arrival_from_file(path))
        mark_processed(path)
        wake()
        count += 1
    mailbox_rows.record_fetch(app.engine, LOCAL_MAILBOX, app.clock())
    return count


class ActiveElsewhere(Exception):
    """Another mailbot is active on this database: it does the mailbox and the outbox; ``str()`` says who."""


def deliver(app: App) -> DeliveryReport:
    """One delivery pass over the outbox, in this process; ActiveElsewhere when a running bot has the outbox
    (two deliverers could both send the same letter)."""
    with _exclusively(app):
        return asyncio.run(app.deliverer.deliver_due())


class _exclusively:
    """The instance lock for one pass, or ActiveElsewhere at once (never a wait)."""

    def __init__(self, app: App) -> None:
        self.lock = instance_lock(app.engine)

    def __enter__(self) -> InstanceLock:
        if not self.lock.try_acquire():
            raise ActiveElsewhere(self.lock.holder())
        return self.lock

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class SmtpChild:
    """The child process a run sends through when there is an SMTP server (see mail.smtp_process).

    It starts at ``start_soon`` (`run --once`, when the mailbox has mail) or the first ``route`` (a delivery
    pass with letters to send), so an idle `run --once` starts none; the daemon asks at once. Where no child can
    be started, or there is no SMTP server, ``route`` gives None and letters go through the deliverer's own
    transport, in this process. ``in_flight`` letters per connection are handed to it at a time.
    """

    def __init__(self, app: App, in_flight: int = 1) -> None:
        self.app = app
        self.in_flight = in_flight
        self.process: SmtpProcess | None = None
        self._starting: asyncio.Future[SmtpProcess | None] | None = None

    def start_soon(self) -> None:
        """Begin the child's start now, on this loop, so the first pass with letters does not wait for it."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())

    async def route(self) -> Route | None:
        self.start_soon()
        assert self._starting is not None
        # Shielded: a pass cancelled while the child starts leaves the start to finish, for stop() to end.
        self.process = smtp = await asyncio.shield(self._starting)
        return None if smtp is None else (lambda: smtp, self.in_flight * smtp.connections)

    async def _start(self) -> SmtpProcess | None:
        s = self.app.settings
        if not s.smtp_host:
            return None
        smtp = SmtpProcess(s.smtp_host, s.smtp_port_effective, s.smtp_security, s.smtp_user_effective,
                           s.smtp_password, connections=self.app.deliverer.concurrency, journal=self.app.journal_path,
                           token=spec.to_dict() if (spec := s.token_spec()) else None)
        try:
            await smtp.start()
        except (OSError, WorkerUnavailable) as exc:  # no child process here: deliver from this one
            log.warning("could not start the SMTP worker process (%s); delivering in-process", exc)
            return None
        return smtp

    async def stop(self) -> None:
        if self._starting is not None and self.process is None:
            try:
                self.process = await self._starting  # started (or failing to) while no pass had asked yet
            except Exception:  # noqa: BLE001  (no pass asked for it: nothing else would say so)
                log.exception("the SMTP worker process failed to start")
        if self.process is not None:
            await self.process.stop()


# ---- one pass (--once) --------------------------------------------------------------------------------


def run_once(app: App) -> dict[str, object]:
    """One pass; ActiveElsewhere (before the mailbox is touched) when a daemon is active on this database.

    The event loop's thread, and every thread and process it starts, yield the CPU to intake's (``cpu_policy``)."""
    with _exclusively(app) as lock, cpu_policy.batch():
        return asyncio.run(_run_once(app, lock))


async def _run_once(app: App, lock: InstanceLock | None = None) -> dict[str, object]:
    """Take in the mailbox, then run the due scheduled work, in a thread, while the outbox is delivered.

    Letters go out as intake commits them (it wakes the delivery loop after each transaction), so a
    backlog's acknowledgements do not wait for the whole mailbox to be read, and the SMTP server works
    while intake does. When the thread is done, one last pass sends whatever it queued since.

    Delivery runs here, through the SMTP worker, until intake meets a backlog and a delivery process of its own
    (``delivery_process``), started then, is ready; from then on that process does it, and this process only wakes
    it. Where that process cannot be started, or fails, delivery goes on here.
    """
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    backlog = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(woken.set)

    def on_backlog() -> None:
        loop.call_soon_threadsafe(backlog.set)

    # Twice as many letters in flight as the child has connections, so it always has the next in hand.
    smtp = SmtpChild(app, in_flight=2)

    def on_mail(_count: int) -> None:
        # The SMTP worker starts while intake reads and commits the first messages (~0.3 s of a new interpreter),
        # not at the first pass with letters, which would wait for it.
        loop.call_soon_threadsafe(smtp.start_soon)

    def take_in() -> tuple[int, int]:
        with cpu_policy.intake():
            try:
                fetched = intake_once(app, wake, on_backlog, on_mail)
            finally:
                try:
                    app.alerts.check()  # a failed read is alerted before the error ends the pass
                except Exception:  # noqa: BLE001  (the alert must not hide the failure it is about)
                    log.exception("could not check for the administrator's alerts")
            return fetched, app.jobs.run_due(app.clock())

    totals = DeliveryReport()
    intake = asyncio.ensure_future(asyncio.to_thread(take_in))
    delivery: DeliveryProcess | None = None  # once this run's delivery is the delivery process's
    # The delivery process while it starts (~0.3-0.5 s of a new interpreter): this process delivers meanwhile, and
    # hands over between two of its passes once it is ready (it makes no pass before it is woken).
    starting: asyncio.Future[DeliveryProcess | None] | None = None
    app.deliverer.keep_connections()  # where this process sends through connections of its own
    try:
        try:
            while not intake.done():
                if backlog.is_set() and delivery is None and starting is None:
                    backlog.clear()  # asked once a run: where it cannot start, delivery stays here
                    starting = asyncio.ensure_future(delivery_process(app, lock))
                if starting is not None and starting.done():
                    delivery, starting = starting.result(), None
                    if delivery is not None:
                        _handed_over(delivery)
                        await smtp.stop()  # no longer needed
                woken.clear()
                began = loop.time()
                if delivery is not None:
                    delivery.wake()  # its own passes are spaced as these are
                else:
                    totals.add(await app.deliverer.deliver_due(smtp.route))
                waiting = {asyncio.ensure_future(woken.wait()), asyncio.ensure_future(backlog.wait())}
                ready = {starting} if starting is not None else set()
                await asyncio.wait({intake, *waiting, *ready}, return_when=asyncio.FIRST_COMPLETED)
                for waited in waiting:
                    waited.cancel()
                rest = PASS_SPACING - (loop.time() - began)
                if rest > 0 and delivery is None and not backlog.is_set():
                    # A few commits' letters to the next pass.
                    await asyncio.wait({intake, *ready}, timeout=rest, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Never leave the thread behind (a failed pass still waits for intake to finish its transaction).
            await asyncio.wait({intake})
        try:
            fetched, jobs = intake.result()
        finally:
            # Whatever intake committed goes out, even when it failed part-way (the error is raised after).
            if delivery is not None:
                try:
                    totals.add(await delivery.finish())
                except DeliveryUnavailable as exc:
                    log.warning("%s; delivering the rest from this process", exc)
                    delivery = None
            if delivery is None:
                totals.add(await app.deliverer.deliver_due(smtp.route))
            if starting is not None:  # intake ended first: this process sent it all, and that one made no pass
                await _unused(starting)
                starting = None
    except BaseException:
        if delivery is not None:
            await delivery.kill()
        if starting is not None:
            await _unused(starting)
        raise
    finally:
        await app.deliverer.let_go()
        await smtp.stop()
    return {"fetched": fetched, "jobs": jobs, "sent": totals.sent, "deferred": totals.deferred,
            "failed": totals.failed}


async def delivery_process(app: App, lock: InstanceLock | None) -> DeliveryProcess | None:
    """A backlog's delivery process, started and ready; None where it cannot start, or cannot see this database
    (SQLite in memory is this process's alone). It makes no pass until it is woken, so the caller may go on
    delivering while it starts (one deliverer at a time). On SQLite it holds the instance lock's descriptor until
    it ends."""
    lock_fd = lock.inheritable_fd() if lock is not None else None
    if lock_fd is None and app.engine.url.get_backend_name() != "postgresql":
        return None
    delivery = DeliveryProcess(app.settings, app.fixed_now, PASS_SPACING, lock_fd=lock_fd)
    try:
        await delivery.start()
    except DeliveryUnavailable as exc:
        log.warning("%s; delivering from this process", exc)
        return None
    return delivery


def _handed_over(delivery: DeliveryProcess) -> None:
    log.info("a backlog: its letters go out from a delivery process of their own (pid %s)", delivery.pid)


async def _unused(starting: asyncio.Future[DeliveryProcess | None]) -> None:
    """A delivery process asked for and never woken, so it has made no pass, ended: its start cancelled, or it
    killed."""
    if not starting.done():
        starting.cancel()
    try:
        delivery = await starting
    except (asyncio.CancelledError, Exception):  # noqa: BLE001  (it never ran: nothing to end)
        return
    if delivery is not None:
        await delivery.kill()


# ---- the daemon ---------------------------------------------------------------------------------------


def warm_up(app: App) -> None:
    """What a new complaint needs at once, made ready before the daemon first reads its mailbox: the templates of
    the letters it writes (each procedure's opening letter and the staff copy) compiled, the words it reads
    for, and the bank holidays its deadlines count past. The first complaint after a start was acknowledged ~40 ms
    later than the rest for the first two, and ~0.13 s later for the holidays where none were kept yet. A template
    that does not compile is left for its letter to report."""
    began = time.perf_counter()
    try:
        app.renderer.compile([*opening_letters(app.procedures), "staff-notification"])
        categories.warm()
        app.calendar.ask_ahead(app.clock())
    except Exception:  # noqa: BLE001  (a warm-up must never keep the bot from its mail)
        log.exception("warming up failed; the first complaint will do it")
        return
    log.debug("warmed up in %.0f ms", (time.perf_counter() - began) * 1000)


class Daemon:
    """The bot running until it is stopped: intake on a thread, scheduled work every minute, and the
    delivery loop on the event loop, woken by both.

    ``stop`` (a ``threading.Event``, made here when not given) ends it cleanly when set, as SIGTERM does;
    ``Daemon.stop()`` sets it from any thread. With ``smtp_child=False`` letters go out through the
    deliverer's own transport in this process, never through an SMTP child.
    """

    def __init__(self, app: App, stop: threading.Event | None = None, smtp_child: bool = True) -> None:
        self.app = app
        self.stopping = stop or threading.Event()
        self.smtp_child = smtp_child
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken: asyncio.Event | None = None
        self.lock = instance_lock(app.engine)
        # "starting", then "standby" while another bot is active on the database, then "active".
        self.role = "starting"
        self.lost_lock = False

    def run(self) -> None:
        asyncio.run(self._run())

    def stop(self) -> None:
        """Ask the daemon to stop cleanly (from any thread)."""
        self.stopping.set()
        self.wake()

    def wake(self) -> None:
        """Wake the delivery loop (from any thread): letters were queued, or it should stop."""
        self._on_loop(None)

    def _on_loop(self, first: Callable[[], None] | None) -> None:
        """Wake the delivery loop from any thread, having it call ``first`` (on its own thread, in the order of
        the calls) before it looks."""
        loop, woken = self._loop, self._woken
        if loop is not None and woken is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(_then_set, first, woken)
            except RuntimeError:  # the loop closed in between: nothing left to wake
                pass

    async def _run(self) -> None:
        self._loop, self._woken = asyncio.get_running_loop(), asyncio.Event()
        local_wake = threading.Event()  # the local listener saved a message
        # A complaint from the web form: its letters go at once. This builds the case machinery (the ingestor,
        # the lifecycle, the letters) here, before the intake and scheduler threads start, so no two threads
        # build it at once (bootstrap.App's cached properties).
        self.app.web_intake.on_commit = self.wake

        def on_signal() -> None:
            log.info("stopping")
            self.stop()
            local_wake.set()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, on_signal)
            self._loop.add_signal_handler(signal.SIGHUP, self._reload_templates)

        http = await self._http_listener()
        try:
            if await self._standby():
                with cpu_policy.batch():  # the loop and what it starts yield the CPU to intake's thread
                    await self._active(local_wake)
        finally:
            self.lock.release()
            if http is not None:
                await http.stop()
            self._loop = self._woken = None

    async def _http_listener(self) -> HttpListener | None:
        """/healthz and /metrics, served from the start (a standby answers too); None when the port is 0."""
        from mailbot.status import report
        from mailbot.web.app import build
        from mailbot.web.server import HttpListener  # uvicorn: only the daemon needs it

        settings = self.app.settings
        if not settings.http_port:
            return None
        assert self.app.metrics is not None, "the daemon's App counts for /metrics"
        web = build(lambda: report(settings, self.app.engine, self.app.clock(), instance=self.role),
                    self.app.metrics, self.app.web_form.routes())
        http = HttpListener(web, settings.http_host, settings.http_port)
        try:
            http.bind()
        except OSError as exc:
            raise ConfigError(f"MAILBOT_HTTP_PORT: cannot listen on {settings.http_host}:{settings.http_port}: "
                              f"{exc.strerror or exc} (another program, or another mailbot, has it; 0 turns the "
                              f"listener off)") from None
        await http.serve()
        return http

    async def _standby(self) -> bool:
        """Wait until this instance holds the database's lock (at once when no other bot runs); False when
        stopped first. A standby touches neither the mailbox nor the outbox."""
        assert self._woken is not None
        announced = False
        while not self.stopping.is_set():
            if await asyncio.to_thread(self.lock.try_acquire):
                if announced:
                    log.info("the active mailbot stopped: this one takes over")
                self.role = "active"
                return True
            if not announced:
                log.info("standby: %s is active on this database; this one takes over when it stops",
                         self.lock.holder())
                announced = True
            self.role = "standby"
            self._woken.clear()
            try:
                await asyncio.wait_for(self._woken.wait(), timeout=STANDBY_POLL)
            except asyncio.TimeoutError:
                pass
        return False

    async def _active(self, local_wake: threading.Event) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        app, settings = self.app, self.app.settings
        assert self._woken is not None
        # Set on this loop when a fetch brings a backlog, and when a fetch ends (cleared as a backlog begins).
        backlog, fetch_over = asyncio.Event(), asyncio.Event()
        threads: list[threading.Thread] = []
        fatal: list[ConfigError] = []  # what stopped the daemon that the operator must fix
        listener: LocalListener | None = None
        if settings.local_mode:
            listener = LocalListener(settings.data_dir / "maildir", settings.local_smtp_host,
                                     settings.local_smtp_port, local_wake.set)
            threads.append(threading.Thread(target=self._local_loop, args=(local_wake,), name="local-intake",
                                            daemon=True))
        else:
            # A fetch that brings a backlog (a full chunk: after an outage, or a start on a full mailbox) is read
            # in a child process, as `run --once` reads one, and a large one's letters (worth_a_delivery_process)
            # go out from a delivery process; both end with the fetch. Mail as it arrives, a message or a few, is
            # read and sent from this process, with no child and no round trip.
            def backlog_began() -> None:
                fetch_over.clear()  # the fetches before this one
                backlog.set()

            def told_of_backlog() -> None:
                if worth_a_delivery_process(app, intake):
                    self._on_loop(backlog_began)

            reader = ParsePool(log_format=settings.log_format, start_at=FETCH_CHUNK, on_backlog=told_of_backlog)
            intake = ImapIntake(app.imap_config(), app.mailbox(on_commit=self.wake, reader=reader.read))

            def fetched(_count: int) -> None:
                reader.close()
                self._on_loop(fetch_over.set)

            def read_mailbox() -> None:
                warm_up(app)
                try:
                    with cpu_policy.intake():
                        intake.run(self.stopping, on_fetched=fetched)
                except FirstRunError as exc:
                    log.error("%s", exc)
                    fatal.append(ConfigError(str(exc)))
                    self.stop()
                finally:
                    reader.close()

            threads.append(threading.Thread(target=read_mailbox, name="imap-intake", daemon=True))

        if listener:
            try:
                listener.start()
            except OSError as exc:
                # Another program (or another mailbot) has the port: say so in one line, as for bad settings.
                raise ConfigError(f"MAILBOT_LOCAL_SMTP_PORT: cannot listen on {settings.local_smtp_host}:"
                                  f"{settings.local_smtp_port}: {exc.strerror or exc}") from None
            log.info("local mode: send complaints to %s by SMTP on %s:%s", settings.address,
                     settings.local_smtp_host, settings.local_smtp_port)
        scheduler = BackgroundScheduler(timezone=settings.timezone)
        scheduler.add_job(self._scheduled, "interval", minutes=1, id="due-work", next_run_time=datetime.now(
            timezone.utc), max_instances=1, coalesce=True)
        scheduler.start()
        for thread in threads:
            thread.start()
        # Letters go through an SMTP child process here too: it reads each 250 on a core and an interpreter
        # of its own and journals it at once (store.sent_journal), so a kill repeats a letter only in that
        # instant; in this process the 250 could wait ~10 ms behind intake for the interpreter lock.
        smtp = SmtpChild(app) if self.smtp_child else None
        if smtp is not None:
            await smtp.route()  # started now: the first complaint's acknowledgement does not wait for it
        app.deliverer.keep_connections()  # where no SMTP child could start: the passes' own connections
        # While a fetch brings a backlog, its letters go out from a delivery process, as in `run --once` (the
        # passes here held the interpreter lock from intake's thread); this loop only wakes it, and delivers
        # again once the fetch is over and that process has made its last pass. One deliverer at a time.
        delivery: DeliveryProcess | None = None
        starting: asyncio.Future[DeliveryProcess | None] | None = None  # while it starts, this loop delivers on
        woken = self._woken
        try:
            loop = asyncio.get_running_loop()
            while not self.stopping.is_set():
                # Cleared before the pass, not after: a letter committed while the pass runs (after its
                # last look at the outbox) wakes the loop and must start the next pass (see PASS_SPACING).
                self._woken.clear()
                began = loop.time()
                if backlog.is_set() and delivery is None and starting is None:
                    backlog.clear()
                    if not fetch_over.is_set():  # a small backlog may be taken in already
                        starting = asyncio.ensure_future(delivery_process(app, self.lock))
                        starting.add_done_callback(lambda _: woken.set())
                if starting is not None and starting.done():
                    delivery, starting = starting.result(), None
                    if delivery is not None and fetch_over.is_set():  # the fetch ended first: not needed
                        await delivery.kill()  # never woken, so it made no pass
                        delivery = None
                    elif delivery is not None:
                        _handed_over(delivery)
                if delivery is not None and (fetch_over.is_set() or delivery.ended):
                    await self._take_back(delivery)
                    delivery = None
                if delivery is not None:
                    delivery.wake()  # it spaces its own passes
                else:
                    try:
                        await app.deliverer.deliver_due(smtp.route if smtp is not None else None)
                    except Exception:  # noqa: BLE001  (delivery problems are recorded per letter; keep running)
                        log.exception("delivery pass failed")
                if self.stopping.is_set():
                    break
                try:
                    # The delivery process's letters are due as they come: intake's commits wake it, and this
                    # loop looks each second, not at each deferred letter, while it delivers.
                    await asyncio.wait_for(self._woken.wait(), timeout=self._until_next_delivery()
                                           if delivery is None else HANDED_OVER_LOOK)
                except asyncio.TimeoutError:
                    pass
                rest = PASS_SPACING - (loop.time() - began)
                if rest > 0 and delivery is None and not (self.stopping.is_set() or backlog.is_set()
                                                          or (starting is not None and starting.done())):
                    await asyncio.sleep(rest)
        finally:
            self.stopping.set()
            local_wake.set()
            if starting is not None:
                await _unused(starting)
            if delivery is not None:
                await self._take_back(delivery, last_pass=False)
            await app.deliverer.let_go()
            if smtp is not None:
                await smtp.stop()
            scheduler.shutdown(wait=False)
            if listener:
                listener.stop()
            for thread in threads:
                await asyncio.to_thread(thread.join, 35)
        if fatal:
            raise fatal[0]
        if self.lost_lock:
            raise ConfigError("lost the database lock that keeps a second mailbot from sending the same letters "
                              "(the database connection dropped): stopped; start it again")

    async def _take_back(self, delivery: DeliveryProcess, last_pass: bool = True) -> None:
        """The backlog's fetch is over (or the bot is stopping, ``last_pass=False``): the delivery process ends
        after its last pass, and delivery is this loop's again. Its letters count in /metrics as this process's
        do. Where it failed, what it had not sent is still in the outbox, for this loop's passes."""
        try:
            report = await delivery.finish(last_pass=last_pass)
        except DeliveryUnavailable as exc:
            log.warning("%s; delivering from this process", exc)
            return
        for state, count in (("sent", report.sent), ("deferred", report.deferred), ("failed", report.failed)):
            for _ in range(count):
                self.app.observer.letter(state)
        log.info("the backlog's delivery process has ended: %s letter(s) sent, %s deferred, %s failed; delivering "
                 "from this process again", report.sent, report.deferred, report.failed)

    def _reload_templates(self) -> None:
        """SIGHUP, and every minute: letters written after an edit to templates/ use the edited words."""
        try:
            if self.app.renderer.reload_if_changed():
                log.info("templates changed: letters use the new words from now on")
        except OSError as exc:
            log.warning("could not read the templates folder: %s", exc)

    def _scheduled(self) -> None:
        self._reload_templates()
        if not self.lock.still_held():
            log.error("lost the database lock (the connection dropped); stopping so no letter goes twice")
            self.lost_lock = True
            self.stop()
            return
        try:
            if self.app.jobs.run_due(self.app.clock()) + self.app.alerts.check():
                self.wake()
        except Exception:  # noqa: BLE001  (a failed job is retried on the next tick)
            log.exception("scheduled work failed")

    def _until_next_delivery(self) -> float:
        due = self.app.deliverer.next_due_at()
        if due is None:
            return 30.0
        return max(0.05, min(30.0, (due - self.app.clock()).total_seconds()))

    def _local_loop(self, local_wake: threading.Event) -> None:
        with cpu_policy.intake():
            self._take_in_local(local_wake)

    def _take_in_local(self, local_wake: threading.Event) -> None:
        warm_up(self.app)
        while not self.stopping.is_set():
            try:
                if local_intake(self.app, self.wake):
                    self.wake()
            except Exception:  # noqa: BLE001  (kept in the Maildir; retried on the next wake)
                log.exception("local intake failed")
            local_wake.wait(5.0)
            local_wake.clear()
