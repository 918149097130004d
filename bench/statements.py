"""Every SQL statement the bot sends, handed to a callback: for the benchmarks that count them.

SQLAlchemy's cursor events miss the prebuilt statements (store.prebuilt), which go straight to the driver, so
the count is taken by the driver: SQLite's trace callback (with the values written into the text), or psycopg's
cursor and commit.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import event
from sqlalchemy.engine import Engine


def on_every_statement(engine: Engine, seen: Callable[[str], None],
                       round_trip: Callable[[], None] | None = None) -> Callable[[], None]:
    """Call ``seen`` with the text of each statement the engine's connections run from now on (its pool is
    emptied first, so every connection is a new one). On PostgreSQL, ``round_trip`` is called each time the
    driver waits for the server's answer: a statement on its own, a pipeline as it ends (however many statements
    it carried; an executemany is one), a commit.

    Returns what stops the counting. Count apart from what you time: SQLite's trace callback is given each
    statement written out with its values, and writing a letter's 8 KB out as hex took ~0.2 ms a letter."""
    engine.dispose()
    if engine.dialect.name == "sqlite":
        def _trace(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.set_trace_callback(seen)

        event.listen(engine, "connect", _trace)

        def stop_sqlite() -> None:
            event.remove(engine, "connect", _trace)
            engine.dispose()  # the traced connections go; the next ones are not traced

        return stop_sqlite
    import psycopg

    originals = [(psycopg.Cursor, "execute", psycopg.Cursor.execute),
                 (psycopg.Cursor, "executemany", psycopg.Cursor.executemany),
                 (psycopg.Connection, "commit", psycopg.Connection.commit),
                 (psycopg.Pipeline, "__exit__", psycopg.Pipeline.__exit__)]

    for name in ("execute", "executemany"):
        original = getattr(psycopg.Cursor, name)

        def counted(self, query, *rest, _original=original, _many=name == "executemany",
                    **kw):  # type: ignore[no-untyped-def]
            seen(query if isinstance(query, str) else str(query))
            if round_trip is not None and not _many and self.connection._pipeline is None:
                round_trip()
            return _original(self, query, *rest, **kw)

        setattr(psycopg.Cursor, name, counted)
    original_commit = psycopg.Connection.commit

    def counted_commit(self):  # type: ignore[no-untyped-def]
        seen("COMMIT")
        if round_trip is not None:
            round_trip()
        return original_commit(self)

    psycopg.Connection.commit = counted_commit  # type: ignore[method-assign]
    if round_trip is not None:
        original_exit = psycopg.Pipeline.__exit__

        def counted_exit(self, *exc):  # type: ignore[no-untyped-def]
            if self.level == 1:
                round_trip()
            return original_exit(self, *exc)

        psycopg.Pipeline.__exit__ = counted_exit  # type: ignore[method-assign]

    def stop_postgres() -> None:
        for owner, name, original in originals:
            setattr(owner, name, original)

    return stop_postgres
