"""store.prebuilt: statements run straight on SQLite's driver store exactly what SQLAlchemy would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine

from mailbot.store.db import from_db, make_engine, session, upgrade
from mailbot.store.models import MESSAGE_TABLE, MailMessage
from mailbot.store.prebuilt import Prebuilt
from tests.servers import PostgresServer

REPO = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 16, 10, 0, 0, 123456, tzinfo=timezone.utc)
ON_THE_HOUR = datetime(2026, 11, 16, 11, 0, tzinfo=timezone.utc)  # no microseconds: the format must not change
INSERT_MESSAGE = Prebuilt(insert(MESSAGE_TABLE).returning(MESSAGE_TABLE.c.id))
ID_OF = Prebuilt(select(MESSAGE_TABLE.c.id).where(MESSAGE_TABLE.c.message_id == bindparam("mid")))
MARK = Prebuilt(update(MESSAGE_TABLE).where(MESSAGE_TABLE.c.id == bindparam("row_id"))
                .values(delivery="sent", sent_at=bindparam("when")))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    return engine


def letter(mid: str, at: datetime) -> dict[str, object]:
    return {"direction": "out", "message_id": mid, "to_addrs": "jane@example.org", "kind": "acknowledgement",
            "at": at, "raw": b"Subject: hi\r\n\r\nbody\r\n", "delivery": "pending"}


def test_rows_written_on_the_driver_read_back_like_rows_written_by_sqlalchemy(engine: Engine) -> None:
    with engine.begin() as conn:
        fast = INSERT_MESSAGE.scalar(conn, letter("fast@x", AT))  # in a transaction: straight on the driver
        fast_hour = INSERT_MESSAGE.scalar(conn, letter("fast-hour@x", ON_THE_HOUR))
        slow = conn.execute(INSERT_MESSAGE.statement, letter("slow@x", AT)).scalar_one()
        slow_hour = conn.execute(INSERT_MESSAGE.statement, letter("slow-hour@x", ON_THE_HOUR)).scalar_one()
        stored = {row.id: tuple(row[1:]) for row in conn.exec_driver_sql(
            "SELECT id, at, attempts, automatic, raw, delivery FROM message")}
    assert stored[fast] == stored[slow] and stored[fast_hour] == stored[slow_hour]  # the same text in the database
    with session(engine) as s:
        row = s.get(MailMessage, fast)
        assert row is not None
        assert (from_db(row.at), row.attempts, row.automatic, row.raw) == (AT, 0, False, letter("", AT)["raw"])
        assert from_db(s.get(MailMessage, fast_hour).at) == ON_THE_HOUR  # type: ignore[union-attr]


class _Later(datetime):
    """A datetime subclass: not the exact type the quick path takes."""


@pytest.mark.parametrize("when", [
    AT,
    ON_THE_HOUR,
    datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=timezone.utc),  # the last microsecond before BST
    datetime(1, 1, 1, tzinfo=timezone.utc),
    datetime(999, 12, 31, 23, 59, tzinfo=timezone.utc),  # a year of three digits: padded to four either way
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
    datetime(2026, 7, 1, 12, 30, 5, 17, tzinfo=timezone(timedelta(hours=1))),  # BST: converted to UTC
    datetime(2026, 7, 1, 12, 30, 5, 17, tzinfo=ZoneInfo("Europe/London")),
    datetime(2026, 7, 1, 11, 30, 5, 17, tzinfo=ZoneInfo("UTC")),  # UTC, but not timezone.utc
    _Later(2026, 11, 16, 10, 0, 0, 1, tzinfo=timezone.utc),
], ids=str)
def test_a_time_is_stored_as_the_same_text_as_sqlalchemy_stores_it(engine: Engine, when: datetime) -> None:
    """SQLite keeps times as text and compares them as text (deadlines due, the auto-reply cap's window): a
    prebuilt statement's quick way of writing a UTC time must give exactly SQLAlchemy's text, for any time."""
    with engine.begin() as conn:
        fast = INSERT_MESSAGE.scalar(conn, letter("fast@x", when))
        slow = conn.execute(INSERT_MESSAGE.statement, letter("slow@x", when)).scalar_one()
        stored = dict(conn.exec_driver_sql("SELECT id, at FROM message").all())
    assert stored[fast] == stored[slow]
    assert stored[fast] == when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f").rjust(26, "0")


def test_a_time_without_a_zone_is_refused_as_sqlalchemy_refuses_it(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(Exception) as prebuilt:
        INSERT_MESSAGE.scalar(conn, letter("naive@x", AT.replace(tzinfo=None)))
    with engine.begin() as conn, pytest.raises(Exception) as sqlalchemy:
        conn.execute(INSERT_MESSAGE.statement, letter("naive@x", AT.replace(tzinfo=None)))
    assert "timezone information" in str(prebuilt.value) and "timezone information" in str(sqlalchemy.value)


def test_reads_updates_and_many_at_once(engine: Engine) -> None:
    with engine.begin() as conn:
        ids = [INSERT_MESSAGE.scalar(conn, letter(f"m{n}@x", AT)) for n in range(3)]
        assert ID_OF.scalar(conn, {"mid": "m1@x"}) == ids[1]
        assert ID_OF.scalar(conn, {"mid": "nobody@x"}) is None
        assert ID_OF.rows(conn, {"mid": "m2@x"}) == [(ids[2],)]
        assert MARK.run(conn, {"row_id": ids[0], "when": ON_THE_HOUR}) == 1
        MARK.run_many(conn, [{"row_id": ids[1], "when": AT}, {"row_id": ids[2], "when": AT}])
    with session(engine) as s:
        marked = [(r.delivery, from_db(r.sent_at)) for r in (s.get(MailMessage, i) for i in ids) if r]
    assert marked == [("sent", ON_THE_HOUR), ("sent", AT), ("sent", AT)]


def test_outside_a_transaction_sqlalchemy_runs_it_and_begins_one(engine: Engine) -> None:
    with engine.connect() as conn:
        assert not conn.in_transaction()
        row_id = INSERT_MESSAGE.scalar(conn, letter("auto@x", AT))
        assert conn.in_transaction()  # begun the usual way (BEGIN IMMEDIATE, the writer's turn)
        conn.commit()
    with engine.connect() as conn:
        assert ID_OF.scalar(conn, {"mid": "auto@x"}) == row_id


def test_a_computed_default_is_left_to_sqlalchemy(engine: Engine) -> None:
    table = Table("numbered", MetaData(), Column("id", Integer, primary_key=True),
                  Column("label", String, default=lambda: "computed"), Column("name", String))
    with engine.begin() as conn:
        table.create(conn)
        Prebuilt(insert(table)).run(conn, {"name": "first"})
        assert conn.execute(select(table.c.label, table.c.name)).all() == [("computed", "first")]


def test_on_psycopg_a_plan_names_its_parameters_and_fills_the_fixed_ones() -> None:
    """PostgreSQL (psycopg) takes %(name)s parameters: the plan gives a mapping, with the LIMIT's own value."""
    from sqlalchemy import create_engine

    from mailbot.store import prebuilt, repo

    dialect = create_engine("postgresql+psycopg://u@127.0.0.1:1/db").dialect
    plan = prebuilt._plan(repo._FIRST_MESSAGE_ID.statement, dialect, ("case_id",))
    assert plan is not None and "%(case_id)s" in plan.sql and "?" not in plan.sql
    assert plan.values({"case_id": 7}) == {"case_id": 7, "param_1": 1}


# ---- PostgreSQL: writes that wait for the next statement ------------------------------------------------------

WRITE_MESSAGE = Prebuilt(insert(MESSAGE_TABLE))


@pytest.fixture
def pg_engine(postgres: PostgresServer) -> Iterator[Engine]:
    engine = make_engine(postgres.url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _on_the_server(conn: Connection) -> list[str]:
    """The transaction's message ids as the server has them, read on the driver itself (so nothing waiting is
    sent first)."""
    return [row[0] for row in conn.connection.driver_connection.execute("SELECT message_id FROM message ORDER BY id")]


def _committed(engine: Engine) -> list[str]:
    with engine.connect() as other:
        return [row[0] for row in other.execute(text("SELECT message_id FROM message ORDER BY id"))]


@pytest.mark.parametrize("database", ["engine", "pg_engine"])
def test_the_delivery_process_marks_letters_sent_without_loading_sqlmodel(request: pytest.FixtureRequest,
                                                                           database: str, tmp_path: Path) -> None:
    """The delivery process writes its "sent" marks through the light tables and never loads SQLModel and pydantic
    (~150 ms of CPU and ~13 MB): neither the quick way of writing a time (SQLite) nor the writes that wait for the
    next statement (PostgreSQL) may load them to see they are not needed."""
    engine: Engine = request.getfixturevalue(database)
    with engine.begin() as conn:
        row_id = INSERT_MESSAGE.scalar(conn, letter("sent@x", AT))
    marks = [{"letter_id": row_id, "sent_when": ON_THE_HOUR, "tries": 1, "note": None}]
    probe = ("import datetime\nimport sys\n"
             "from mailbot.store.db import make_engine\n"
             "from mailbot.store.outbox import mark_sent\n"
             f"engine = make_engine({engine.url.render_as_string(hide_password=False)!r})\n"
             "with engine.begin() as conn:\n"
             f"    mark_sent(conn, {marks!r})\n"
             "print([m for m in ('sqlmodel', 'pydantic', 'mailbot.store.models') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", probe],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    with session(engine) as s:
        row = s.get(MailMessage, row_id)
        assert row is not None and (row.delivery, from_db(row.sent_at), row.attempts) == ("sent", ON_THE_HOUR, 1)


def test_on_postgresql_a_write_waits_and_goes_with_the_next_statement_whatever_runs_it(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        conn.begin()
        WRITE_MESSAGE.write(conn, {**letter("a@x", AT), "id": 1})
        WRITE_MESSAGE.write(conn, {**letter("b@x", AT), "id": 2})
        assert _on_the_server(conn) == []  # waiting: no round trip of their own
        assert ID_OF.scalar(conn, {"mid": "b@x"}) == 2  # a prebuilt read takes them with it, in order
        WRITE_MESSAGE.write(conn, {**letter("c@x", AT), "id": 3})
        assert conn.execute(select(MESSAGE_TABLE.c.message_id).order_by(MESSAGE_TABLE.c.id)).scalars().all() \
            == ["a@x", "b@x", "c@x"]  # so does any statement through SQLAlchemy
        WRITE_MESSAGE.write_many(conn, [{**letter("d@x", AT), "id": 4}, {**letter("e@x", AT), "id": 5}])
        MARK.write(conn, {"row_id": 4, "when": AT})
        assert _on_the_server(conn) == ["a@x", "b@x", "c@x"]
        conn.commit()  # and the commit
    assert _committed(pg_engine) == ["a@x", "b@x", "c@x", "d@x", "e@x"]
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT delivery FROM message WHERE id = 4")).scalar() == "sent"


def test_on_postgresql_a_rollback_drops_waiting_writes_and_a_savepoint_writes_at_once(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        conn.begin()
        WRITE_MESSAGE.write(conn, {**letter("dropped@x", AT), "id": 1})
        conn.rollback()
        conn.begin()  # the same connection's next transaction does not send it either
        WRITE_MESSAGE.write(conn, {**letter("kept@x", AT), "id": 2})
        inner = conn.begin_nested()  # the SAVEPOINT takes the waiting write with it first
        WRITE_MESSAGE.write(conn, {**letter("in-savepoint@x", AT), "id": 3})
        assert _on_the_server(conn) == ["kept@x", "in-savepoint@x"]  # inside a savepoint: at once
        inner.rollback()
        conn.commit()
    assert _committed(pg_engine) == ["kept@x"]


def test_on_postgresql_a_waiting_write_that_fails_fails_the_statement_carrying_it(pg_engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    with pg_engine.connect() as conn:
        conn.begin()
        WRITE_MESSAGE.write(conn, {**letter("first@x", AT), "id": 1})
        WRITE_MESSAGE.write(conn, {**letter("same-id@x", AT), "id": 1})
        with pytest.raises(IntegrityError):  # SQLAlchemy's kind, as from any other statement
            ID_OF.scalar(conn, {"mid": "first@x"})
        conn.rollback()
        conn.begin()
        WRITE_MESSAGE.write(conn, {**letter("then@x", AT), "id": 2})
        conn.commit()
    assert _committed(pg_engine) == ["then@x"]


class _Counting:
    """Statements the driver is handed, and how many parameter sets each (psycopg's cursor, counted)."""

    def __init__(self, conn: Connection) -> None:
        import psycopg

        self.seen: list[tuple[str, int]] = []
        seen = self.seen

        class Cursor(psycopg.Cursor):  # type: ignore[type-arg]
            def execute(self, query, params=None, **kw):  # type: ignore[no-untyped-def]
                seen.append((str(query), 1))
                return super().execute(query, params, **kw)

            def executemany(self, query, params_seq, **kw):  # type: ignore[no-untyped-def]
                params_seq = list(params_seq)
                seen.append((str(query), len(params_seq)))
                return super().executemany(query, params_seq, **kw)

        conn.connection.driver_connection.cursor_factory = Cursor


def test_on_postgresql_a_run_of_waiting_inserts_goes_as_one_insert(pg_engine: Engine) -> None:
    rows = [{**letter(f"{n}@x", AT), "id": n, "raw": f"letter {n}".encode() * n, "last_error": f"e{n}",
             "sent_at": None} for n in range(1, 46)]
    rows[7]["last_error"], rows[8]["sent_at"] = None, ON_THE_HOUR  # NULLs and values mixed in a column
    with pg_engine.connect() as conn:
        conn.begin()
        counting = _Counting(conn)
        WRITE_MESSAGE.write_many(conn, rows[:3])
        MARK.write(conn, {"row_id": 2, "when": ON_THE_HOUR})  # not an INSERT: nothing moves past it
        WRITE_MESSAGE.write_many(conn, rows[3:])
        conn.commit()
    assert [(sql.split()[0], many) for sql, many in counting.seen] == [("INSERT", 1), ("UPDATE", 1), ("INSERT", 1)]
    assert _rows(pg_engine) == [(n, f"letter {n}".encode() * n) for n in range(1, 46)]
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT delivery, sent_at FROM message WHERE id = 2")).one() == ("sent", ON_THE_HOUR)
        assert conn.execute(text("SELECT last_error, sent_at FROM message WHERE id IN (8, 9) ORDER BY id")).all() \
            == [(None, None), ("e9", ON_THE_HOUR)]
        assert conn.execute(text("SELECT count(*) FROM message WHERE at = :at"), {"at": AT}).scalar() == 45


def test_on_postgresql_waiting_inserts_go_parents_first_each_table_in_the_order_written(pg_engine: Engine) -> None:
    from mailbot.store.models import CASE_TABLE

    write_case = Prebuilt(insert(CASE_TABLE))

    def case(n: int) -> dict[str, object]:
        return {"id": n, "ref": f"1MM-2026-{n:04d}", "year": 2026, "seq": n, "status": "open", "stage": 1,
                "procedure": "mentee", "complainant": f"p{n}@x", "from_addr": f"p{n}@x", "subject": "",
                "opened_at": AT, "stage_started_at": AT, "updated_at": AT}

    with pg_engine.connect() as conn:
        conn.begin()
        counting = _Counting(conn)
        for n in (1, 2, 3):  # as intake writes them: a case, then its messages
            write_case.write(conn, case(n))
            WRITE_MESSAGE.write(conn, {**letter(f"in{n}@x", AT), "direction": "in", "id": 10 * n, "case_id": n})
            WRITE_MESSAGE.write(conn, {**letter(f"out{n}@x", AT), "id": 10 * n + 1, "case_id": n})
        conn.commit()  # a message ahead of its case would have failed the foreign key
    assert [sql.split()[2] for sql, _ in counting.seen] == ['"case"', "message"]
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT id, case_id FROM message ORDER BY id")).all() == [
            (10, 1), (11, 1), (20, 2), (21, 2), (30, 3), (31, 3)]


def _rows(engine: Engine) -> list[tuple[int, bytes]]:
    with engine.connect() as conn:
        return [(row[0], bytes(row[1])) for row in conn.execute(text("SELECT id, raw FROM message ORDER BY id"))]


def test_on_postgresql_a_failing_row_in_an_insert_of_many_fails_the_statement_carrying_it(pg_engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    with pg_engine.connect() as conn:
        conn.begin()
        WRITE_MESSAGE.write_many(conn, [{**letter(f"{n}@x", AT), "id": n} for n in (1, 2, 3)]
                                 + [{**letter("again@x", AT), "id": 2}])
        with pytest.raises(IntegrityError):
            ID_OF.scalar(conn, {"mid": "1@x"})
        conn.rollback()
    assert _committed(pg_engine) == []
