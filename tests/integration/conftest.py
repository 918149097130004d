"""The bot, wired to a fresh Dovecot and SMTP sink for each test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.bot import Bot, new_bot
from tests.servers import DovecotServer, SmtpSink


@pytest.fixture
def bot(tmp_path: Path, dovecot: DovecotServer, smtp_sink: SmtpSink) -> Bot:
    return new_bot(tmp_path / "bot", dovecot, smtp_sink)


@pytest.fixture
def hand_over_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Intake waits, at the batch that tells of a backlog, until the delivery process has taken delivery over (or
    could not start). The bot goes on delivering while that process starts (~0.5 s), so a test's backlog of a few
    dozen messages would otherwise often be taken in, and sent, before it is ready, and the process never used."""
    import threading

    from mailbot import runtime
    from mailbot.mail.parse_pool import ParsePool

    settled = threading.Event()
    real_handed_over, real_delivery_process = runtime._handed_over, runtime.delivery_process

    def handed_over(delivery: object) -> None:
        real_handed_over(delivery)  # type: ignore[arg-type]
        settled.set()

    async def delivery_process(*args: object) -> object:
        started = await real_delivery_process(*args)  # type: ignore[arg-type]
        if started is None:
            settled.set()
        return started

    class WaitingPool(ParsePool):
        def __init__(self, *args: object, on_backlog: Callable[[], None] | None = None, **kwargs: object) -> None:
            def told() -> None:
                assert on_backlog is not None
                on_backlog()
                assert settled.wait(60), "the delivery process neither took over nor failed to start"

            super().__init__(*args, on_backlog=told if on_backlog else None, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime, "_handed_over", handed_over)
    monkeypatch.setattr(runtime, "delivery_process", delivery_process)
    monkeypatch.setattr(runtime, "ParsePool", WaitingPool)
