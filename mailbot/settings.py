"""One Settings object, read from the environment (and a .env file) once at start-up.

Nothing else in the bot reads ``os.environ``. A bad value stops start-up with one line that names
the variable, so an operator can fix a deployment without reading a traceback.
"""

from __future__ import annotations

import re
import secrets
from datetime import time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mailbot.domain.attachments import parse_size
from mailbot.files import write_private_file
from mailbot.mail.oauth import MICROSOFT_AUTHORITY, TokenSource, TokenSpec, token_source


class ConfigError(Exception):
    """A misconfiguration, explained in one line."""


# A signing key shorter than this is refused: HMAC keys want at least the hash's 32 bytes.
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MAILBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    address: str = "complaints@1mm.org.uk"
    org_name: str = "One Million Mentors"

    imap_host: str | None = None
    imap_port: int | None = Field(default=None, ge=1, le=65535)
    imap_user: str | None = None
    imap_password: str | None = None
    imap_security: Literal["ssl", "starttls", "none"] = "ssl"
    imap_folder: str = "INBOX"
    imap_processed_folder: str | None = None
    # What a new database does with mail already in the mailbox: unset stops start-up and asks.
    first_run: Literal["process-existing", "skip-existing"] | None = None
    # How often to poll when IDLE is missing or as a safety net beside it, in seconds.
    imap_poll_interval: float = Field(default=60.0, gt=0)
    # Servers drop an IDLE after 30 minutes (RFC 2177); we renew well before that.
    imap_idle_renew: float = Field(default=600.0, gt=0)

    # How the bot signs in to IMAP and SMTP: a password, or an OAuth2 access token (XOAUTH2) from Microsoft
    # 365 (msal, an app registration), Google Workspace (a service account) or a command that prints one.
    auth: Literal["password", "microsoft", "google", "command"] = "password"
    # The log: a line per message and per letter. "json" for a log collector.
    log_format: Literal["text", "json"] = "text"
    # With a real mailbox the bot refuses the fictional sample staff directory; "allow" lets a trial run on it.
    sample_directory: Literal["refuse", "allow"] = "refuse"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None
    oauth_token_command: str | None = None
    ms_tenant_id: str | None = None
    ms_client_id: str | None = None
    ms_client_secret: str | None = None
    ms_cert_file: Path | None = None
    ms_cert_thumbprint: str | None = None
    ms_authority: str = MICROSOFT_AUTHORITY
    google_service_account_file: Path | None = None

    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"

    data_dir: Path = Path("data")
    database_url: str | None = None
    templates_dir: Path = Path("templates")
    timezone: str = "Europe/London"
    secret: str | None = None

    # Years after a case closes that its personal data is kept (the usual UK charity practice is six); then a
    # daily job anonymises it, keeping its figures. A case on #hold is kept until #release.
    retention_years: int = Field(default=6, ge=1, le=100)
    # Who is mailed when the bot cannot do its job (sign-in refused, mailbox unread, letters failing).
    admin_email: str | None = None
    # After a refused sign-in, how long to wait before trying again, in seconds (not every few seconds: a
    # provider may lock an account that keeps failing).
    sign_in_retry: float = Field(default=60.0, ge=1)

    # The HTTP listener (/healthz, /metrics): loopback by default; 0.0.0.0 in a container behind a proxy.
    # Port 0 turns it off.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)

    # How the web pages (the complaints form, each case's status page) are reached from outside, e.g.
    # https://complaints.1mm.org.uk behind the charity's reverse proxy. Letters link to them. Unset: in local
    # mode the listener's own address; otherwise no links (the form is still served).
    public_url: str | None = None
    # Whose X-Forwarded-For to believe (the reverse proxy): comma-separated addresses or CIDR ranges.
    trusted_proxies: str = ""
    # The form's limits: submissions per email address and per client address in an hour, the largest
    # request (attachments included), and files per submission.
    form_limit_per_email: int = Field(default=5, ge=1)
    form_limit_per_ip: int = Field(default=20, ge=1)
    form_max_bytes: str = "10M"
    form_max_files: int = Field(default=5, ge=0, le=20)

    # Local mode: the embedded SMTP listener used when no IMAP host is configured.
    local_smtp_host: str = "127.0.0.1"
    local_smtp_port: int = Field(default=2525, ge=1, le=65535)

    # Mail loops: at most this many automatic letters to one address in 24 hours.
    auto_reply_cap: int = Field(default=5, ge=1)
    office_opens: time = time(9, 0)
    office_closes: time = time(17, 30)
    # Extra closure days, e.g. "2026-12-24..2027-01-01,2027-04-01".
    closures: str = ""
    complaints_team_cc: str | None = None
    trusted_authserv_id: str | None = None
    # Microsoft 365 (whose Authentication-Results carry no authserv-id): the tenant id whose "sent from inside
    # the tenant" stamp proves a member of staff. Only where Exchange Online delivers to the mailbox.
    trust_exchange_internal: str | None = None
    # The most a staff notification carries in attachments: bytes, or with a K or M suffix.
    notification_attachments_max: str = "10M"
    # clamd's socket (a path, or host:port): attachments it flags are never sent to staff. Unset: no scan.
    clamd_socket: str | None = None
    # Web-form senders (comma-separated addresses): one carries many real complainants in Reply-To.
    form_senders: str = ""
    # "off" sends no scheduled digest from this instance (`mailbot digest` by hand still works).
    digest_time: time | None = time(8, 0)
    persistent_threshold: int = Field(default=10, ge=1)
    # The address letters publish for writing to the Chief Executive directly (the procedures' last stage).
    # Unset: the email of the member of staff with the ceo role in data/staff.toml.
    ceo_address: str | None = None

    @field_validator("address")
    @classmethod
    def _address_has_domain(cls, value: str) -> str:
        value = value.strip().lower()
        local, _, domain = value.partition("@")
        if not local or not domain or "+" in local:
            raise ValueError("must be a plain address like complaints@1mm.org.uk")
        return value

    @field_validator("ceo_address", "admin_email", mode="before")
    @classmethod
    def _plain_or_unset(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        value = value.strip().lower()
        if not value:
            return None
        local, _, domain = value.partition("@")
        if not local or not domain or "." not in domain or any(c in value for c in " <>,;"):
            raise ValueError("must be a plain address like ceo@1mm.org.uk")
        return value

    @field_validator("public_url", mode="before")
    @classmethod
    def _public_url(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        value = value.strip().rstrip("/")
        if not value:
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("must be the address people reach the bot's pages at, like https://complaints.1mm.org.uk")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        from mailbot.domain.proxies import parse_networks

        parse_networks(value)
        return value

    @field_validator("trust_exchange_internal", mode="before")
    @classmethod
    def _tenant_id(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        value = value.strip().lower()
        if not value:
            return None
        if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value):
            raise ValueError("must be your Microsoft 365 tenant id, a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47 "
                             "(Entra admin centre, Overview, Tenant ID)")
        return value

    @field_validator("digest_time", mode="before")
    @classmethod
    def _digest_off(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("off", "none", "never"):
            return None
        return value

    @field_validator("notification_attachments_max", "form_max_bytes")
    @classmethod
    def _a_size(cls, value: str) -> str:
        parse_size(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @field_validator("first_run", "imap_processed_folder", "clamd_socket", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

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
        """Cross-field checks that pydantic cannot express on one field."""
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


def load_settings(**overrides: object) -> Settings:
    """Read and validate the configuration, or raise ConfigError with one line naming the variable."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        value = first.get("input")
        shown = "" if "password" in field or "secret" in field else f" (got {value!r})"
        raise ConfigError(f"MAILBOT_{field.upper()}: {first['msg']}{shown}") from None
    settings.check()
    return settings
