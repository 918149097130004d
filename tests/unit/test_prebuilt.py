"""store.prebuilt: statements run straight on SQLite's driver store exactly what SQLAlchemy would."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

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
    update,
)
from sqlalchemy.engine import Engine

from mailbot.store.db import from_db, make_engine, session, upgrade
from mailbot.store.models import MESSAGE_TABLE, MailMessage
from mailbot.store.prebuilt import Prebuilt

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
