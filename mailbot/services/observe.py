"""What the services tell an onlooker as they work (the /metrics adapter, ``mailbot.web.metrics``, listens).

The services call these plainly; the composition root decides who listens. Nothing here may block or fail.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def message(self, verdict: str) -> None:
        """An inbound message was taken in with this verdict (the chain's action)."""

    def letter(self, state: str, seconds: float | None = None) -> None:
        """A letter was sent, deferred or failed; ``seconds`` is how long the server took over a sent one."""

    def fetch_failed(self, auth: bool) -> None:
        """Reading the mailbox failed (``auth``: the sign-in was refused)."""


class Unobserved:
    """Nobody listening."""

    def message(self, verdict: str) -> None:
        return None

    def letter(self, state: str, seconds: float | None = None) -> None:
        return None

    def fetch_failed(self, auth: bool) -> None:
        return None
