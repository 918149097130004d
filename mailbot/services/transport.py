"""What the outbox worker needs from a way of sending mail (the SMTP and Maildir adapters implement it).

Kept apart from the worker so that an adapter (and the SMTP child process) can import it without
loading the database stack.
"""

from __future__ import annotations

from typing import Protocol

# The words a TemporaryFailure begins with when every letter would meet it (a refused sign-in, a refused sender)
# are the health rules': mailbot.domain.health.EVERY_LETTER_HELD.


class TemporaryFailure(Exception):
    """Try again later (4xx, connection refused, timeout)."""


class PermanentFailure(Exception):
    """The server refused the letter for good (5xx)."""


class Transport(Protocol):
    """Sends one message. Implementations own their connections; ``close`` releases them."""

    async def send(self, raw: bytes, mail_from: str, recipients: list[str]) -> str | None:
        """Returns None, or a note when some recipients were refused but the letter went out."""

    async def close(self) -> None: ...
