"""The local mode's mail store: plain Maildirs under the data dir, one for inbound, one for sent letters."""

from __future__ import annotations

import mailbox
from pathlib import Path


class MaildirTransport:
    """Delivers letters into a local Maildir instead of an SMTP server (local mode without MAILBOT_SMTP_HOST)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.box = mailbox.Maildir(str(path), create=True)

    async def send(self, raw: bytes, mail_from: str, recipients: list[str]) -> str | None:
        envelope = f"X-Mailbot-Envelope-From: {mail_from}\r\nX-Mailbot-Envelope-To: {', '.join(recipients)}\r\n"
        self.box.add(envelope.encode() + raw)
        return None

    async def close(self) -> None:
        return None
