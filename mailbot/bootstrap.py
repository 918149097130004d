"""The composition root: builds the store, the domain's data, the adapters and the services, and nothing else.

Nothing here decides anything about complaints or runs anything: ``mailbot.runtime`` runs what is built here
(``--once`` and the daemon), and the services decide.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from mailbot.data_files import DirectoryFiles, is_sample_directory, load_procedures, load_signposts
from mailbot.domain.directory import DirectoryError
from mailbot.domain.procedures import ProcedureFileError
from mailbot.domain.workdays import WorkingCalendar, parse_closures
from mailbot.files import make_private_dir
from mailbot.holiday_store import FILE_NAME as HOLIDAYS_FILE
from mailbot.holiday_store import StoredBankHolidays
from mailbot.mail.imap import ImapConfig
from mailbot.mail.maildir import MaildirTransport
from mailbot.services.alerts import Alerts
from mailbot.services.delivery import Deliverer
from mailbot.services.jobs import Jobs
from mailbot.services.mailbox import MailboxIntake, Reader
from mailbot.services.observe import Observer, Unobserved
from mailbot.services.transport import Transport
from mailbot.settings import ConfigError, Settings
from mailbot.store import health_reads
from mailbot.store.db import open_database, reading
from mailbot.store.sent_journal import SentJournal

if TYPE_CHECKING:
    from mailbot.domain.chain import RouteConfig
    from mailbot.letters import LetterRenderer
    from mailbot.services.correspondence import Correspondence, Sender
    from mailbot.services.digest import Digest
    from mailbot.services.ingest import Ingestor
    from mailbot.services.lifecycle import CaseLifecycle
    from mailbot.services.scheduled_work import ScheduledWork
    from mailbot.services.staffdesk import StaffDesk
    from mailbot.services.webintake import WebIntake
    from mailbot.web.form import ComplaintsForm
    from mailbot.web.metrics import Metrics

REPO_ROOT = Path(__file__).resolve().parent.parent


def working_calendar(settings: Settings) -> WorkingCalendar:
    """The organisation's working days (its time zone, office hours and closures), the one way every part reads it."""
    try:
        closures = parse_closures(settings.closures)
    except ValueError as exc:
        raise ConfigError(f"MAILBOT_CLOSURES: {exc}") from None
    return WorkingCalendar(settings.timezone, closures, settings.office_opens, settings.office_closes,
                           holidays=StoredBankHolidays(settings.data_dir / HOLIDAYS_FILE))


