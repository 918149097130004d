"""What a PostgreSQL transaction takes ahead, so its INSERTs need no answer and can wait (``store.prebuilt``).

An INSERT that returns its new row's id costs a round trip of its own: the id is needed before the next
statement. Here a transaction takes ids from the table's sequence a few at a time (8, then 16, 32, up to 64:
one round trip for many rows) and writes them into its INSERTs itself. Ids left over when the transaction ends
are never used, as a sequence's numbers never are after a rollback: the ids keep their order within a
transaction, and a transaction never holds ids taken before it began, so two transactions' ids interleave no
more than they did when each INSERT took its own.

The year's reference counter (``1MM-YYYY-NNNN``) is the same kind of round trip: ``UPDATE ... RETURNING``. The
first case a transaction opens takes it that way, and with it the row's lock until the commit; no other
transaction can move the counter meanwhile, so the next references are counted here, and the counter is written
once, where it stands, before the COMMIT (nothing but this module reads it meanwhile) or before a SAVEPOINT.
Inside a savepoint the counter is read from the database each time (a savepoint rolled back puts it back there).

On SQLite (no round trips) nothing is taken ahead: ``new_id`` is None and the counter is always read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, bindparam, text, update
from sqlalchemy.engine import Connection

from mailbot.store import prebuilt
from mailbot.store.models import SEQUENCE_TABLE
from mailbot.store.prebuilt import Prebuilt

_IDS = "mailbot_ids_ahead"  # connection.info: table -> (ids still free, size of the last block)
_COUNTERS = "mailbot_counters"  # connection.info: year -> the last reference number this transaction gave
_UNWRITTEN = "mailbot_counters_unwritten"  # connection.info: years whose counter is ahead of its row

FIRST_BLOCK = 8
LARGEST_BLOCK = 64


# The sequence is named as a parameter cast once per statement: nextval(pg_get_serial_sequence(...)) resolved the
# name for every id, 2.7 us each against 0.5 (~14,000 ids a 2,000-complaint backlog, 6% of the server's time).
_NEXT_IDS = Prebuilt(text("SELECT nextval(CAST(:seq AS regclass)) FROM generate_series(1, :n)")
                     .bindparams(bindparam("seq"), bindparam("n", type_=Integer)))
_SEQUENCE_OF = Prebuilt(text("SELECT pg_get_serial_sequence(:quoted, 'id')"))
_SEQUENCES = "mailbot_sequences"  # connection.info: table -> its id sequence's name, for the connection's life


def _next_ids(connection: Connection, table: str, size: int) -> tuple[Prebuilt, dict[str, Any]]:
    """The statement and parameters that take ``size`` ids from ``table``'s sequence."""
    names = connection.info.setdefault(_SEQUENCES, {})
    if table not in names:
        # Once a connection: the catalog says which sequence the id column's default takes from.
        quoted = '"' + table.replace('"', '""') + '"'
        [[(names[table],)]] = prebuilt.rows_together(connection, [(_SEQUENCE_OF, {"quoted": quoted})],
                                                     before_waiting=True)
    return _NEXT_IDS, {"seq": names[table], "n": size}


_WRITE_COUNTER = Prebuilt(update(SEQUENCE_TABLE).where(SEQUENCE_TABLE.c.year == bindparam("seq_year"))
                          .values(last_seq=bindparam("last")))


def new_id(connection: Connection, table: str) -> int | None:
    """An id for a new row of ``table`` (its sequence's own), on PostgreSQL; None elsewhere (let the INSERT
    choose and return it)."""
    if connection.dialect.name != "postgresql" or not connection.in_transaction():
        return None
    free, size = _held(connection, table)
    if not free:
        # A sequence is outside the transaction: the writes waiting on the connection need not go first.
        size = min(size * 2, LARGEST_BLOCK)
        [rows] = prebuilt.rows_together(connection, [_next_ids(connection, table, size)], before_waiting=True)
        took_ids(connection, table, size, rows)
        free = _held(connection, table)[0]
    return free.pop()


def _held(connection: Connection, table: str) -> tuple[list[int], int]:
    """The ids this transaction holds for ``table`` (popped from the end) and the size of its last block."""
    return connection.info.setdefault(_IDS, {}).get(table, ([], FIRST_BLOCK // 2))


# The ids one complaint takes: its case's, and its message's and two letters'.
_ONE_COMPLAINT = {"case": 1, "message": 3}


def asks_for_ids(connection: Connection, complaints: int = 1) -> list[tuple[str, int, Prebuilt, dict[str, Any]]]:
    """Blocks of ids to ask for along with other questions (``repo.foresee``), so that the next ``complaints``
    complaints take their ids without a round trip of their own: (table, block size, statement, parameters) for
    each table with fewer ids left than they would take (PostgreSQL; none elsewhere)."""
    if connection.dialect.name != "postgresql" or not connection.in_transaction():
        return []
    asks = []
    for table, each in _ONE_COMPLAINT.items():
        free, size = _held(connection, table)
        wanted = each * complaints
        if len(free) < wanted:
            size = min(max(size * 2, wanted - len(free)), LARGEST_BLOCK)
            asks.append((table, size, *_next_ids(connection, table, size)))
    return asks


def took_ids(connection: Connection, table: str, size: int, rows: list[tuple[Any, ...]]) -> None:
    """A block of ``size`` ids the sequence gave, to use after any left of the last one."""
    free = _held(connection, table)[0]
    # Popped from the end: lowest first.
    connection.info[_IDS][table] = ([int(row[0]) for row in reversed(rows)] + free, size)


def counted(connection: Connection, year: int) -> int | None:
    """The year's next reference number if this transaction already holds the counter (it has numbered a case
    outside a savepoint); None when the database must be asked."""
    if connection.in_nested_transaction():
        connection.info.pop(_COUNTERS, None)  # a savepoint's numbers may be rolled back: ask each time
        return None
    counters = connection.info.get(_COUNTERS)
    if counters is None or year not in counters:
        return None
    counters[year] += 1
    connection.info.setdefault(_UNWRITTEN, set()).add(year)
    return counters[year]


def write_counters(connection: Connection) -> None:
    """The counters this transaction counted on, written where they stand (with the next statement)."""
    years = connection.info.pop(_UNWRITTEN, None)
    for year in sorted(years or ()):
        _WRITE_COUNTER.write(connection, {"seq_year": year, "last": connection.info[_COUNTERS][year]})


def hold_counter(connection: Connection, year: int, last: int) -> None:
    """The transaction took the year's counter, at ``last``: the next numbers can be counted here (PostgreSQL,
    outside a savepoint; elsewhere the counter is always read)."""
    if connection.dialect.name == "postgresql" and not connection.in_nested_transaction():
        connection.info.setdefault(_COUNTERS, {})[year] = last


prebuilt.last_writes.append(write_counters)


# After the commit's own listener (store.prebuilt's, registered first) has written the counters: nothing taken ahead
# outlives the connection's turn.
prebuilt.forget_when_done(_IDS, _COUNTERS, _UNWRITTEN, at_commit=True)
