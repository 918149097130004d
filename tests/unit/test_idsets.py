"""The compact id sets and flags the digest counts open cases with (domain/idsets.py)."""

from __future__ import annotations

import random

import pytest

from mailbot.domain.idsets import DENSE_LIMIT, IdFlags, IdSet


@pytest.mark.parametrize("ids", [
    [],
    [0],
    [7, 8, 7, 8, 0],
    [1, 2, 3, 1000, 999, 1000],
    [DENSE_LIMIT - 1, DENSE_LIMIT, DENSE_LIMIT + 1, DENSE_LIMIT],  # past the limit: kept apart
    [-1, -1, 5],                                                  # a stray negative id
], ids=["empty", "zero", "repeats", "sparse", "at the limit", "negative"])
def test_an_id_set_answers_as_a_set_would(ids: list[int]) -> None:
    ours, reference = IdSet(), set()
    for row_id in ids:
        assert ours.add(row_id) == (row_id not in reference)
        reference.add(row_id)
    assert len(ours) == len(reference)
    for probe in set(ids) | {0, 1, 6, 9, 1001, DENSE_LIMIT + 2, -2, 10**12}:
        assert (probe in ours) == (probe in reference), probe
    assert "7" not in ours and None not in ours  # not an id at all


def test_an_id_set_matches_a_set_over_many_random_ids() -> None:
    rng = random.Random(15)
    ours, reference = IdSet(), set()
    for _ in range(5000):
        row_id = rng.randrange(0, 20000)
        assert ours.add(row_id) == (row_id not in reference)
        reference.add(row_id)
    assert len(ours) == len(reference)
    assert all((n in ours) == (n in reference) for n in range(20010))


@pytest.mark.parametrize("writes, expected", [
    ([], {1: None}),
    ([(3, True)], {3: True, 2: None, 4: None}),
    ([(3, True), (3, False)], {3: False}),                    # the last decision stands
    ([(0, False), (50, True)], {0: False, 50: True, 25: None, 51: None}),
    ([(DENSE_LIMIT + 5, True), (-4, False)], {DENSE_LIMIT + 5: True, -4: False, DENSE_LIMIT: None}),
], ids=["nothing decided", "one", "changed", "far apart", "outside the dense range"])
def test_id_flags_remember_yes_no_and_undecided(writes: list[tuple[int, bool]], expected: dict[int, bool | None]) -> None:
    flags = IdFlags()
    for row_id, value in writes:
        flags.set(row_id, value)
    assert {row_id: flags.get(row_id) for row_id in expected} == expected


def test_fifty_thousand_ids_take_kilobytes_not_megabytes() -> None:
    ours, flags = IdSet(), IdFlags()
    for row_id in range(1, 50001):
        ours.add(row_id)
        flags.set(row_id, row_id % 3 == 0)
    assert len(ours._bits) < 12_000  # a bit an id, grown by half each time
    assert len(flags._bytes) < 100_000  # a byte an id
    assert flags.get(30000) is True and flags.get(30001) is False
