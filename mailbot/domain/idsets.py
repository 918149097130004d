"""Compact sets and flags of row ids, for work that must touch every open case without holding each one.

The digest decides, per recipient, whether each open case may be shown and which cases it has already counted.
A ``set`` or ``dict`` of 50,000 ids takes 3-5 MB (an int object and a slot each); these take one bit or one byte
per id up to the largest id seen: ~6 KB and ~50 KB at 50,000. Ids are the database's own (autoincrement or a
sequence), so they run close to the number of rows ever written. One from outside that range (a negative id, or
one past ``DENSE_LIMIT``) goes to a small dict instead, so a stray value costs a slot, never a huge array.
"""

from __future__ import annotations

# Past this id the arrays would pass a few megabytes: such ids are kept in a dict instead.
DENSE_LIMIT = 1 << 24


def _reach(buffer: bytearray, index: int) -> None:
    """Grow ``buffer`` with zeros to hold ``index``, by half again at least, so growing costs little per id."""
    if index >= len(buffer):
        buffer.extend(bytes(max(index + 1 - len(buffer), len(buffer) // 2)))


class IdSet:
    """A set of non-negative row ids, one bit each."""

    __slots__ = ("_bits", "_sparse", "_count")

    def __init__(self) -> None:
        self._bits = bytearray()
        self._sparse: set[int] = set()
        self._count = 0

    def add(self, row_id: int) -> bool:
        """Add ``row_id``; True when it was not there before."""
        if not 0 <= row_id < DENSE_LIMIT:
            if row_id in self._sparse:
                return False
            self._sparse.add(row_id)
            self._count += 1
            return True
        byte, bit = row_id >> 3, 1 << (row_id & 7)
        _reach(self._bits, byte)
        if self._bits[byte] & bit:
            return False
        self._bits[byte] |= bit
        self._count += 1
        return True

    def __contains__(self, row_id: object) -> bool:
        if not isinstance(row_id, int):
            return False
        if not 0 <= row_id < DENSE_LIMIT:
            return row_id in self._sparse
        byte = row_id >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (row_id & 7)))

    def __len__(self) -> int:
        return self._count


class IdFlags:
    """A yes/no decision per row id, remembered in a byte each; ``get`` is None for an id not decided yet."""

    __slots__ = ("_bytes", "_sparse")

    _UNDECIDED, _NO, _YES = 0, 1, 2

    def __init__(self) -> None:
        self._bytes = bytearray()
        self._sparse: dict[int, bool] = {}

    def set(self, row_id: int, value: bool) -> None:
        if not 0 <= row_id < DENSE_LIMIT:
            self._sparse[row_id] = value
            return
        _reach(self._bytes, row_id)
        self._bytes[row_id] = self._YES if value else self._NO

    def get(self, row_id: int) -> bool | None:
        if not 0 <= row_id < DENSE_LIMIT:
            return self._sparse.get(row_id)
        if row_id >= len(self._bytes):
            return None
        flag = self._bytes[row_id]
        return None if flag == self._UNDECIDED else flag == self._YES
