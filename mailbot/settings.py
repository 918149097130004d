"""One Settings object, read from the environment (and a .env file) once at start-up.

Nothing else in the bot reads ``os.environ``. A bad value stops start-up with one line that names
the variable, so an operator can fix a deployment without reading a traceback.

Each setting is a row of ``FIELDS``: its name (``MAILBOT_`` and the name in capitals is its variable), its
default, its kind, and what else it must be. They are read here by hand rather than by pydantic-settings,
whose imports (pydantic's with them) were a quarter of every read-only command: ``mailbot cases`` on an empty
database took 0.28 s with them and 0.21 s without, and it and an idle ``run --once`` are asked to finish in under
half a second on slower minutes too.
"""

from __future__ import annotations

import copy
import math
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailbot.domain.attachments import parse_size
from mailbot.files import write_private_file
from mailbot.mail.oauth import MICROSOFT_AUTHORITY, TokenSource, TokenSpec, token_source

if TYPE_CHECKING:
    from typing import Literal


class ConfigError(Exception):
    """A misconfiguration, explained in one line."""


# A signing key shorter than this is refused: HMAC keys want at least the hash's 32 bytes.
MIN_SECRET_BYTES = 32

ENV_PREFIX = "MAILBOT_"
ENV_FILE = ".env"


# ---- what a value must be, beyond its kind (each raises ValueError saying so) -------------------------------------


def _plain_address(value: str) -> str:
    value = value.strip().lower()
    local, _, domain = value.partition("@")
    if not local or not domain or "+" in local:
        raise ValueError("must be a plain address like complaints@1mm.org.uk")
    return value


def _plain_address_of_staff(value: str) -> str:
    value = value.strip().lower()
    local, _, domain = value.partition("@")
    if not local or not domain or "." not in domain or any(c in value for c in " <>,;"):
        raise ValueError("must be a plain address like ceo@1mm.org.uk")
    return value


def _public_url(value: str) -> str:
    value = value.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ValueError("must be the address people reach the bot's pages at, like https://complaints.1mm.org.uk")
    return value


def _networks(value: str) -> str:
    from mailbot.domain.proxies import parse_networks

    parse_networks(value)
    return value


def _tenant_id(value: str) -> str:
    value = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value):
        raise ValueError("must be your Microsoft 365 tenant id, a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47 "
                         "(Entra admin centre, Overview, Tenant ID)")
    return value


def _a_size(value: str) -> str:
    parse_size(value)
    return value


def _known_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


# ---- the kinds of value ---------------------------------------------------------------------------------------------


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    return value


