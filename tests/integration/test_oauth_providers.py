"""Issue 14: MAILBOT_AUTH=microsoft and google, for real. msal and google-auth really call a local token
endpoint (tests.servers.TokenEndpoint, HTTPS on loopback) standing in for Microsoft's and Google's; the tokens it
grants are the only ones the real Dovecot (oauth2 passdb against an introspection endpoint) and SMTP sink take.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.integration.bot import Bot, Daemon, make_mail, new_bot
from tests.servers import SmtpSink, TokenEndpoint, TokenIntrospection, throwaway_dovecot

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


@dataclass
class Provider:
    bot: Bot
    endpoint: TokenEndpoint
    introspection: TokenIntrospection
    sink: SmtpSink

    def revoke(self, token: str) -> None:
        """The provider revokes a token: neither server takes it any more."""
        self.introspection.tokens.pop(token, None)
        self.sink.set_xoauth2_tokens(dict(self.introspection.tokens))


@pytest.fixture
def provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    introspection = TokenIntrospection({})
    try:
        with throwaway_dovecot(oauth2_introspection_url=introspection.url) as dovecot, \
                SmtpSink(tmp_path / "sink", xoauth2_tokens={}) as sink:
            def grant(token: str, user: str) -> None:
                introspection.tokens[token] = user
                sink.set_xoauth2_tokens(dict(introspection.tokens))

            endpoint = TokenEndpoint(tmp_path / "endpoint", grant)
            # The bot trusts the stand-in's certificate as it trusts Microsoft's and Google's: through requests.
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(endpoint.ca_file))
            bot = new_bot(tmp_path / "bot", dovecot, sink)
            bot.extra.update({"MAILBOT_IMAP_PASSWORD": ""})
            try:
                yield Provider(bot, endpoint, introspection, sink)
            finally:
                endpoint.close()
    finally:
        introspection.close()


def microsoft(p: Provider, secret: str = "app-secret") -> None:
    p.bot.extra.update({"MAILBOT_AUTH": "microsoft", "MAILBOT_MS_TENANT_ID": p.endpoint.tenant,
                        "MAILBOT_MS_CLIENT_ID": "app-id", "MAILBOT_MS_CLIENT_SECRET": secret,
                        "MAILBOT_MS_AUTHORITY": p.endpoint.url})


def google(p: Provider) -> None:
    key = p.endpoint.google_key_file(p.bot.root / "service-account.json")
    p.bot.extra.update({"MAILBOT_AUTH": "google", "MAILBOT_GOOGLE_SERVICE_ACCOUNT_FILE": str(key)})


def test_microsoft_client_credentials_sign_in_to_both_servers(provider: Provider) -> None:
    microsoft(provider)
    provider.bot.append(make_mail(frm="jane@example.com", subject="Complaint"), internaldate=T0)
    provider.bot.once(now=T0 + timedelta(seconds=1))
    assert [letter.rcpt_tos for letter in provider.bot.letters("acknowledgement")] == [["jane@example.com"]]
    # msal really asked the stand-in: the tenant's OpenID configuration, then client credentials.
    assert provider.endpoint.requests[:2] == [
        f"GET /{provider.endpoint.tenant}/v2.0/.well-known/openid-configuration",
        f"POST /{provider.endpoint.tenant}/oauth2/v2.0/token"]
    assert provider.introspection.tokens and set(provider.introspection.asked) <= set(provider.endpoint.granted)
    # msal's token cache is kept in the data dir, private; the status note has the expiry and no token.
    cache = provider.bot.data_dir / "msal-token-cache.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    note = json.loads((provider.bot.data_dir / "token-state.json").read_text())
    assert note["provider"] == "microsoft" and note["expires_at"]
    assert provider.endpoint.granted[0] not in json.dumps(note)


def test_microsoft_a_wrong_secret_is_said_plainly_by_auth_test(provider: Provider) -> None:
    microsoft(provider, secret="not-the-secret")
    result = provider.bot.cli("auth", "test", check=False)
    assert result.returncode != 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("IMAP") and "sign-in refused" in line and "invalid_client" in line for line in lines)
    assert any(line.startswith("SMTP") and "sign-in refused" in line and "AADSTS7000215" in line for line in lines)
    assert lines[-1] == (f"Sign-in failed; the bot signs in with an OAuth2 token from Microsoft Entra ID for app "
                         f"app-id in tenant {provider.endpoint.tenant} (XOAUTH2).")
    assert "not-the-secret" not in result.stdout + result.stderr


def test_microsoft_a_token_without_the_mailbox_permission_is_refused_by_the_servers(provider: Provider) -> None:
    """The tenant grants a token, but the app lacks IMAP.AccessAsApp / SMTP.SendAsApp: the servers refuse it."""
    microsoft(provider)
    provider.endpoint.grant_unusable = True
    result = provider.bot.cli("auth", "test", check=False)
    assert result.returncode != 0
    assert "IMAP" in result.stdout and "sign-in refused" in result.stdout
    assert not any(token in result.stdout + result.stderr for token in provider.endpoint.granted)


def test_microsoft_a_revoked_cached_token_is_replaced_at_once(provider: Provider) -> None:
    microsoft(provider)
    provider.bot.append(make_mail(frm="jane@example.com", subject="First"), internaldate=T0)
    provider.bot.once(now=T0 + timedelta(seconds=1))
    first = provider.endpoint.granted[-1]
    provider.revoke(first)  # still in msal's cache on disk, refused by both servers now
    provider.bot.append(make_mail(frm="ken@example.com", subject="Second"), internaldate=T0 + timedelta(minutes=1))
    provider.bot.once(now=T0 + timedelta(minutes=1, seconds=1))
    assert provider.bot.letters("acknowledgement", to="ken@example.com")  # read and answered in the same pass
    assert provider.endpoint.granted[-1] != first


def test_google_service_account_signs_in_as_the_mailbox(provider: Provider) -> None:
    google(provider)
    provider.bot.append(make_mail(frm="jane@example.com", subject="Complaint"), internaldate=T0)
    provider.bot.once(now=T0 + timedelta(seconds=1))
    assert [letter.rcpt_tos for letter in provider.bot.letters("acknowledgement")] == [["jane@example.com"]]
    assert "POST /google/token" in provider.endpoint.requests
    assert set(provider.introspection.asked) <= set(provider.endpoint.granted)


def test_google_without_delegation_for_the_mailbox_is_refused_plainly(provider: Provider) -> None:
    google(provider)
    provider.endpoint.user = "someone-else"  # delegation covers another subject, not this mailbox
    result = provider.bot.cli("auth", "test", check=False)
    assert result.returncode != 0
    assert "Google sign-in refused" in result.stdout and "unauthorized_client" in result.stdout


def test_a_token_expiring_under_idle_is_renewed_and_mail_keeps_coming(provider: Provider) -> None:
    """Tokens that live 5 minutes and 8 seconds: the daemon signs in afresh 5 minutes before each expires, so
    once the first has expired (and the servers refuse it) mail is still read and answered."""
    microsoft(provider)
    provider.endpoint.expires_in = 308
    daemon = Daemon(provider.bot)
    daemon.start()
    try:
        daemon.wait_log("IMAP intake idling", timeout=30)
        first = provider.endpoint.granted[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not set(provider.introspection.asked) - {first}:
            time.sleep(0.2)
        assert set(provider.introspection.asked) - {first}, "the IDLE connection was not renewed with a new token"
        provider.revoke(first)  # the first token's hour is over
        provider.bot.append(make_mail(frm="late@example.com", subject="After the renewal"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not provider.bot.letters("acknowledgement", to="late@example.com"):
            time.sleep(0.2)
        assert provider.bot.letters("acknowledgement", to="late@example.com")
    finally:
        assert daemon.stop() == 0


def test_a_token_revoked_for_the_mailbox_alerts_the_administrator_once(provider: Provider) -> None:
    """The app loses IMAP.AccessAsApp: every token is refused by the mailbox (SMTP still takes them). Each pass
    fails to read the mailbox; the administrator hears once, not once a pass."""
    microsoft(provider)
    provider.bot.extra["MAILBOT_ADMIN_EMAIL"] = "ops@1mm.org.uk"
    provider.bot.once(now=T0)
    provider.introspection.tokens.clear()
    provider.endpoint.on_grant = lambda token, user: provider.sink.set_xoauth2_tokens({token: user})
    for minute in (1, 2):  # (Dovecot makes each failed sign-in from one address wait longer than the last)
        result = provider.bot.cli("run", "--once", "--now", (T0 + timedelta(minutes=minute)).isoformat(), check=False)
        assert result.returncode == 2, result.stderr
    alerts = provider.bot.letters("admin-alert", to="ops@1mm.org.uk")
    assert len(alerts) == 1 and "sign-in refused" in alerts[0].message["Subject"]
    status = json.loads(provider.bot.cli("status", "--json", check=False).stdout)
    assert status["state"] == "failing" and status["sign_in_state"]["imap"] == "refused"
    assert status["token_expires_at"]
