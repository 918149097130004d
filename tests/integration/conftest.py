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
def hand_over_first(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any backlog the reader tells of is handed to a delivery process (MAILBOT_DELIVERY_PROCESS_AT is 1,000 unless
    set), and intake waits, at the batch that tells of it, until the delivery process has taken delivery over (or
    could not start). The bot goes on delivering while that process starts (~0.5 s), so a test's backlog of a few
    dozen messages would otherwise often be taken in, and sent, before it is ready, and the process never used."""
    import threading

    from mailbot import runtime
    from mailbot.mail.parse_pool import MIN_BATCH, ParsePool

    bot.extra["MAILBOT_DELIVERY_PROCESS_AT"] = str(MIN_BATCH)
    settled, worth_it = threading.Event(), threading.Event()
    real_handed_over, real_delivery_process = runtime._handed_over, runtime.delivery_process
    real_worth = runtime.worth_a_delivery_process

    def worth_a_delivery_process(*args: object) -> bool:
        if real_worth(*args):  # type: ignore[arg-type]
            worth_it.set()
            return True
        return False

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
                if worth_it.is_set():  # else no delivery process is asked for (a test of the threshold)
                    assert settled.wait(60), "the delivery process neither took over nor failed to start"

            super().__init__(*args, on_backlog=told if on_backlog else None, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime, "worth_a_delivery_process", worth_a_delivery_process)
    monkeypatch.setattr(runtime, "_handed_over", handed_over)
    monkeypatch.setattr(runtime, "delivery_process", delivery_process)
    monkeypatch.setattr(runtime, "ParsePool", WaitingPool)