def _whole(value: object) -> int:
    """As Python reads one ("993", " 993 ", "9_93"), or a number with nothing after its point ("993.0")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        if re.fullmatch(r"\s*[+-]?\d+\.0*\s*", value):
            return int(value.strip().split(".")[0])
    raise ValueError("must be a whole number")


def _number(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError("must be a number") from None
    else:
        raise ValueError("must be a number")
    if not math.isfinite(number):
        raise ValueError("must be a number")
    return number


def _path(value: object) -> Path:
    if isinstance(value, (str, Path)):
        return Path(value)
    raise ValueError("must be a path")


def _time_of_day(value: object) -> time:
    if isinstance(value, time):
        return value
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*", value, re.ASCII) \
        if isinstance(value, str) else None
    if match:
        hour, minute, second = (int(part or 0) for part in match.groups()[:3])
        if hour < 24 and minute < 60 and second < 60:
            return time(hour, minute, second, int((match.group(4) or "0").ljust(6, "0")))
    raise ValueError("must be a time of day like 09:00")


_UNSET: Any = object()  # a setting nobody gave


@dataclass(frozen=True)
class Setting:
    """One setting, read from ``MAILBOT_`` and its name in capitals. One whose default is None may be unset."""

    name: str
    default: Any
    kind: Callable[[object], Any] = _text
    choices: tuple[str, ...] = ()  # the values it may take (in any case; kept as written here)
    least: float | None = None  # the smallest it may be
    above: float | None = None  # what it must be more than
    most: float | None = None  # the largest it may be
    check: Callable[[Any], Any] | None = None  # what else it must be; returns its tidy form
    unset_words: tuple[str, ...] = ()  # words that unset it too, like "off"

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def secret(self) -> bool:
        """A password or a key: never shown, in an error or a repr."""
        return "password" in self.name or "secret" in self.name

    def read(self, given: object) -> Any:
        """Its value from what was given: a variable's text (empty is the same as unset), a value from code, or
        None; _UNSET for nothing at all. A ValueError says what it must be instead."""
        if given is _UNSET:
            given = self.default
        elif isinstance(given, str):
            words = given.strip().lower()
            if words and words in self.unset_words:
                return None
            if not words:
                given = self.default
        elif given is None and self.default is not None and not self.unset_words:
            raise ValueError("must be set")
        if given is None:
            return None
        value = self.kind(given)
        if self.choices:
            value = next((choice for choice in self.choices if choice.lower() == value.strip().lower()), None)
            if value is None:
                raise ValueError("must be one of " + ", ".join(self.choices))
        if self.least is not None and value < self.least:
            raise ValueError(f"must be at least {self.least:g}")
        if self.above is not None and not value > self.above:
            raise ValueError(f"must be more than {self.above:g}")
        if self.most is not None and value > self.most:
            raise ValueError(f"must be at most {self.most:g}")
        return self.check(value) if self.check is not None else value


_PORT = {"kind": _whole, "least": 1, "most": 65535}

FIELDS: tuple[Setting, ...] = (
    Setting("address", "complaints@1mm.org.uk", check=_plain_address),
    Setting("org_name", "One Million Mentors"),

    Setting("imap_host", None),
    Setting("imap_port", None, **_PORT),
    Setting("imap_user", None),
    Setting("imap_password", None),
    Setting("imap_security", "ssl", choices=("ssl", "starttls", "none")),
    Setting("imap_folder", "INBOX"),
    Setting("imap_processed_folder", None),
    # What a new database does with mail already in the mailbox: unset stops start-up and asks.
    Setting("first_run", None, choices=("process-existing", "skip-existing")),
    # How often to poll when IDLE is missing or as a safety net beside it, in seconds.
    Setting("imap_poll_interval", 60.0, kind=_number, above=0),
    # Servers drop an IDLE after 30 minutes (RFC 2177); we renew well before that.
    Setting("imap_idle_renew", 600.0, kind=_number, above=0),
    # A fetch with at least this many messages to read sends its letters from a process of its own; 0 never.
    Setting("delivery_process_at", 1000, kind=_whole, least=0),

    # How the bot signs in to IMAP and SMTP: a password, or an OAuth2 access token (XOAUTH2) from Microsoft
    # 365 (msal, an app registration), Google Workspace (a service account) or a command that prints one.
    Setting("auth", "password", choices=("password", "microsoft", "google", "command")),
    # The log: a line per message and per letter. "json" for a log collector.
    Setting("log_format", "text", choices=("text", "json")),
    # With a real mailbox the bot refuses the fictional sample staff directory; "allow" lets a trial run on it.
    Setting("sample_directory", "refuse", choices=("refuse", "allow")),
    Setting("log_level", None, choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Setting("oauth_token_command", None),
    Setting("ms_tenant_id", None),
    Setting("ms_client_id", None),
    Setting("ms_client_secret", None),
    Setting("ms_cert_file", None, kind=_path),
    Setting("ms_cert_thumbprint", None),
    Setting("ms_authority", MICROSOFT_AUTHORITY),
    Setting("google_service_account_file", None, kind=_path),

    Setting("smtp_host", None),
    Setting("smtp_port", None, **_PORT),
    Setting("smtp_user", None),
    Setting("smtp_password", None),
    Setting("smtp_security", "starttls", choices=("starttls", "ssl", "none")),

    Setting("data_dir", Path("data"), kind=_path),
    Setting("database_url", None),
    Setting("templates_dir", Path("templates"), kind=_path),
    Setting("timezone", "Europe/London", check=_known_timezone),
    Setting("secret", None),

    # Years after a case closes that its personal data is kept (the usual UK charity practice is six); then a
    # daily job anonymises it, keeping its figures. A case on #hold is kept until #release.
    Setting("retention_years", 6, kind=_whole, least=1, most=100),
    # Who is mailed when the bot cannot do its job (sign-in refused, mailbox unread, letters failing).
    Setting("admin_email", None, check=_plain_address_of_staff),
    # After a refused sign-in, how long to wait before trying again, in seconds (not every few seconds: a
    # provider may lock an account that keeps failing).
    Setting("sign_in_retry", 60.0, kind=_number, least=1),

    # The HTTP listener (/healthz, /metrics): loopback by default; 0.0.0.0 in a container behind a proxy.
    # Port 0 turns it off.
    Setting("http_host", "127.0.0.1"),
    Setting("http_port", 8080, kind=_whole, least=0, most=65535),

    # How the web pages (the complaints form, each case's status page) are reached from outside, e.g.
    # https://complaints.1mm.org.uk behind the charity's reverse proxy. Letters link to them. Unset: in local
    # mode the listener's own address; otherwise no links (the form is still served).
    Setting("public_url", None, check=_public_url),
    # Whose X-Forwarded-For to believe (the reverse proxy): comma-separated addresses or CIDR ranges.
    Setting("trusted_proxies", "", check=_networks),
    # The form's limits: submissions per email address and per client address in an hour, the largest
    # request (attachments included), and files per submission.
    Setting("form_limit_per_email", 5, kind=_whole, least=1),
    Setting("form_limit_per_ip", 20, kind=_whole, least=1),
    Setting("form_max_bytes", "10M", check=_a_size),
    Setting("form_max_files", 5, kind=_whole, least=0, most=20),

    # Local mode: the embedded SMTP listener used when no IMAP host is configured.
    Setting("local_smtp_host", "127.0.0.1"),
    Setting("local_smtp_port", 2525, **_PORT),

    # Mail loops: at most this many automatic letters to one address in 24 hours.
    Setting("auto_reply_cap", 5, kind=_whole, least=1),
    Setting("office_opens", time(9, 0), kind=_time_of_day),
    Setting("office_closes", time(17, 30), kind=_time_of_day),
    # Extra closure days, e.g. "2026-12-24..2027-01-01,2027-04-01".
    Setting("closures", ""),
    Setting("complaints_team_cc", None),
    Setting("trusted_authserv_id", None),
    # Microsoft 365 (whose Authentication-Results carry no authserv-id): the tenant id whose "sent from inside
    # the tenant" stamp proves a member of staff. Only where Exchange Online delivers to the mailbox.
    Setting("trust_exchange_internal", None, check=_tenant_id),
    # The most a staff notification carries in attachments: bytes, or with a K or M suffix.
    Setting("notification_attachments_max", "10M", check=_a_size),
    # clamd's socket (a path, or host:port): attachments it flags are never sent to staff. Unset: no scan.
    Setting("clamd_socket", None),
    # Web-form senders (comma-separated addresses): one carries many real complainants in Reply-To.
    Setting("form_senders", ""),
    # "off" sends no scheduled digest from this instance (`mailbot digest` by hand still works).
    Setting("digest_time", time(8, 0), kind=_time_of_day, unset_words=("off", "none", "never")),
    Setting("persistent_threshold", 10, kind=_whole, least=1),
    # The address letters publish for writing to the Chief Executive directly (the procedures' last stage).
    # Unset: the email of the member of staff with the ceo role in data/staff.toml.
    Setting("ceo_address", None, check=_plain_address_of_staff),
)


class Settings:
    """The bot's settings. ``Settings()`` reads them from the ``MAILBOT_*`` variables, then a .env file in the
    working directory; keyword arguments named as in ``FIELDS`` come before both. A value that will not do raises
    ConfigError, one line naming the variable."""

    address: str
    org_name: str
    imap_host: str | None
    imap_port: int | None
    imap_user: str | None
    imap_password: str | None
    imap_security: Literal["ssl", "starttls", "none"]
    imap_folder: str
    imap_processed_folder: str | None
    first_run: Literal["process-existing", "skip-existing"] | None
    imap_poll_interval: float
    imap_idle_renew: float
    delivery_process_at: int
    auth: Literal["password", "microsoft", "google", "command"]
    log_format: Literal["text", "json"]
    sample_directory: Literal["refuse", "allow"]
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None
    oauth_token_command: str | None
    ms_tenant_id: str | None
    ms_client_id: str | None
    ms_client_secret: str | None
    ms_cert_file: Path | None
    ms_cert_thumbprint: str | None
    ms_authority: str
    google_service_account_file: Path | None
    smtp_host: str | None
    smtp_port: int | None
    smtp_user: str | None
    smtp_password: str | None
    smtp_security: Literal["starttls", "ssl", "none"]
    data_dir: Path
    database_url: str | None
    templates_dir: Path
    timezone: str
    secret: str | None
    retention_years: int
    admin_email: str | None
    sign_in_retry: float
    http_host: str
    http_port: int
    public_url: str | None
    trusted_proxies: str
    form_limit_per_email: int
    form_limit_per_ip: int
    form_max_bytes: str
    form_max_files: int
    local_smtp_host: str
    local_smtp_port: int
    auto_reply_cap: int
    office_opens: time
    office_closes: time
    closures: str
    complaints_team_cc: str | None
    trusted_authserv_id: str | None
    trust_exchange_internal: str | None
    notification_attachments_max: str
    clamd_socket: str | None
    form_senders: str
    digest_time: time | None
    persistent_threshold: int
    ceo_address: str | None

    def __init__(self, **given: object) -> None:
        sources: tuple[Mapping[str, object], ...] = (given, _variables(os.environ), _env_file())
        for setting in FIELDS:
            raw = next((source[setting.name] for source in sources if setting.name in source), _UNSET)
            try:
                value = setting.read(raw)
            except ValueError as exc:
                shown = "" if setting.secret or raw is None or raw is _UNSET else f" (got {raw!r})"
                raise ConfigError(f"{setting.variable}: {exc}{shown}") from None
            setattr(self, setting.name, value)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(setting.name for setting in FIELDS)

    def replace(self, **changes: object) -> Settings:
        """A copy with some values changed, as given (already the right kind: they are not read again)."""
        unknown = set(changes) - set(self.names())
        if unknown:
            raise TypeError(f"no such setting: {', '.join(sorted(unknown))}")
        changed = copy.copy(self)
        for name, value in changes.items():
            setattr(changed, name, value)
        return changed

    def __repr__(self) -> str:
        """Every value but the passwords and secrets, which a log or a traceback must not show."""
        shown = []
        for setting in FIELDS:
            value = getattr(self, setting.name)
            shown.append(f"{setting.name}={'***' if setting.secret and value is not None else repr(value)}")
        return f"Settings({', '.join(shown)})"

    @property
    def smtp_user_effective(self) -> str | None:
        """The SMTP sign-in name: MAILBOT_SMTP_USER, or with OAuth2 the mailbox's own (MAILBOT_IMAP_USER)."""
        return self.smtp_user or (self.imap_user if self.auth != "password" else None)

    def token_spec(self) -> TokenSpec | None:
        """Where an OAuth2 access token comes from, or None to sign in with the password."""
        if self.auth == "password":
            return None
        return TokenSpec(
            kind=self.auth, state_dir=str(self.data_dir.resolve()), command=self.oauth_token_command,
            tenant_id=self.ms_tenant_id, client_id=self.ms_client_id, client_secret=self.ms_client_secret,
            cert_file=str(self.ms_cert_file) if self.ms_cert_file else None, cert_thumbprint=self.ms_cert_thumbprint,
            authority=self.ms_authority, subject=self.imap_user,
            service_account_file=str(self.google_service_account_file) if self.google_service_account_file else None)

    def token_source(self) -> TokenSource | None:
        return token_source(self.token_spec())

    @property
    def domain(self) -> str:
        return self.address.split("@", 1)[1]

    @property
    def public_url_effective(self) -> str | None:
        """MAILBOT_PUBLIC_URL, or in local mode the listener's own address (a newcomer's browser is on it)."""
        if self.public_url:
            return self.public_url
        if not self.imap_host and self.http_port:
            host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
            return f"http://{host}:{self.http_port}"
        return None

    @property
    def form_max_bytes_value(self) -> int:
        return parse_size(self.form_max_bytes)

    @property
    def notification_attachments_bytes(self) -> int:
        return parse_size(self.notification_attachments_max)

    @property
    def form_sender_set(self) -> frozenset[str]:
        return frozenset(a.strip().lower() for a in self.form_senders.split(",") if a.strip())

    @property
    def local_mode(self) -> bool:
        return not self.imap_host

    @property
    def imap_port_effective(self) -> int:
        if self.imap_port:
            return self.imap_port
        return 993 if self.imap_security == "ssl" else 143

    @property
    def smtp_port_effective(self) -> int:
        if self.smtp_port:
            return self.smtp_port
        return {"ssl": 465, "starttls": 587, "none": 25}[self.smtp_security]

    @property
    def database_url_effective(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'mailbot.db'}"

    @property
    def message_id_domain(self) -> str:
        return self.domain

    def secret_bytes(self) -> bytes:
        """The signing key: the configured one, else one generated once and kept under the data dir.

        The key file is written whole or not at all (a temporary file, created 0600, synced, renamed),
        so a crash never leaves an empty key that would make every signature fail. A key shorter than
        MIN_SECRET_BYTES stops start-up with one line, since signatures under it can be guessed.
        """
        if self.secret:
            return self.secret.encode()
        key_file = self.data_dir / "secret.key"
        if key_file.exists():
            key = key_file.read_bytes().strip()
            if len(key) < MIN_SECRET_BYTES:
                raise ConfigError(f"{key_file} holds {len(key)} bytes, fewer than {MIN_SECRET_BYTES}: restore it "
                                  f"from a backup, or delete it to make a new one (every signed reply address "
                                  f"already sent then stops working)")
            return key
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32).encode()
        write_private_file(key_file, key + b"\n")
        return key

    def check(self) -> None:
        """Checks across settings, which no one setting can make alone."""
        if self.auth == "command" and not (self.oauth_token_command or "").strip():
            raise ConfigError("MAILBOT_OAUTH_TOKEN_COMMAND must be set with MAILBOT_AUTH=command (a command that "
                              "prints an access token)")
        if self.auth == "microsoft":
            missing = [name for name, value in (("MAILBOT_MS_TENANT_ID", self.ms_tenant_id),
                                                ("MAILBOT_MS_CLIENT_ID", self.ms_client_id)) if not value]
            if missing:
                raise ConfigError(f"{' and '.join(missing)} must be set with MAILBOT_AUTH=microsoft (the app "
                                  f"registration's Directory (tenant) ID and Application (client) ID)")
            if not self.ms_client_secret and not (self.ms_cert_file and self.ms_cert_thumbprint):
                raise ConfigError("MAILBOT_MS_CLIENT_SECRET, or MAILBOT_MS_CERT_FILE with MAILBOT_MS_CERT_THUMBPRINT, "
                                  "must be set with MAILBOT_AUTH=microsoft")
            if self.ms_cert_file and not self.ms_cert_file.is_file():
                raise ConfigError(f"MAILBOT_MS_CERT_FILE: {self.ms_cert_file} is not a file")
            if not self.ms_authority.startswith("https://"):
                raise ConfigError(f"MAILBOT_MS_AUTHORITY: must be an https:// address (got {self.ms_authority!r})")
        if self.auth == "google" and not (self.google_service_account_file and
                                          self.google_service_account_file.is_file()):
            raise ConfigError("MAILBOT_GOOGLE_SERVICE_ACCOUNT_FILE must name the service account's JSON key file "
                              "with MAILBOT_AUTH=google" + (f" ({self.google_service_account_file} is not a file)"
                                                            if self.google_service_account_file else ""))
        if self.auth in ("microsoft", "google") and not self.imap_user:
            raise ConfigError(f"MAILBOT_IMAP_USER must be set with MAILBOT_AUTH={self.auth} (the mailbox to sign in "
                              f"as, e.g. complaints@1mm.org.uk)")
        if self.imap_host and not self.imap_user:
            raise ConfigError("MAILBOT_IMAP_USER must be set with MAILBOT_IMAP_HOST")
        if self.imap_host and self.auth == "password" and not self.imap_password:
            raise ConfigError("MAILBOT_IMAP_USER and MAILBOT_IMAP_PASSWORD must be set with MAILBOT_IMAP_HOST")
        if self.secret and len(self.secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"MAILBOT_SECRET: must be at least {MIN_SECRET_BYTES} bytes (got "
                              f"{len(self.secret.encode())}); make one with: python3 -c 'import secrets; "
                              f"print(secrets.token_hex(32))'")
        if self.smtp_user and not self.smtp_password and self.auth == "password":
            raise ConfigError("MAILBOT_SMTP_PASSWORD must be set with MAILBOT_SMTP_USER")
        if self.office_closes <= self.office_opens:
            raise ConfigError("MAILBOT_OFFICE_CLOSES must be later than MAILBOT_OFFICE_OPENS")
        shipped = Path(__file__).resolve().parent.parent / "templates"
        if self.templates_dir == Path("templates") and not self.templates_dir.is_dir() and shipped.is_dir():
            # Run from outside the checkout: use the templates that ship beside the code.
            self.templates_dir = shipped
        if not self.templates_dir.is_dir():
            raise ConfigError(f"MAILBOT_TEMPLATES_DIR: {self.templates_dir} is not a directory")


def _variables(environ: Mapping[str, str | None]) -> dict[str, str]:
    """The settings among some variables, by setting name: ``MAILBOT_IMAP_HOST`` (in any case) is imap_host."""
    found = {}
    for key, value in environ.items():
        if value is not None and key[:len(ENV_PREFIX)].upper() == ENV_PREFIX:
            name = key[len(ENV_PREFIX):].lower()
            if name not in found or key.isupper():  # MAILBOT_X over mailbot_x, whatever the order
                found[name] = value
    return found


def _env_file() -> dict[str, str]:
    """The settings in the working directory's .env file, read as python-dotenv reads it (quotes, ``export``,
    ``${VAR}``), if there is one."""
    if not os.path.isfile(ENV_FILE):
        return {}
    from dotenv import dotenv_values

    try:
        return _variables(dotenv_values(ENV_FILE, encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = "it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror or str(exc)
        raise ConfigError(f"{Path(ENV_FILE).resolve()} cannot be read ({reason}): mend it, or remove it and set "
                          f"the MAILBOT_* variables in the environment") from None


def load_settings(**overrides: object) -> Settings:
    """Read and check the configuration, or raise ConfigError with one line naming the variable."""
    settings = Settings(**overrides)
    settings.check()
    return settings
