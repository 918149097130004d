"""mail.imap.next_backoff: after an outage of any length, new mail waits at most about 15 s for the reconnect."""

from __future__ import annotations

from mailbot.mail.imap import BACKOFF_START, next_backoff


def reconnect_delay_after(outage: float) -> float:
    """How long after the server is back the next connection attempt comes."""
    at, wait = 0.0, BACKOFF_START
    while at < outage:
        at += wait
        wait = next_backoff(wait)
    return at - outage


def test_the_backoff_doubles_then_stays_at_15_seconds() -> None:
    waits, wait = [], BACKOFF_START
    for _ in range(8):
        waits.append(wait)
        wait = next_backoff(wait)
    assert waits == [1, 2, 4, 8, 15, 15, 15, 15]


def test_mail_waits_at_most_15_seconds_after_any_outage() -> None:
    for outage in (5, 20, 75, 300, 3600):
        assert reconnect_delay_after(outage) <= 15
