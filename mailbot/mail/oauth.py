"""Access tokens for signing in to IMAP and SMTP with XOAUTH2 (MAILBOT_AUTH).

- ``microsoft``: msal's client-credentials flow for an app registered in the tenant (IMAP.AccessAsApp and
  SMTP.SendAsApp), with a client secret or a certificate; msal's token cache is kept in the data dir.
- ``google``: google-auth's service account with domain-wide delegation, signing in as the mailbox.
- ``command``: MAILBOT_OAUTH_TOKEN_COMMAND prints an access token on its first line; it runs afresh for every
  connection, so a token the provider rotated or renewed is always the one used.

Every source is asked on every connection; msal and google-auth hand back their cached token until it is near
its expiry. A server that refuses a token makes the caller ``invalidate()`` the source, so the next connection
asks the provider afresh instead of offering a revoked token again. Each token obtained is noted (its expiry,
never the token) in ``token-state.json`` in the data dir for ``mailbot status``. Tokens are never logged.

A source is described by a ``TokenSpec`` (plain data), so the SMTP child process builds the same source.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

# How long a token command may take before the sign-in counts as failed.
TOKEN_COMMAND_SECONDS = 30.0
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
GOOGLE_SCOPE = "https://mail.google.com/"
TOKEN_STATE_FILE = "token-state.json"
MSAL_CACHE_FILE = "msal-token-cache.json"


class TokenError(Exception):
    """No access token could be had: the sign-in fails with this reason (the token itself is never in it)."""


@dataclass(frozen=True)
class TokenSpec:
    """Where tokens come from: ``kind`` is command, microsoft or google; the rest is that kind's settings."""

    kind: str
    state_dir: str | None = None  # where token-state.json (and msal's cache) live
    command: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    cert_file: str | None = None
    cert_thumbprint: str | None = None
    authority: str = MICROSOFT_AUTHORITY
    service_account_file: str | None = None
    subject: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenSpec:
        return cls(**data)


class TokenSource:
    """Hands out access tokens; ``expires_at`` is the last one's expiry when the provider says it."""

    # Whether it hands back a cached token (so a refused one is worth forgetting and asking again).
    caches = False

    def __init__(self, spec: TokenSpec) -> None:
        self.spec = spec
        self.expires_at: datetime | None = None
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            token, expires_at = self._fetch()
        self.expires_at = expires_at
        self._note(expires_at)
        return token

    def invalidate(self) -> None:
        """A server refused the last token: the next call asks the provider for a new one."""

    def _fetch(self) -> tuple[str, datetime | None]:
        raise NotImplementedError

    def _note(self, expires_at: datetime | None) -> None:
        if not self.spec.state_dir:
            return
        from mailbot.files import write_private_file

        state = {"provider": self.spec.kind, "obtained_at": datetime.now(timezone.utc).isoformat(),
                 "expires_at": expires_at.isoformat() if expires_at else None}
        try:
            write_private_file(Path(self.spec.state_dir) / TOKEN_STATE_FILE, json.dumps(state).encode())
        except OSError:  # the note is for `mailbot status`; signing in matters more
            pass


class CommandToken(TokenSource):
    """A token from MAILBOT_OAUTH_TOKEN_COMMAND (a shell-free command line, split as a shell would)."""

    def _fetch(self) -> tuple[str, datetime | None]:
        import shlex
        import subprocess  # here, not at the top: every command imports this module, few run a token command

        command = self.spec.command or ""
        try:
            done = subprocess.run(shlex.split(command), capture_output=True, text=True,
                                  timeout=TOKEN_COMMAND_SECONDS, check=False)
        except (OSError, ValueError) as exc:
            raise TokenError(f"MAILBOT_OAUTH_TOKEN_COMMAND could not run: {exc}") from None
        except subprocess.TimeoutExpired:
            raise TokenError(f"MAILBOT_OAUTH_TOKEN_COMMAND gave no token within {TOKEN_COMMAND_SECONDS:.0f} s") \
                from None
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines or not lines[0].strip():
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:300]
            raise TokenError(f"MAILBOT_OAUTH_TOKEN_COMMAND printed no token ({why})")
        return lines[0].strip(), None


