"""Issue 14, first part: signing in with an OAuth2 access token (XOAUTH2) from MAILBOT_OAUTH_TOKEN_COMMAND, against
a real Dovecot whose oauth2 passdb asks a token introspection endpoint on loopback, and an SMTP sink that requires
AUTH XOAUTH2."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.integration.bot import Bot, make_mail, new_bot
from tests.servers import SmtpSink, TokenIntrospection, throwaway_dovecot

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


@dataclass
class OAuthWorld:
    bot: Bot
    introspection: TokenIntrospection
    sink: SmtpSink
    token_file: Path

    def token(self, value: str) -> None:
        """What the token command prints from now on (as a provider's rotated token would be)."""
        self.token_file.write_text(value + "\n")

    def servers_accept(self, *tokens: str) -> None:
        self.introspection.tokens = {t: "complaints" for t in tokens}
        self.sink.set_xoauth2_tokens({t: "complaints" for t in tokens})


@pytest.fixture
def oauth(tmp_path: Path) -> Iterator[OAuthWorld]:
    introspection = TokenIntrospection({"token-1": "complaints"})
    try:
        with throwaway_dovecot(oauth2_introspection_url=introspection.url) as dovecot, \
                SmtpSink(tmp_path / "sink", xoauth2_tokens={"token-1": "complaints"}) as sink:
            token_file = tmp_path / "token.txt"
            token_file.write_text("token-1\n")
            script = tmp_path / "print-token"
            script.write_text(f"#!/bin/sh\ncat {token_file}\n")
            script.chmod(0o755)
            bot = new_bot(tmp_path / "bot", dovecot, sink)
            bot.extra.update({"MAILBOT_AUTH": "command", "MAILBOT_OAUTH_TOKEN_COMMAND": str(script),
                              "MAILBOT_IMAP_PASSWORD": ""})
            yield OAuthWorld(bot, introspection, sink, token_file)
    finally:
        introspection.close()


def test_the_bot_signs_in_to_both_servers_with_the_token(oauth: OAuthWorld) -> None:
    oauth.bot.append(make_mail(frm="jane@example.com", subject="Complaint"), internaldate=T0)
    oauth.bot.once(now=T0 + timedelta(seconds=1))
    assert [letter.rcpt_tos for letter in oauth.bot.letters("acknowledgement")] == [["jane@example.com"]]
    assert "token-1" in oauth.introspection.asked  # Dovecot really asked about the bot's token
    assert "mech=XOAUTH2" in oauth.bot.dovecot.log_path.read_text() or \
        "method=XOAUTH2" in oauth.bot.dovecot.log_path.read_text()


def test_mailbot_auth_test_says_what_worked(oauth: OAuthWorld) -> None:
    result = oauth.bot.cli("auth", "test")
    assert "IMAP" in result.stdout and "signed in and opened INBOX" in result.stdout
    assert "SMTP" in result.stdout and "as complaints: signed in" in result.stdout
    assert "token-1" not in result.stdout + result.stderr  # the token is never printed


def test_a_revoked_token_is_refused_plainly_and_no_letter_fails_for_good(oauth: OAuthWorld) -> None:
    oauth.servers_accept("token-2")  # the provider revoked token-1
    result = oauth.bot.cli("auth", "test", check=False)
    assert result.returncode == 1
    assert result.stdout.count("sign-in refused") == 2, result.stdout
    # A letter waiting to go is not failed for good because the sign-in was refused: it waits and is retried.
    oauth.servers_accept("token-1", "token-2")
    oauth.bot.append(make_mail(frm="jane@example.com", subject="Complaint"), internaldate=T0)
    oauth.bot.once(now=T0 + timedelta(seconds=1))
    oauth.sink.set_xoauth2_tokens({"token-2": "complaints"})
    oauth.bot.append(make_mail(frm="pat@example.com", subject="Another"), internaldate=T0)
    oauth.bot.once(now=T0 + timedelta(seconds=2))
    case = oauth.bot.case_json("1MM-2026-0002")
    ack = next(m for m in case["messages"] if m["kind"] == "acknowledgement")
    assert ack["delivery"] == "pending"
    assert "sign-in refused" in (ack.get("error") or "")


def test_a_rotated_token_is_used_at_the_next_sign_in(oauth: OAuthWorld) -> None:
    oauth.servers_accept("token-2")
    oauth.token("token-2")
    oauth.bot.append(make_mail(frm="jane@example.com", subject="Complaint"), internaldate=T0)
    oauth.bot.once(now=T0 + timedelta(seconds=1))
    assert [letter.rcpt_tos for letter in oauth.bot.letters("acknowledgement")] == [["jane@example.com"]]
