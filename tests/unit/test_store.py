"""The store's transactions on SQLite are real: savepoints roll back alone, batches commit together."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

from sqlmodel import select

from mailbot.store.db import make_engine, session, upgrade
from mailbot.store.models import RefSequence

NOW = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


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
