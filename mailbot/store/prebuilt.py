"""Statements built once and, on SQLite, run straight on the driver's cursor.

Building a statement and its cache key costs SQLAlchemy several times what executing it does (~120 us
against ~25 us on SQLite), so the statements intake runs for every message are built once, at import,
with their values as bind parameters (``store.repo``, ``store.outbox``).

Intake runs about a dozen small statements per message. Even prebuilt, each one costs SQLAlchemy ~20 us
of execution context, cache lookup and result wrapping against ~3 us for SQLite itself, and during a
backlog intake is the bot's busiest thread. A ``Prebuilt`` compiles its statement once per
set of parameter names with SQLAlchemy (same SQL, same bind processing, column defaults filled in the
same way) and then hands SQLite the SQL string and a parameter list. On PostgreSQL through psycopg it hands the
driver the SQL with its %(name)s parameters and a mapping the same way (psycopg prepares a statement on the server
once it has run a few times), which took 8-12% of intake's CPU off in alternating runs. On any other database or
driver, or outside a transaction, or for anything it cannot plan, it runs the statement through SQLAlchemy as usual.

Results come back as SQLite returns them, without SQLAlchemy's result processing: use it for
statements whose results are integers or text (ids, references, counts), not dates.

On PostgreSQL a statement whose answer nobody reads (an INSERT with its id chosen beforehand, an UPDATE whose
row count does not matter) can be ``write``-n: it waits on the connection and goes out with the next statement
that does need an answer, all of them in one pipeline (psycopg's pipeline mode), so they cost one round trip
together instead of one each. Every way a statement can run on the connection writes the waiting ones first,
in the order they were written: a prebuilt read here, any statement through SQLAlchemy (``before_execute``), a
SAVEPOINT and the commit (a read whose caller knows no waiting write could change its answer may leave them
waiting: ``rows_together(before_waiting=True)``, for the sequences' ids and intake's questions); a rollback
drops them. Inside a savepoint a write runs at once, so a savepoint's failure is that savepoint's. A waiting
write that fails makes the statement that carried it fail (raised as SQLAlchemy's own exception for the
driver's error): the transaction is lost either way. The waiting INSERTs go table by table, parents first
(their foreign keys allow nothing else), each table's rows in the order they were written and in one statement
(``_unnest``); nothing moves past a waiting statement of any other kind. On SQLite, where a statement costs no
round trip, every write runs at once.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import Pool
from sqlalchemy.sql import Executable

Params = Mapping[str, Any]

_WAITING = "mailbot_waiting_writes"  # connection.info: (sql, values) written on PostgreSQL, not yet sent


@dataclass(frozen=True)
class _Plan:
    sql: str
    # Per parameter: the caller's key (or None for a fixed value), the fixed value, the processor; and for the
    # named style (psycopg's %(name)s), the parameter's name in the SQL.
    binds: tuple[tuple[str | None, Any, Callable[[Any], Any] | None], ...]
    names: tuple[str, ...] | None = None

    def values(self, params: Params) -> list[Any] | dict[str, Any]:
        out = []
        for key, fixed, process in self.binds:
            value = fixed if key is None else params[key]
            out.append(process(value) if process is not None and value is not None else value)
        return out if self.names is None else dict(zip(self.names, out))

    def execute(self, connection: Connection, params: Params) -> Any:
        """Run on the connection's driver connection (sqlite3 or psycopg), inside its transaction, after the
        writes waiting there; returns the driver's cursor."""
        driver = connection.connection.driver_connection
        values = self.values(params)
        if self.names is None:
            return driver.execute(self.sql, values)
        return _with_waiting(connection, driver, lambda: driver.execute(self.sql, values), self.sql, values)