class App:
    """The object graph of one bot: built once from the settings, then run by ``mailbot.runtime``.

    What every pass uses is built here at once, and every setting and data file is checked (a misconfiguration
    stops start-up). The case machinery (the ingest pipeline, the lifecycle, the letters and their templates, the
    staff desk, the digest, the web intake) is built the first time it is asked for: a pass that finds no mail and
    nothing due (most `run --once` passes) never loads the parser, the templates or the staff commands' grammar.
    """

    def __init__(self, settings: Settings, now: datetime | None = None, counted: bool = True) -> None:
        """``counted``: keep the counters /metrics serves. A `run --once` has nobody to serve them to, so it
        neither counts nor imports prometheus-client."""
        self.settings = settings
        self.fixed_now = now
        self.engine = open_database(settings.database_url_effective)
        self.calendar = working_calendar(settings)
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
        if settings.imap_host and settings.sample_directory != "allow" and is_sample_directory(settings.data_dir):
            raise ConfigError(
                f"{settings.data_dir / 'staff.toml'} is the fictional sample directory, and live complaints must not "
                f"go to invented people: put your staff.toml and participants.csv in {settings.data_dir} (in a "
                f"container, mount them into /data), or set MAILBOT_SAMPLE_DIRECTORY=allow for a trial")
        make_private_dir(settings.data_dir)
        self.secret = settings.secret_bytes()
        self.metrics: Metrics | None = None
        self.observer: Observer = Unobserved()
        if counted:
            from mailbot.web.metrics import Metrics

            self.metrics = self.observer = Metrics(self._outbox_by_state)
        self.journal_path = settings.data_dir / "sent.journal"
        self.deliverer = Deliverer(self.engine, self.transport_factory(), self.clock,
                                   journal=SentJournal(self.journal_path), observer=self.observer,
                                   sign_in_pause=timedelta(seconds=settings.sign_in_retry))
        self.alerts = Alerts(self.engine, lambda: self.letters, settings.admin_email, bool(settings.imap_host),
                             self.clock)
        self.jobs = Jobs(self.engine, lambda: self.scheduled_work, self.calendar, self.directory,
                         digest=lambda: self.digest, digest_time=settings.digest_time,
                         retention_years=settings.retention_years)

    # ---- the case machinery, built when first asked for ------------------------------------------------------

    @cached_property
    def renderer(self) -> LetterRenderer:
        from mailbot.letters import LetterRenderer

        return LetterRenderer(self.settings.templates_dir)

    @cached_property
    def sender(self) -> Sender:
        from mailbot.services.correspondence import Sender

        s = self.settings
        return Sender(s.org_name, s.address, s.domain, s.auto_reply_cap)

    @cached_property
    def route_config(self) -> RouteConfig:
        from mailbot.domain.chain import RouteConfig
        from mailbot.letters import MAILBOT_ID_TAG

        s = self.settings
        return RouteConfig(
            address=s.address, own_addresses=frozenset({s.address}), message_id_suffix=f"{MAILBOT_ID_TAG}{s.domain}",
            secret=self.secret, trusted_authserv_id=s.trusted_authserv_id,
            exchange_tenant_id=s.trust_exchange_internal,
            form_senders=s.form_sender_set, ceo_address=s.ceo_address,
        )

    @cached_property
    def letters(self) -> Correspondence:
        from mailbot.mail.clamd import ClamdScanner
        from mailbot.services.correspondence import Correspondence

        s = self.settings
        team_cc = tuple(a.strip().lower() for a in (s.complaints_team_cc or "").split(",") if a.strip())
        return Correspondence(
            self.sender, self.secret, self.renderer, self.calendar, self.procedures, self.directory,
            complaints_team_cc=team_cc, notification_attachments_max=s.notification_attachments_bytes,
            scan=ClamdScanner(s.clamd_socket) if s.clamd_socket else None,
            ceo_address=s.ceo_address, public_url=s.public_url_effective)

    @cached_property
    def lifecycle(self) -> CaseLifecycle:
        from mailbot.services.lifecycle import Addresses, CaseLifecycle

        s = self.settings
        return CaseLifecycle(Addresses(frozenset({s.address}), s.domain, s.form_sender_set), self.letters,
                             self.calendar, self.procedures, self.directory)

    @cached_property
    def staff_desk(self) -> StaffDesk:
        from mailbot.services.staffdesk import StaffDesk

        return StaffDesk(self.lifecycle, self.letters, self.directory, self.signposts)

    @cached_property
    def ingestor(self) -> Ingestor:
        from mailbot.services.ingest import Ingestor

        return Ingestor(self.engine, self.route_config, self.lifecycle, self.staff_desk, self.letters,
                        self.directory, self.clock, observer=self.observer)

    @cached_property
    def digest(self) -> Digest:
        from mailbot.services.digest import Digest

        s = self.settings
        return Digest(self.engine, self.letters, self.calendar, self.directory, self.procedures, s.digest_time,
                      persistent_threshold=s.persistent_threshold)

    @cached_property
    def scheduled_work(self) -> ScheduledWork:
        from mailbot.services.scheduled_work import ScheduledWork

        return ScheduledWork(self.engine, self.lifecycle, self.letters, self.calendar, self.directory,
                             retention_years=self.settings.retention_years)

    @cached_property
    def web_intake(self) -> WebIntake:
        from mailbot.services.webintake import WebIntake

        s = self.settings
        return WebIntake(self.engine, self.ingestor, self.letters, self.secret, s.address, s.domain, self.clock)

    @cached_property
    def web_form(self) -> ComplaintsForm:
        """The web pages, built when the daemon's listener first needs them (Starlette is not imported by a
        `run --once` or a read-only command)."""
        from mailbot.web.form import ComplaintsForm, FormSettings

        s = self.settings
        return ComplaintsForm(self.web_intake, FormSettings(
            org_name=s.org_name, address=s.address, templates_dir=s.templates_dir, timezone=s.timezone,
            secret=self.secret, max_bytes=s.form_max_bytes_value, max_files=s.form_max_files,
            per_email=s.form_limit_per_email, per_ip=s.form_limit_per_ip, trusted_proxies=s.trusted_proxies,
            secure_cookie=(s.public_url or "").startswith("https://")), self.clock)

    # ---- wiring helpers ----------------------------------------------------------------------

    def clock(self) -> datetime:
        return self.fixed_now or datetime.now(timezone.utc)

    def _outbox_by_state(self) -> dict[str, int]:
        with reading(self.engine) as conn:  # each scrape of /metrics: never SQLite's writer slot
            return health_reads.outbox_by_state(conn)

    def _data_file(self, name: str) -> Path:
        """A file from the data dir, falling back to the copy shipped with the code."""
        path = self.settings.data_dir / name
        return path if path.exists() else REPO_ROOT / "data" / name

    def transport_factory(self) -> Callable[[], Transport]:
        s = self.settings
        if s.smtp_host:
            host, port, security = s.smtp_host, s.smtp_port_effective, s.smtp_security
            # One token source for every connection: a refused token is forgotten once, for all of them.
            user, token = s.smtp_user_effective, s.token_source()

            def smtp() -> Transport:
                # Imported here: aiosmtplib (and the email package's header classes) only for a letter sent from
                # this process; a pass's letters go through the SMTP worker process (runtime.SmtpChild).
                from mailbot.mail.smtp import SmtpTransport

                return SmtpTransport(host, port, security, user, s.smtp_password, token=token)

            return smtp
        sent = s.data_dir / "sent"
        return lambda: MaildirTransport(sent)

    def mailbox(self, on_commit: Callable[[], None], reader: Reader | None = None) -> MailboxIntake:
        """The bot's side of the mailbox port; ``on_commit`` wakes whatever delivers the letters; ``reader``
        parses what it fetches."""
        return MailboxIntake(lambda: self.ingestor, self.engine, self.clock, self.settings.first_run,
                             self.settings.database_url_effective.split("@")[-1], on_commit,
                             # A failed read tells the administrator at once, not at the next minute's check,
                             # and the next good read says it has recovered.
                             after_failure=self.alerts.check, after_success=self.alerts.check_if_standing,
                             reader=reader, observer=self.observer)

    def imap_config(self) -> ImapConfig:
        return imap_config(self.settings)


def imap_config(s: Settings) -> ImapConfig:
    """How to reach and sign in to the mailbox, from the settings."""
    assert s.imap_host and s.imap_user
    return ImapConfig(host=s.imap_host, port=s.imap_port_effective, user=s.imap_user,
                      password=s.imap_password or "", security=s.imap_security, folder=s.imap_folder,
                      processed_folder=s.imap_processed_folder, poll_interval=s.imap_poll_interval,
                      idle_renew=s.imap_idle_renew, token=s.token_source(), login_backoff=s.sign_in_retry)
