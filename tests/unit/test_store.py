"""The store's transactions on SQLite are real: savepoints roll back alone, batches commit together."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import select

from mailbot.store import repo as store_repo
from mailbot.store.db import (
    WriterTurns,
    make_engine,
    open_database,
    reading,
    session,
    to_db,
    upgrade,
    writer_turns,
)
from mailbot.store.models import Case, RefSequence, Restriction
from tests.servers import PostgresServer

NOW = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


def _engine_for(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> Engine:
    """An upgraded engine on SQLite in tmp_path, or on the test's PostgreSQL server."""
    url = (request.getfixturevalue("postgres").url if database == "postgresql"
           else f"sqlite:///{tmp_path / 'db.sqlite'}")
    engine = make_engine(url)
    upgrade(engine)
    return engine


def test_a_rolled_back_savepoint_leaves_the_rest_of_the_transaction(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    with session(engine) as s:
        s.add(RefSequence(year=2026, last_seq=1))
        s.flush()
        savepoint = s.begin_nested()
        s.add(RefSequence(year=2027, last_seq=1))
        s.flush()
        savepoint.rollback()
        s.add(RefSequence(year=2028, last_seq=1))
        s.commit()
    with session(engine) as s:
        assert sorted(r.year for r in s.exec(select(RefSequence)).all()) == [2026, 2028]


def test_nothing_is_visible_to_others_before_the_commit(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    with session(engine) as writer:
        writer.add(RefSequence(year=2026, last_seq=1))
        savepoint = writer.begin_nested()
        writer.add(RefSequence(year=2027, last_seq=1))
        writer.flush()
        savepoint.commit()  # a released savepoint is not a commit
        # A plain reader (WAL lets it read while we write) must not see uncommitted rows.
        reader = sqlite3.connect(tmp_path / "db.sqlite")
        try:
            seen = [row[0] for row in reader.execute("SELECT year FROM refsequence")]
        finally:
            reader.close()
        assert seen == []
        writer.commit()


def test_two_writers_take_turns_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    upgrade(engine)
    errors: list[BaseException] = []

    def bump(times: int) -> None:
        try:
            for _ in range(times):
                with session(engine) as s:
                    # Read first, then write: the pattern that fails under the sqlite3 module's defaults.
                    row = s.get(RefSequence, 2026) or RefSequence(year=2026, last_seq=0)
                    row.last_seq += 1
                    s.add(row)
                    s.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(50,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session(engine) as s:
        assert s.get(RefSequence, 2026).last_seq == 200


def test_writers_of_one_process_get_the_database_in_the_order_they_asked(tmp_path: Path) -> None:
    # Intake begins its next transaction the moment it commits; a writer that asked meanwhile (the
    # outbox marking a letter sent) must go next, not wait for a gap that SQLite's polling may never see.
    engine = _migrated(tmp_path)
    order: list[str] = []
    first = session(engine)
    first.add(RefSequence(year=2026, last_seq=0))
    first.flush()  # the writer's turn is held from here to the commit

    def write(name: str, year: int) -> None:
        with session(engine) as s:
            s.add(RefSequence(year=year, last_seq=0))
            s.flush()
            order.append(name)
            s.commit()

    waiting = threading.Thread(target=write, args=("waited", 2027))
    waiting.start()
    deadline = time.monotonic() + 5
    while not _someone_waits(engine) and time.monotonic() < deadline:
        time.sleep(0.005)
    first.commit()
    first.close()
    write("asked later", 2028)  # asks after the waiting writer, so goes after it
    waiting.join()
    assert order == ["waited", "asked later"]


def test_a_waiting_writer_begins_only_once_the_commit_before_it_is_done(tmp_path: Path) -> None:
    # The turn went back when SQLAlchemy announced the COMMIT, before it ran: the next writer's BEGIN IMMEDIATE
    # met SQLite's lock still held and slept in the busy handler (1, 2, 5, 10 ms...). Here the waiting writer is
    # told not to sleep at all, so meeting the lock fails it, and the COMMIT before it writes ~20 MB, so it is
    # under way long enough to be met.
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE big (x BLOB)")
    failures: list[BaseException] = []
    began: list[bool] = []

    def waiting_writer() -> None:
        with engine.connect() as conn:
            # Straight on the DBAPI connection: through SQLAlchemy it would begin a transaction, and wait its turn.
            conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
            try:
                with conn.begin():
                    began.append(True)
                    conn.exec_driver_sql("INSERT INTO big VALUES (x'00')")
            except BaseException as exc:  # noqa: BLE001  (what the assertion below reports)
                failures.append(exc)

    with engine.connect() as first:
        first.connection.dbapi_connection.execute("PRAGMA cache_size=-200000")  # type: ignore[union-attr]
        with first.begin():
            first.exec_driver_sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
                                  "INSERT INTO big SELECT randomblob(1000) FROM n")
            waiting = threading.Thread(target=waiting_writer)
            waiting.start()
            deadline = time.monotonic() + 5
            while not _someone_waits(engine) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert _someone_waits(engine)
        waiting.join(30)
    engine.dispose()
    assert failures == []
    assert began == [True]


def test_a_connection_thrown_away_mid_transaction_rolls_back_and_the_next_writer_goes_at_once(tmp_path: Path) -> None:
    # The store's rollback listeners asked the thrown-away connection for its info, which raises
    # PendingRollbackError: its transaction could not be rolled back at all (nor the session holding it closed),
    # and the error that threw it away was hidden behind that one.
    engine = _migrated(tmp_path)
    turns = writer_turns(engine)
    assert turns is not None
    turns.patience = 3.0
    with engine.connect() as conn:
        transaction = conn.begin()
        conn.exec_driver_sql("INSERT INTO refsequence (year, last_seq) VALUES (2026, 1)")
        conn.invalidate()  # as after an error that makes the pool throw the connection away
        transaction.rollback()  # of the transaction SQLAlchemy now holds invalid: nothing reaches the database
    started = time.monotonic()
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO refsequence (year, last_seq) VALUES (2027, 1)")
    assert time.monotonic() - started < 1.0
    with reading(engine) as conn:
        assert conn.exec_driver_sql("SELECT year FROM refsequence").scalars().all() == [2027]


def _migrated(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    return engine


def _someone_waits(engine: Engine) -> bool:
    turns = writer_turns(engine)
    assert turns is not None
    return turns.waiting > 0


def test_a_writers_turn_never_given_back_is_taken_after_the_patience_runs_out() -> None:
    turns = WriterTurns(patience=0.2)
    lost = turns.take()  # a writer that never gives its turn back
    late = turns.take()  # waits out the patience, then goes
    nxt = threading.Thread(target=lambda: order.append(turns.take()))
    order: list[int] = []
    nxt.start()
    turns.give_back(lost)  # a turn given back after it was skipped frees nothing
    nxt.join(0.02)
    assert nxt.is_alive() and order == []
    turns.give_back(late)
    nxt.join(1)
    assert order == [late + 1]


def test_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    engine = _migrated(tmp_path)
    with session(engine) as s:
        s.add(RefSequence(year=2026, last_seq=1))
        s.commit()
    with session(engine) as writer:
        writer.get(RefSequence, 2026).last_seq = 2  # type: ignore[union-attr]
        writer.flush()  # holds SQLite's writer lock
        with reading(engine) as conn:
            assert conn.execute(text("SELECT last_seq FROM refsequence")).scalar() == 1  # the last commit
        writer.commit()


def test_events_take_their_place_in_the_audit_chain_at_the_real_commit_not_at_each_savepoint(tmp_path: Path) -> None:
    """Intake releases a savepoint per message: the chain is linked once, at the commit, and a savepoint rolled
    back after released ones neither leaves a gap nor keeps theirs out of the chain."""
    from mailbot.store import audit as store_audit
    from mailbot.store import repo

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    with session(engine) as s:
        first = s.begin_nested()
        repo.add_event(s, None, NOW, "first")
        first.commit()
        places = [row[0] for row in s.connection().execute(text("SELECT seq FROM event ORDER BY id"))]
        assert places == [None]  # released, not yet sealed: no head lock held for the rest of the batch
        second = s.begin_nested()
        repo.add_event(s, None, NOW, "second")
        second.commit()
        dropped = s.begin_nested()  # the batch's last message fails
        repo.add_event(s, None, NOW, "dropped")
        dropped.rollback()
        s.commit()
    with reading(engine) as conn:
        rows = conn.execute(text("SELECT type, seq FROM event ORDER BY id")).all()
        verdict = store_audit.verify(conn)
    assert [tuple(r) for r in rows] == [("first", 1), ("second", 2)]
    assert verdict.ok, verdict


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_events_written_at_the_commit_keep_their_order_and_are_read_back_before_it(
        database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Events wait to be written until the commit (one statement for a transaction's events), but a read in the
    same transaction still finds them, a savepoint still takes back only its own, and the trail keeps the order
    they were added in."""
    from mailbot.store import audit as store_audit
    from mailbot.store import repo
    from mailbot.store.models import Event

    engine = _engine_for(database, tmp_path, request)
    try:
        with session(engine) as s:
            repo.add_event(s, None, NOW, "a")
            repo.add_event(s, None, NOW, "b")
            assert [e.type for e in s.exec(select(Event).order_by(Event.id))] == ["a", "b"]  # read before commit
            dropped = s.begin_nested()
            repo.add_event(s, None, NOW, "dropped")
            dropped.rollback()
            repo.add_event(s, None, NOW, "c")
            kept = s.begin_nested()
            repo.add_event(s, None, NOW, "d")
            kept.commit()
            repo.add_event(s, None, NOW, "e")
            f_id = repo.add_event_now(s, None, NOW, "f")
            repo.add_event(s, None, NOW, "g")
            s.commit()
        with session(engine) as s:  # a transaction rolled back: its waiting events go with it
            repo.add_event(s, None, NOW, "never")
            s.rollback()
            s.commit()
        with session(engine) as s:  # nor do they come back in the next transaction on the same connection
            repo.add_event(s, None, NOW, "h")
            s.commit()
        with reading(engine) as conn:
            rows = [tuple(r) for r in conn.execute(text("SELECT id, type, seq FROM event ORDER BY id"))]
            verdict = store_audit.verify(conn)
    finally:
        engine.dispose()
    assert [(kind, seq) for _, kind, seq in rows] == [(k, n) for n, k in enumerate("abcdefgh", start=1)]
    assert dict((kind, id_) for id_, kind, _ in rows)["f"] == f_id
    assert verdict.ok, verdict


def test_the_light_tables_name_columns_the_tables_have() -> None:
    # The case commands and `mailbot status` read with light table clauses (no ORM): a column renamed in the models
    # must fail here, and their times and flags must be read and written as the tables' own columns read and write
    # them (an untyped flag reads back from SQLite as 0 or 1, not false or true).
    from sqlalchemy import Boolean, DateTime
    from sqlalchemy.sql import TableClause

    from mailbot.store import light_tables
    from mailbot.store.models import SQLModel

    lights = [v for v in vars(light_tables).values() if isinstance(v, TableClause)]
    assert len(lights) == 9
    for light in lights:
        real = SQLModel.metadata.tables[light.name]
        assert set(light.c.keys()) <= set(real.c.keys()), set(light.c.keys()) - set(real.c.keys())
        for name in light.c.keys():
            real_type = getattr(real.c[name].type, "impl", real.c[name].type)
            for kind in (DateTime, Boolean):
                assert isinstance(light.c[name].type, kind) == isinstance(real_type, kind), (light.name, name, kind)


def test_a_new_database_another_program_is_writing_is_waited_for_not_refused(tmp_path: Path) -> None:
    # Switching a new database to WAL needs it alone for a moment, and SQLite refused at once, without waiting:
    # two bots started together on a fresh data directory had one fail its start about one time in eight.
    path = tmp_path / "mailbot.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE left_by_another_program (a)")  # a database in SQLite's default journal mode
    other.execute("BEGIN IMMEDIATE")  # and another program in the middle of writing to it
    finished = threading.Timer(0.5, other.execute, args=("COMMIT",))
    finished.start()
    began = time.monotonic()
    try:
        engine = open_database(f"sqlite:///{path}")
    finally:
        finished.join()
        other.close()
    assert time.monotonic() - began >= 0.4  # it waited for the other program
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_a_database_that_cannot_be_put_in_wal_mode_still_opens(url: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite answers the switch with the mode it keeps ("memory" here) rather than an error: that is no lock to
    # wait for. And an in-memory database is no file to create ("sqlite://" once left a file named "sqlite:").
    monkeypatch.chdir(tmp_path)
    engine = open_database(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "memory"
    engine.dispose()
    assert list(tmp_path.iterdir()) == []


def test_an_outbox_page_passes_over_a_letter_removed_between_its_size_and_its_bytes(
        postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL each statement of a page sees the latest commits, so a letter can go (an erasure, a purge)
    between the read of the sizes and the read of the bytes. The page comes back without it, saying where the
    next page starts, and the letters after it still come (the delivery pass once indexed an empty page)."""
    from sqlalchemy import event

    from mailbot.store import outbox

    engine = make_engine(postgres.url)
    upgrade(engine)
    try:
        with engine.begin() as conn:
            for n in (1, 2, 3):
                conn.execute(text("INSERT INTO message (id, direction, message_id, subject, from_addr, to_addrs, kind, "
                                  "at, raw, delivery, attempts, automatic) VALUES (:id, 'out', :mid, '', '', "
                                  "'a@b.c', 'acknowledgement', :at, :raw, 'pending', 0, true)"),
                             {"id": n, "mid": f"m{n}", "at": NOW.replace(tzinfo=None), "raw": b"letter"})
        monkeypatch.setattr(outbox, "OUTBOX_BYTES", 1)  # one letter a page
        removed: list[bool] = []

        @event.listens_for(engine, "before_cursor_execute")
        def remove_letter_1(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
            if not removed and "message.raw" in statement and "length" not in statement:
                removed.append(True)
                with engine.begin() as other:
                    other.execute(text("DELETE FROM message WHERE id = 1"))

        pages = [outbox.due_page(engine, NOW, after=0, automatic=True)]
        while pages[-1].more:
            pages.append(outbox.due_page(engine, NOW, after=pages[-1].last, automatic=True))
    finally:
        engine.dispose()
    assert removed
    assert [[letter.id for letter in page] for page in pages] == [[], [2], [3]]
    assert pages[0].last == 1 and pages[0].more


def _letter_row(message_id: str, to: str, automatic: bool, direction: str = "out") -> dict[str, object]:
    return {"direction": direction, "message_id": message_id, "to_addrs": to, "kind": "acknowledgement", "at": NOW,
            "raw": b"x", "automatic": automatic, "trigger_from": to if automatic else None}


def _restrict(s, person: str) -> None:  # type: ignore[no-untyped-def]
    year_seq, ref = store_repo.allocate_ref(s, 2026)
    case = store_repo.insert_case(s, ref=ref, year=2026, seq=year_seq, status="open", stage=1, procedure="mentee",
                            complainant=person, from_addr=person, subject="", opened_at=NOW, stage_started_at=NOW,
                            updated_at=NOW)
    s.add(Restriction(case_id=case.id, complainant=person, state="restricted", mode="one_contact",
                      reason="test", restricted_at=NOW, review_due=NOW, by="test"))


# (what is written between asking ahead and asking, the question, the answer only a fresh look gives)
FORESIGHT_CASES = {
    "its own message row": (lambda s: _insert(s, _letter_row("m@x", "ann@x", False, direction="in")),
                            lambda s: sorted(store_repo.directions_seen(s, "m@x")), ["in"]),
    "an automatic letter to the address": (lambda s: _insert(s, _letter_row("a1@x", "ann@x", True)),
                                           lambda s: store_repo.automatic_letters(s, "ann@x", "ann@x", NOW - _DAY),
                                           (1, 1)),
    "an automatic letter the sender caused, to another address": (
        lambda s: _insert(s, {**_letter_row("a2@x", "ann.other@x", True), "trigger_from": "ann@x"}),
        lambda s: store_repo.automatic_letters(s, "ann@x", "ann@x", NOW - _DAY), (0, 1)),
    "a restriction of the person": (lambda s: _restrict(s, "ann@x"),
                                    lambda s: [mode for _, mode in
                                               store_repo.restrictions_on_other_cases(s, 0, "ann@x")],
                                    ["one_contact"]),
    "its own message row, in a savepoint rolled back": (lambda s: _rolled_back_savepoint(s),
                                                        lambda s: sorted(store_repo.directions_seen(s, "m@x")), []),
}


def _insert(s, row: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    store_repo.insert_message(s, row)


def _rolled_back_savepoint(s) -> None:  # type: ignore[no-untyped-def]
    inner = s.begin_nested()
    _insert(s, _letter_row("m@x", "ann@x", False, direction="in"))
    inner.rollback()


_DAY = timedelta(days=1)


def _foresee_ann(s) -> None:  # type: ignore[no-untyped-def]
    store_repo.foresee(s, [store_repo.ask_directions("m@x"),
                           store_repo.ask_automatic_letters("ann@x", "ann@x", NOW - _DAY),
                           store_repo.ask_restrictions("ann@x")])


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.parametrize("case", FORESIGHT_CASES)
def test_an_answer_asked_ahead_is_not_used_after_a_write_it_depends_on(
        case: str, database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Intake asks a message's questions in one round trip before handling it (repo.foresee); a write in between
    that changes an answer makes the store be asked again."""
    write, ask, fresh = FORESIGHT_CASES[case]
    engine = _engine_for(database, tmp_path, request)
    try:
        with session(engine) as s:
            _foresee_ann(s)
            write(s)
            assert ask(s) == fresh
            s.commit()
    finally:
        engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_letter_to_one_of_the_messages_asked_about_leaves_the_others_answers_standing(
        database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Intake asks for several messages at once: the acknowledgement of the first does not send the next ones'
    questions to the store again (only a letter that counts in an answer does)."""
    engine = _engine_for(database, tmp_path, request)
    try:
        with session(engine) as s:
            store_repo.foresee(s, [store_repo.ask_automatic_letters(person, person, NOW - _DAY)
                                   for person in ("ann@x", "bob@x")], complaints=2)
            _insert(s, _letter_row("ack1@x", "ann@x", True))
            standing = {dict(key[1:])["address"] for key in s.info[store_repo._FORESEEN]}
            answers = [store_repo.automatic_letters(s, person, person, NOW - _DAY) for person in ("ann@x", "bob@x")]
            s.commit()
    finally:
        engine.dispose()
    assert standing == {"bob@x"} and answers == [(1, 1), (0, 0)]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_answers_asked_ahead_are_the_store_s_and_serve_once(database: str, tmp_path: Path,
                                                              request: pytest.FixtureRequest) -> None:
    engine = _engine_for(database, tmp_path, request)
    try:
        with session(engine) as s:
            _insert(s, _letter_row("a1@x", "ann@x", True))
            _insert(s, _letter_row("m@x", "ann@x", False, direction="in"))
            _restrict(s, "ann@x")
            s.commit()
        with session(engine) as s:
            _foresee_ann(s)
            foreseen = dict(s.info[store_repo._FORESEEN])
            answers = (sorted(store_repo.directions_seen(s, "m@x")),
                       store_repo.automatic_letters(s, "ann@x", "ann@x", NOW - _DAY),
                       [mode for _, mode in store_repo.restrictions_on_other_cases(s, 0, "ann@x")])
            left = dict(s.info[store_repo._FORESEEN])
            again = sorted(store_repo.directions_seen(s, "m@x"))  # asked again: the store, as the answer is used up
    finally:
        engine.dispose()
    assert answers == (["in"], (1, 1), ["one_contact"])
    assert len(foreseen) == 3 and left == {} and again == ["in"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_questions_asked_ahead_for_many_messages_get_the_answers_each_would_get_alone(
        database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Each answer asked ahead (one round trip for them all on PostgreSQL) must be the one the question gets asked
    # alone, rows in the same order, for a question with several rows, one, and none.
    engine = _engine_for(database, tmp_path, request)
    try:
        with session(engine) as s:
            _insert(s, _letter_row("both@x", "ann@x", True))
            _insert(s, _letter_row("both@x", "ann@x", False, direction="in"))
            _insert(s, _letter_row("in@x", "bob@x", False, direction="in"))
            _insert(s, {**_letter_row("a2@x", "bob@x", True), "trigger_from": "ann@x"})
            _insert(s, {**_letter_row("old@x", "ann@x", True), "at": NOW - 3 * _DAY})
            _restrict(s, "ann@x")
            _restrict(s, "ann@x")
            _restrict(s, "cat@x")
            s.commit()
        asks = [store_repo.ask_directions(m) for m in ("both@x", "in@x", "none@x", "a2@x")]
        asks += [store_repo.ask_automatic_letters(a, sender, since) for a, sender, since in (
            ("ann@x", "ann@x", NOW - _DAY), ("bob@x", "ann@x", NOW - _DAY), ("dan@x", "", NOW - _DAY),
            ("ann@x", "ann@x", NOW - 5 * _DAY))]
        asks += [store_repo.ask_restrictions(p) for p in ("ann@x", "cat@x", "dan@x")]
        with session(engine) as s:
            alone = [store_repo._rows(s, prebuilt, params) for prebuilt, params in asks]
            store_repo.foresee(s, asks, complaints=4)
            foreseen = dict(s.info[store_repo._FORESEEN])
            together = [store_repo._rows(s, prebuilt, params) for prebuilt, params in asks]
    finally:
        engine.dispose()
    assert len(foreseen) == len(asks)
    assert [sorted(rows) if prebuilt is store_repo._DIRECTIONS_SEEN else rows
            for (prebuilt, _), rows in zip(asks, together)] == \
           [sorted(rows) if prebuilt is store_repo._DIRECTIONS_SEEN else rows for (prebuilt, _), rows in zip(asks, alone)]
    assert [sorted(rows) for rows in alone[:4]] == [[("in",), ("out",)], [("in",)], [], [("out",)]]
    assert [rows[0][:2] for rows in alone[4:8]] == [(1, 2), (1, 2), (0, 0), (2, 3)]
    assert [[mode for _, _, mode in rows] for rows in alone[8:]] == [["one_contact", "one_contact"], ["one_contact"], []]


def _on_the_server(s) -> list[str]:  # type: ignore[no-untyped-def]
    """The message ids the server has now in this transaction, read on the driver (sending nothing waiting)."""
    return [row[0] for row in s.connection().connection.driver_connection.execute(
        "SELECT message_id FROM message ORDER BY id")]


# (a write left waiting before the questions, whether it can change their answers, the answers asked ahead)
WAITING_BEFORE_ASKING = {
    "a row with the Message-ID asked about": (_letter_row("m@x", "bob@x", False, direction="in"), True,
                                              (["in"], (0, 0))),
    "an automatic letter to the address asked about": (_letter_row("a1@x", "ann@x", True), True, ([], (1, 1))),
    "an automatic letter the sender asked about caused": ({**_letter_row("a2@x", "bob@x", True),
                                                           "trigger_from": "ann@x"}, True, ([], (0, 1))),
    "a letter to somebody else": (_letter_row("a3@x", "bob@x", True), False, ([], (0, 0))),
    "a letter to the address that is not automatic": (_letter_row("s1@x", "ann@x", False), False, ([], (0, 0))),
}


@pytest.mark.parametrize("case", WAITING_BEFORE_ASKING)
def test_on_postgresql_waiting_writes_go_with_the_questions_only_if_they_could_change_an_answer(
        case: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    row, carried, answers = WAITING_BEFORE_ASKING[case]
    engine = _engine_for("postgresql", tmp_path, request)
    try:
        with session(engine) as s:
            _insert(s, row)
            assert _on_the_server(s) == []  # waiting (store.prebuilt)
            _foresee_ann(s)
            on_the_server = _on_the_server(s)
            asked = (sorted(store_repo.directions_seen(s, "m@x")),
                     store_repo.automatic_letters(s, "ann@x", "ann@x", NOW - _DAY))
            s.commit()
        with session(engine) as s:
            committed = _on_the_server(s)
    finally:
        engine.dispose()
    assert on_the_server == ([row["message_id"]] if carried else [])
    assert asked == answers
    assert committed == [row["message_id"]]



@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_new_case_reads_as_its_row_without_asking_the_database_and_a_change_to_it_is_written(
        database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    engine = _engine_for(database, tmp_path, request)
    statements: list[str] = []

    def note(conn, cursor, statement, *rest) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    try:
        with session(engine) as s:
            seq, ref = store_repo.allocate_ref(s, 2026)
            case = store_repo.insert_case(s, ref=ref, year=2026, seq=seq, complainant="ann@x", opened_at=to_db(NOW),
                                          stage_started_at=to_db(NOW), updated_at=to_db(NOW))
            event.listen(engine, "before_cursor_execute", note)
            try:
                # Every column reads as written or as its default, and none of them asks the database.
                seen = {name: getattr(case, name) for name in Case.model_fields}
                assert statements == []
            finally:
                event.remove(engine, "before_cursor_execute", note)
            assert (case.status, case.stage, case.category, case.channel, case.outcome) == (
                "open", 1, "service", "email", None)
            case.status = "resolved"
            s.commit()
        with session(engine) as s:
            stored = s.exec(select(Case).where(Case.ref == ref)).one()
            assert {name: getattr(stored, name) for name in Case.model_fields} == {**seen, "status": "resolved"}
    finally:
        engine.dispose()


def test_a_session_whose_postgresql_connection_is_lost_mid_transaction_closes_and_says_why(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # The server ends the connection mid-transaction (a restart, a failover): the statement fails with the server's
    # own error, the session then rolls back and closes, and the next session works on a new connection.
    from sqlalchemy.exc import OperationalError

    engine = _engine_for("postgresql", tmp_path, request)
    with session(engine) as s:
        s.add(RefSequence(year=2026, last_seq=1))
        s.flush()
        pid = s.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)}, 10000)")  # returns once it has ended
            other.commit()
        with pytest.raises(OperationalError) as lost:
            s.connection().exec_driver_sql("SELECT 1")
        assert lost.value.connection_invalidated
        s.rollback()  # raised PendingRollbackError before: the store's listeners asked the dead connection
    with session(engine) as s:
        s.add(RefSequence(year=2027, last_seq=1))
        s.commit()
    with reading(engine) as conn:
        assert conn.exec_driver_sql("SELECT year FROM refsequence").scalars().all() == [2027]
    engine.dispose()