class Prebuilt:
    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        # By database and parameter names: one process may use SQLite and PostgreSQL (the tests do).
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan | None] = {}

    # ---- running it --------------------------------------------------------------------------

    def rows(self, connection: Connection, params: Params) -> list[tuple[Any, ...]]:
        """Every row the statement returns (SELECT, or DML with RETURNING)."""
        plan = self._plan_for(connection, params)
        if plan is None:
            return [tuple(row) for row in connection.execute(self.statement, dict(params)).all()]
        return plan.execute(connection, params).fetchall()

    def scalar(self, connection: Connection, params: Params) -> Any:
        """The first column of the first row, or None when there is no row."""
        plan = self._plan_for(connection, params)
        if plan is None:
            return connection.execute(self.statement, dict(params)).scalar()
        rows = plan.execute(connection, params).fetchall()
        return rows[0][0] if rows else None

    def run(self, connection: Connection, params: Params) -> int:
        """Run it for its effect; returns the number of rows it changed."""
        plan = self._plan_for(connection, params)
        if plan is None:
            return connection.execute(self.statement, dict(params)).rowcount
        return plan.execute(connection, params).rowcount

    def run_many(self, connection: Connection, many: Sequence[Params]) -> None:
        """Run it once per parameter set (all with the same keys), in one driver call."""
        if not many:
            return
        plan = self._plan_for(connection, many[0])
        if plan is None:
            connection.execute(self.statement, [dict(p) for p in many])
            return
        driver = connection.connection.driver_connection
        if plan.names is None:
            driver.executemany(plan.sql, [plan.values(p) for p in many])
            return
        rows = [plan.values(p) for p in many]
        with driver.cursor() as cursor:  # psycopg: executemany is the cursor's
            _with_waiting(connection, driver, lambda: cursor.executemany(plan.sql, rows), plan.sql, rows)

    def write(self, connection: Connection, params: Params) -> None:
        """Run it for its effect, on PostgreSQL with the next statement that needs an answer (module docstring);
        at once where that cannot be (SQLite, a savepoint, a statement it cannot plan)."""
        plan = self._plan_for(connection, params)
        if plan is None or plan.names is None or connection.in_nested_transaction():
            self.run(connection, params)
            return
        connection.info.setdefault(_WAITING, []).append((plan.sql, plan.values(params)))

    def waiting(self, connection: Connection) -> list[dict[str, Any]]:
        """The values of this statement's writes waiting on the connection (as the driver will get them)."""
        mine = {plan.sql for plan in self._plans.values() if plan is not None}
        return [values for sql, values in connection.info.get(_WAITING, ()) if sql in mine]

    def write_many(self, connection: Connection, many: Sequence[Params]) -> None:
        """``write`` for each parameter set (all with the same keys)."""
        if not many:
            return
        plan = self._plan_for(connection, many[0])
        if plan is None or plan.names is None or connection.in_nested_transaction():
            self.run_many(connection, many)
            return
        connection.info.setdefault(_WAITING, []).extend((plan.sql, plan.values(p)) for p in many)

    # ---- planning ----------------------------------------------------------------------------

    def _plan_for(self, connection: Connection, params: Params) -> _Plan | None:
        # Outside a transaction SQLAlchemy must begin one (our BEGIN IMMEDIATE and writer turns live there).
        dialect = connection.dialect
        if not (dialect.name == "sqlite" or (dialect.name == "postgresql" and dialect.driver == "psycopg")) \
                or not connection.in_transaction():
            return None
        keys = tuple(params)
        try:
            return self._plans[dialect.name, keys]
        except KeyError:
            plan = self._plans[dialect.name, keys] = _plan(self.statement, dialect, keys)
            return plan


