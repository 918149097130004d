"""Probes of what the bot costs, for tests that hold it there: what a fresh interpreter has loaded after one
`mailbot run --once` (start-up is most of what an idle pass costs, so tests hold it to the modules it needs; this
interpreter has imported everything), and how SQLite reads what a read asks (so tests hold the reads that run on
every pass or every health check to indexes, whatever the number of cases or letters)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from mailbot.store.db import reading


def run_once_probe(heavy: tuple[str, ...], then: str = "", shows: str = "", args: tuple[str, ...] = ()) -> str:
    """Python source that runs one pass (`mailbot run --once` and ``args``) and prints its exit code, those of
    ``heavy`` it loaded, and ``shows`` (an expression, evaluated after ``then``)."""
    extra = f", {shows}" if shows else ""
    argv = ["mailbot", "run", "--once", *args]
    return (f"import sys\nfrom mailbot import launch\nsys.argv = {argv!r}\ncode = launch.main()\n"
            f"{then}heavy = {heavy!r}\nprint(code, [m for m in heavy if m in sys.modules]{extra})\n")


def sqlite_plans(engine: Engine, read: Callable[[Connection], Any]) -> tuple[Any, list[str]]:
    """``read``'s answer on a reading connection of a SQLite ``engine``, and SQLite's plan of each query it ran
    (EXPLAIN QUERY PLAN, its steps joined with " / "; a statement without a plan, such as BEGIN, left out)."""
    statements: list[tuple[str, Any]] = []

    def keep(conn: object, cursor: object, statement: str, parameters: Any, context: object,
             executemany: bool) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        with reading(engine) as conn:
            answer = read(conn)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    with engine.connect() as conn:
        plans = [" / ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
                 for statement, parameters in statements]
    return answer, [plan for plan in plans if plan]
