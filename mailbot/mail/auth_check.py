"""``mailbot auth test``: one sign-in to each server, exactly as the bot signs in, and a plain answer."""

from __future__ import annotations

import asyncio

import aiosmtplib
from imapclient.exceptions import IMAPClientError, LoginError

from mailbot.mail.imap import ImapIntake
from mailbot.mail.oauth import TokenError
from mailbot.mail.smtp import SmtpTransport
from mailbot.settings import Settings


def check_imap(settings: Settings) -> tuple[bool, str]:
    from mailbot.bootstrap import imap_config

    cfg = imap_config(settings)
    where = f"IMAP {cfg.host}:{cfg.port} as {cfg.user}"
    intake = ImapIntake(cfg, hooks=None)  # type: ignore[arg-type]  (connect() never calls the hooks)
    try:
        intake.connect()
    except (LoginError, TokenError) as exc:
        return False, f"{where}: sign-in refused: {exc}"
    except (IMAPClientError, OSError) as exc:
        return False, f"{where}: could not connect or open {cfg.folder}: {type(exc).__name__}: {exc}"
    intake.disconnect()
    return True, f"{where}: signed in and opened {cfg.folder}"


def check_smtp(settings: Settings) -> tuple[bool, str]:
    assert settings.smtp_host
    user = settings.smtp_user_effective
    where = f"SMTP {settings.smtp_host}:{settings.smtp_port_effective}" + (f" as {user}" if user else "")
    transport = SmtpTransport(settings.smtp_host, settings.smtp_port_effective, settings.smtp_security, user,
                              settings.smtp_password, token=settings.token_source())

    async def sign_in() -> str | None:
        try:
            await transport.sign_in()
            return await transport.refusal_of(settings.address)
        finally:
            await transport.close()

    try:
        refused = asyncio.run(sign_in())
    except (aiosmtplib.SMTPAuthenticationError, TokenError) as exc:
        return False, f"{where}: sign-in refused: {exc}"
    except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
        return False, f"{where}: could not connect: {type(exc).__name__}: {exc}"
    done = "signed in" if user else "connected (no sign-in configured)"
    if refused is not None:
        # A 530 here is MAILBOT_SMTP_USER left unset where the server needs a sign-in: every letter would wait.
        return False, f"{where}: {done}, but it will not take a letter from {settings.address}: {refused}"
    return True, f"{where}: {done}; it takes letters from {settings.address}"
