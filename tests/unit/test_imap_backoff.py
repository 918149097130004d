"""mail.imap's pure parts: after an outage of any length, new mail waits at most about 15 s for the reconnect
(next_backoff); a backlog is fetched in chunks bounded in count and in bytes (fetch_chunks)."""

from __future__ import annotations

import pytest

from mailbot.mail.imap import BACKOFF_START, fetch_chunks, next_backoff


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



MB = 1024 * 1024


@pytest.mark.parametrize("uids, sizes, expected", [
    # ordinary mail: FETCH_CHUNK (100) messages at a time
    (list(range(1, 251)), {uid: 2000 for uid in range(1, 251)},
     [list(range(1, 101)), list(range(101, 201)), list(range(201, 251))]),
    # large mail: as many as fit in the 24 MB budget, in order
    ([1, 2, 3, 4], {1: 10 * MB, 2: 10 * MB, 3: 10 * MB, 4: 1 * MB}, [[1, 2], [3, 4]]),
    # one larger than the budget comes alone, and the next starts afresh
    ([1, 2, 3], {1: 1 * MB, 2: 90 * MB, 3: 1 * MB}, [[1], [2], [3]]),
    # a size the server did not give counts as nothing (the count still limits)
    ([1, 2, 3, 4], {}, [[1, 2, 3, 4]]),
    ([1, 2, 3, 4], {1: 30 * MB}, [[1], [2, 3, 4]]),
    ([], {}, []),
])
def test_a_backlog_is_fetched_in_chunks_of_bounded_count_and_size(uids: list[int], sizes: dict[int, int],
                                                                  expected: list[list[int]]) -> None:
    assert fetch_chunks(uids, sizes) == expected