class MicrosoftToken(TokenSource):
    """msal client credentials against the tenant; msal's cache (persisted in the data dir) is used first."""

    caches = True

    def __init__(self, spec: TokenSpec) -> None:
        super().__init__(spec)
        self._app: Any = None
        self._cache: Any = None

    def _cache_path(self) -> Path | None:
        return Path(self.spec.state_dir) / MSAL_CACHE_FILE if self.spec.state_dir else None

    def _application(self) -> Any:
        if self._app is not None:
            return self._app
        import msal

        spec = self.spec
        cache = msal.SerializableTokenCache()
        path = self._cache_path()
        if path is not None and path.exists():
            try:
                cache.deserialize(path.read_text())
            except (OSError, ValueError):
                pass  # a damaged cache only costs one more token request
        credential: Any = spec.client_secret
        if spec.cert_file:
            try:
                key = Path(spec.cert_file).read_text()
            except OSError as exc:
                raise TokenError(f"MAILBOT_MS_CERT_FILE: cannot read {spec.cert_file}: {exc.strerror}") from None
            credential = {"private_key": key, "thumbprint": spec.cert_thumbprint}
        base = spec.authority.rstrip("/")
        # Microsoft's own login host is known to msal. Any other (a national cloud, or a test's endpoint) is
        # taken as configured: msal's alias lookup for an unknown host always asks login.microsoftonline.com,
        # which a sovereign cloud or a closed network cannot reach. Its OpenID configuration is still read.
        discovery = None if base == MICROSOFT_AUTHORITY else False
        try:
            self._app = msal.ConfidentialClientApplication(
                spec.client_id, client_credential=credential, authority=f"{base}/{spec.tenant_id}",
                token_cache=cache, instance_discovery=discovery, timeout=30)
        except Exception as exc:  # noqa: BLE001  (msal raises ValueError and requests' errors alike)
            raise TokenError(f"Microsoft sign-in: cannot reach the authority {base}: {_first_line(exc)}") from None
        self._cache = cache
        return self._app

    def _fetch(self) -> tuple[str, datetime | None]:
        app = self._application()
        try:
            result = app.acquire_token_for_client(scopes=[MICROSOFT_SCOPE])
        except Exception as exc:  # noqa: BLE001  (a network failure)
            raise TokenError(f"Microsoft sign-in: no token: {_first_line(exc)}") from None
        if "access_token" not in result:
            raise TokenError(f"Microsoft sign-in refused: {result.get('error', 'no token')}: "
                             f"{_first_line(result.get('error_description', ''))}")
        self._save_cache()
        expires_in = result.get("expires_in")
        expires_at = datetime.now(timezone.utc) + timedelta(seconds=int(expires_in)) if expires_in else None
        return str(result["access_token"]), expires_at

    def invalidate(self) -> None:
        with self._lock:
            if self._cache is not None:
                for entry in list(self._cache.search(self._cache.CredentialType.ACCESS_TOKEN)):
                    self._cache.remove_at(entry)
                self._save_cache()

    def _save_cache(self) -> None:
        path = self._cache_path()
        if path is None or self._cache is None or not self._cache.has_state_changed:
            return
        from mailbot.files import write_private_file

        try:
            write_private_file(path, self._cache.serialize().encode())
            self._cache.has_state_changed = False
        except OSError:
            pass


class GoogleToken(TokenSource):
    """A Google Workspace service account with domain-wide delegation, acting as the mailbox."""

    caches = True

    def __init__(self, spec: TokenSpec) -> None:
        super().__init__(spec)
        self._credentials: Any = None

    def _fetch(self) -> tuple[str, datetime | None]:
        import google.auth.exceptions
        import google.auth.transport.requests
        from google.oauth2 import service_account

        if self._credentials is None:
            try:
                self._credentials = service_account.Credentials.from_service_account_file(
                    self.spec.service_account_file, scopes=[GOOGLE_SCOPE], subject=self.spec.subject)
            except (OSError, ValueError) as exc:
                raise TokenError(f"MAILBOT_GOOGLE_SERVICE_ACCOUNT_FILE: {_first_line(exc)}") from None
        credentials = self._credentials
        if not credentials.valid:
            try:
                credentials.refresh(google.auth.transport.requests.Request())
            except google.auth.exceptions.GoogleAuthError as exc:
                raise TokenError(f"Google sign-in refused: {_first_line(exc)}") from None
        expiry = credentials.expiry
        return str(credentials.token), expiry.replace(tzinfo=timezone.utc) if expiry else None

    def invalidate(self) -> None:
        with self._lock:
            self._credentials = None


SOURCES: dict[str, type[TokenSource]] = {"command": CommandToken, "microsoft": MicrosoftToken, "google": GoogleToken}


def token_source(spec: TokenSpec | None) -> TokenSource | None:
    return SOURCES[spec.kind](spec) if spec is not None else None


def invalidate(token: object) -> bool:
    """Tell a token source its last token was refused; True when it had one cached, so asking again may help."""
    if isinstance(token, TokenSource) and token.caches:
        token.invalidate()
        return True
    return False


def read_token_state(data_dir: Path) -> dict[str, Any] | None:
    """What the last sign-in noted: provider, obtained_at, expires_at (None when there is no note)."""
    try:
        return dict(json.loads((data_dir / TOKEN_STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _first_line(value: object) -> str:
    text = str(value).strip()
    return (text.splitlines() or [""])[0][:300]


def monotonic_until(expires_at: datetime | None, margin: timedelta = timedelta(minutes=5)) -> float | None:
    """The ``time.monotonic()`` at which a token expiring then should be renewed, or None."""
    if expires_at is None:
        return None
    return time.monotonic() + (expires_at - margin - datetime.now(timezone.utc)).total_seconds()