def _plan(statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    """The SQL and parameter order SQLAlchemy would use for these keys, or None to leave it to SQLAlchemy."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
    if compiled.positional and compiled.positiontup is not None:
        order, names = list(compiled.positiontup), None
    elif dialect.paramstyle == "pyformat":
        # psycopg: %(name)s, each name once in the SQL as SQLAlchemy wrote it.
        order = list(dict.fromkeys(_PYFORMAT.findall(compiled.string)))
        names = tuple(order)
    else:
        return None
    defaults = {}
    for column in getattr(compiled, "insert_prefetch", ()) or ():
        default = column.default
        if default is None or not default.is_scalar:
            return None  # a computed default: SQLAlchemy's execution context must work it out
        defaults[column.key] = default.arg
    if getattr(compiled, "update_prefetch", None):
        return None  # an UPDATE's Python-side onupdate values: also SQLAlchemy's to compute
    binds = []
    for name in order:
        if name not in compiled.binds:
            return None
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None and dialect.name == "sqlite" and _is_utc_datetime(bind.type, dialect):
            process = _utc_text(process)
        if name in keys:
            binds.append((name, None, process))
        elif name in defaults:
            binds.append((None, defaults[name], process))
        elif not bind.required:
            binds.append((None, bind.effective_value, process))
        else:
            return None
    return _Plan(compiled.string, tuple(binds), names)


_PYFORMAT = re.compile(r"%\((\w+)\)s")


def _is_utc_datetime(type_: Any, dialect: Dialect) -> bool:
    """SQLModel's ``UTCDateTime`` stored by SQLite's DATETIME in its default text form."""
    # Looked up, not imported: a UTCDateTime exists only once its module is loaded, and a process that never loaded
    # SQLModel (the delivery process writes through ``store.light_tables``) must not load it, with pydantic, only to
    # learn that (~150 ms of CPU and ~13 MB, in the middle of its first batch of "sent" marks).
    sqltypes = sys.modules.get("sqlmodel.sql.sqltypes")
    if sqltypes is None or type(type_) is not sqltypes.UTCDateTime:
        return False
    from sqlalchemy.dialects.sqlite import DATETIME

    stored = type_.impl_instance.dialect_impl(dialect)
    return isinstance(stored, DATETIME) and getattr(stored, "_storage_format", None) == DATETIME._storage_format


def _utc_text(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process`` (the column's own bind processor) for SQLite's DATETIME text, sooner for a datetime already in
    UTC, as ``store.db.to_db`` gives every value intake writes: SQLAlchemy takes it through ``UTCDateTime``'s
    check and conversion, then a %-format of seven fields (~3.7 us); ``isoformat`` writes the same text in ~2 us,
    and a complaint's rows carry about fifteen such values. Anything else (naive, another zone, a subclass) goes
    through ``process`` as before, errors included."""
    utc = timezone.utc
    isoformat = datetime.isoformat

    def text(value: Any) -> Any:
        if value.__class__ is datetime and value.tzinfo is utc:
            return isoformat(value, " ", "microseconds")[:-6]  # without "+00:00", as SQLite's DATETIME writes it
        return process(value)

    return text


# ---- the writes waiting on a PostgreSQL connection ----------------------------------------------------------


def rows_together(connection: Connection, asks: Sequence[tuple[Prebuilt, Params]],
                  before_waiting: bool = False) -> list[list[tuple[Any, ...]]]:
    """Each ask's rows, as ``Prebuilt.rows`` gives them; on PostgreSQL all in one round trip, with the waiting
    writes ahead of them; with ``before_waiting``, without them (they stay waiting): only for a caller that
    knows none of them could change the answers."""
    plans = [prebuilt._plan_for(connection, params) for prebuilt, params in asks]
    if not asks or any(plan is None or plan.names is None for plan in plans):
        return [prebuilt.rows(connection, params) for prebuilt, params in asks]
    driver = connection.connection.driver_connection
    cursors: list[Any] = []

    def run() -> None:
        for plan, (_, params) in zip(plans, asks):
            assert plan is not None
            cursors.append(driver.execute(plan.sql, plan.values(params)))

    _with_waiting(connection, driver, run, "(statements asked together)", None, pipeline=True,
                  send_waiting=not before_waiting)
    return [cursor.fetchall() for cursor in cursors]


def _with_waiting(connection: Connection, driver: Any, run: Callable[[], Any], sql: str, values: Any,
                  pipeline: bool = False, send_waiting: bool = True) -> Any:
    """``run()`` (psycopg calls), after the connection's waiting writes, in one pipeline with them (and in one
    pipeline anyway with ``pipeline``)."""
    waiting = _in_table_order(connection.info.pop(_WAITING, None) or []) if send_waiting else []
    try:
        if not waiting and not pipeline:
            return run()
        with driver.pipeline():
            with driver.cursor() as cursor:
                # A run of the same statement (a transaction's cases, letters, deadlines, events): an INSERT
                # as one statement of all its rows, anything else as one executemany.
                for waiting_sql, run_of in itertools.groupby(waiting, key=lambda write: write[0]):
                    rows = [row for _, row in run_of]
                    if len(rows) == 1:
                        cursor.execute(waiting_sql, rows[0])
                    elif (columns := _unnest(waiting_sql, connection.dialect)) is not None:
                        cursor.execute(columns[0], {name: [row[name] for row in rows] for name in columns[1]})
                    else:
                        cursor.executemany(waiting_sql, rows)
            return run()
    except driver.Error as exc:  # as SQLAlchemy would raise it, so callers catch one kind of error
        raise DBAPIError.instance(sql, values, exc, driver.Error, dialect=connection.dialect) from exc


# A run of waiting INSERTs into one table goes as one INSERT of all its rows, one array a column (``_unnest``):
# psycopg sends and polls the socket for every statement in a pipeline, and the server runs each statement's
# executor once. The statement's text is the same whatever the number of rows, so psycopg caches its parsing
# and the server keeps it prepared; the arrays go in binary.
# (SQLAlchemy may have compiled RETURNING the new id into it: nobody reads a waiting write's rows.)
_ONE_ROW_INSERT = re.compile(r'(INSERT INTO ("[^"]+"|\w+) \(([^()]*)\) )VALUES '
                             r"(\((?:%\(\w+\)s(?:::[A-Z][A-Z ]*(?:\(\d+\))?)?(?:, )?)+\))"
                             r"(?: RETURNING [\w.\", ]+)?")


@functools.lru_cache(maxsize=64)
def _one_row_insert(sql: str) -> tuple[str, str, tuple[str, ...], str] | None:
    """A waiting INSERT of one row of bound values into a table of ours, as its table, its head (up to
    ``VALUES``), its columns and its row; None for any other statement."""
    found = _ONE_ROW_INSERT.fullmatch(sql)
    if found is None or found.group(2).strip('"') not in _table_order():
        return None
    head, table, columns, row = found.groups()
    return table.strip('"'), head, tuple(column.strip().strip('"') for column in columns.split(",")), row


def _in_table_order(waiting: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The waiting writes in an order that sends each run of INSERTs table by table, parents first (by the
    tables' foreign keys), and each statement's rows together, in the order they were written; anything but
    an INSERT into a known table stays where it was, and nothing moves past it."""
    if not waiting:  # a read-only command's reads: the tables' order would import the ORM's classes (~0.1 s)
        return waiting
    order = _table_order()
    out: list[tuple[str, Any]] = []
    run: list[tuple[int, int, int, tuple[str, Any]]] = []  # (table's rank, statement's first place, place, write)
    first_seen: dict[str, int] = {}
    for index, write in enumerate(waiting):
        insert = _one_row_insert(write[0])
        if insert is None:
            out.extend(item[-1] for item in sorted(run))
            run, first_seen = [], {}
            out.append(write)
        else:
            run.append((order[insert[0]], first_seen.setdefault(write[0], index), index, write))
    out.extend(item[-1] for item in sorted(run))  # the places are all different: the writes are never compared
    return out


@functools.cache
def _table_order() -> dict[str, int]:
    from sqlmodel import SQLModel

    return {table.name: rank for rank, table in enumerate(SQLModel.metadata.sorted_tables)}


@functools.lru_cache(maxsize=64)
def _unnest(sql: str, dialect: Dialect) -> tuple[str, tuple[str, ...]] | None:
    """The one-row INSERT ``sql`` as an INSERT of any number of rows, one array per column (each parameter a
    list, the i-th row's value at i), and its parameters' names; None where that cannot be."""
    insert = _one_row_insert(sql)
    if insert is None:
        return None
    from sqlmodel import SQLModel

    table_name, head, columns, row = insert
    table = SQLModel.metadata.tables[table_name]
    names = tuple(_PYFORMAT.findall(row))
    if len(names) != len(columns) or any(column not in table.c for column in columns):
        return None
    arrays = ", ".join(f"%({name})b::{table.c[column].type.compile(dialect=dialect)}[]"
                       for name, column in zip(names, columns))
    return f"{head}SELECT * FROM unnest({arrays})", names


def send_waiting(connection: Connection) -> None:
    """The connection's waiting writes sent now, in one pipeline (before a statement SQLAlchemy runs)."""
    if connection.info.get(_WAITING):
        driver = connection.connection.driver_connection
        _with_waiting(connection, driver, lambda: None, "(writes waiting for the next statement)", None)


@event.listens_for(Engine, "before_execute")
def _before_other_statements(connection: Connection, *_: Any) -> None:
    send_waiting(connection)


# Called with the connection before a SAVEPOINT or the COMMIT sends what waits there, for writes kept back
# until then (store.ahead's reference counter).
last_writes: list[Callable[[Connection], None]] = []


@event.listens_for(Engine, "savepoint")
@event.listens_for(Engine, "commit")
def _before_savepoint_or_commit(connection: Connection, *_: Any) -> None:
    for write in last_writes:
        write(connection)
    send_waiting(connection)


def forget_when_done(*keys: str, at_commit: bool = False, at_checkin: bool = True) -> None:
    """What a transaction keeps in its connection's info under ``keys``, dropped at its rollback (and at its commit
    with ``at_commit``), and with ``at_checkin`` when the connection goes back to the pool, however the transaction
    ended: nothing outlives the connection's turn.

    A connection thrown away mid-transaction (``invalidate``, as after losing the server) still has its transaction
    rolled back, and asking its info then raises PendingRollbackError: that rollback failed, with it the session's
    close, and the error that threw the connection away was hidden behind it. It is left alone: the pool empties
    its info itself."""
    def drop(connection: Connection, *_: Any) -> None:
        if not connection.invalidated:
            for key in keys:
                connection.info.pop(key, None)

    def drop_at_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            for key in keys:
                record.info.pop(key, None)

    if at_commit:
        event.listen(Engine, "commit", drop)
    event.listen(Engine, "rollback", drop)
    if at_checkin:
        event.listen(Pool, "checkin", drop_at_checkin)


forget_when_done(_WAITING)  # a rollback drops the writes waiting; a commit has sent them
