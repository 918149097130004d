"""Cutting a run of items into batches by count and by bytes (a fetch of mail, a page of the outbox)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def sized_batches(items: Iterable[T], size_of: Callable[[T], int | None], count: int, budget: int) -> Iterator[list[T]]:
    """The items in order, in batches of at most ``count`` items and ``budget`` bytes by ``size_of`` (an unknown
    or negative size counts as nothing; an item larger than the budget goes alone, so every batch has one)."""
    batch: list[T] = []
    total = 0
    for item in items:
        size = max(size_of(item) or 0, 0)
        if batch and (len(batch) >= count or total + size > budget):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size
    if batch:
        yield batch
