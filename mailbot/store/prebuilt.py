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
SAVEPOINT and the commit; a rollback drops them. Inside a savepoint a write runs at once, so a savepoint's
failure is that savepoint's. A waiting write that fails makes the statement that carried it fail (raised as
SQLAlchemy's own exception for the driver's error): the transaction is lost either way. A run of the same
waiting INSERT goes as INSERTs of many rows each (a stage's deadlines, a commit's audit events). On SQLite,
where a statement costs no round trip, every write runs at once.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
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


# ---- the writes waiting on a PostgreSQL connection ----------------------------------------------------------


def rows_together(connection: Connection, asks: Sequence[tuple[Prebuilt, Params]]) -> list[list[tuple[Any, ...]]]:
    """Each ask's rows, as ``Prebuilt.rows`` gives them; on PostgreSQL all in one round trip, with the waiting
    writes ahead of them."""
    plans = [prebuilt._plan_for(connection, params) for prebuilt, params in asks]
    if not asks or any(plan is None or plan.names is None for plan in plans):
        return [prebuilt.rows(connection, params) for prebuilt, params in asks]
    driver = connection.connection.driver_connection
    cursors: list[Any] = []

    def run() -> None:
        for plan, (_, params) in zip(plans, asks):
            assert plan is not None
            cursors.append(driver.execute(plan.sql, plan.values(params)))

    _with_waiting(connection, driver, run, "(statements asked together)", None, pipeline=True)
    return [cursor.fetchall() for cursor in cursors]


def _with_waiting(connection: Connection, driver: Any, run: Callable[[], Any], sql: str, values: Any,
                  pipeline: bool = False) -> Any:
    """``run()`` (psycopg calls), after the connection's waiting writes, in one pipeline with them (and in one
    pipeline anyway with ``pipeline``)."""
    waiting = connection.info.pop(_WAITING, None) or []
    try:
        if not waiting and not pipeline:
            return run()
        with driver.pipeline():
            with driver.cursor() as cursor:
                # A run of the same statement (a stage's deadlines, a case's letters, a commit's events): an
                # INSERT as one statement of many rows, anything else as one executemany.
                for waiting_sql, run_of in itertools.groupby(waiting, key=lambda write: write[0]):
                    rows = [row for _, row in run_of]
                    if len(rows) == 1:
                        cursor.execute(waiting_sql, rows[0])
                    elif _insert_parts(waiting_sql) is not None:
                        for size, start in _row_blocks(len(rows)):
                            block = rows[start:start + size]
                            cursor.execute(_many_rows(waiting_sql, size), {
                                f"{name}_{i}": value for i, row in enumerate(block) for name, value in row.items()})
                    else:
                        cursor.executemany(waiting_sql, rows)
            return run()
    except driver.Error as exc:  # as SQLAlchemy would raise it, so callers catch one kind of error
        raise DBAPIError.instance(sql, values, exc, driver.Error, dialect=connection.dialect) from exc


# A run of waiting INSERTs goes as INSERTs of several rows each: psycopg sends and polls the socket for every
# statement in a pipeline, and the server runs each statement's executor once. The row counts used are few
# (1-8, then 16, 32 and 64), so that psycopg's cache of prepared statements keeps each table's few shapes.
_ROW_BLOCKS = (64, 32, 16, 8)
# (SQLAlchemy may have compiled RETURNING the new id into it: nobody reads a waiting write's rows.)
_INSERT_SQL = re.compile(r"(INSERT INTO [^;]+ VALUES )(\((?:%\(\w+\)s(?:::[A-Z][A-Z ]*(?:\(\d+\))?)?(?:, )?)+\))"
                         r"(?: RETURNING [\w.\", ]+)?")


@functools.lru_cache(maxsize=64)
def _insert_parts(sql: str) -> tuple[str, str] | None:
    """A waiting INSERT of one row of bound values, as its head and its row (None for any other statement)."""
    found = _INSERT_SQL.fullmatch(sql)
    return (found.group(1), found.group(2)) if found else None


def _row_blocks(count: int) -> list[tuple[int, int]]:
    """``count`` rows as (size, start) blocks: one block up to 8 rows, larger runs in blocks of 64, 32, 16
    and 8 and one of what is left."""
    blocks, start = [], 0
    for size in _ROW_BLOCKS:
        while count - start >= size and count - start > _ROW_BLOCKS[-1]:
            blocks.append((size, start))
            start += size
    if start < count:
        blocks.append((count - start, start))
    return blocks


@functools.lru_cache(maxsize=256)
def _many_rows(sql: str, size: int) -> str:
    """The INSERT ``sql`` for ``size`` rows, the i-th row's parameter ``name`` renamed ``name_i``."""
    parts = _insert_parts(sql)
    assert parts is not None
    head, row = parts
    return head + ", ".join(_PYFORMAT.sub(lambda m, i=i: f"%({m.group(1)}_{i})s", row) for i in range(size))


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
def _before_savepoint(connection: Connection, *_: Any) -> None:
    for write in last_writes:
        write(connection)
    send_waiting(connection)


@event.listens_for(Engine, "commit")
def _before_commit(connection: Connection) -> None:
    for write in last_writes:
        write(connection)
    send_waiting(connection)


@event.listens_for(Engine, "rollback")
def _drop_waiting(connection: Connection) -> None:
    connection.info.pop(_WAITING, None)


@event.listens_for(Pool, "checkin")
def _drop_at_checkin(_dbapi_connection: Any, record: Any) -> None:
    # However its transaction ended, nothing waiting outlives the connection's turn.
    if record is not None:
        record.info.pop(_WAITING, None)
