"""The scheduled work's looks (store.due_reads) on SQLite and PostgreSQL: the hand-over look's walk over owners
chooses what ``gone_filter`` chooses, whatever order the database sorts text in, and no look reads the open cases
or the running deadlines whole (what keeps a pass with nothing to do as quick on 50,000 open cases as on 50)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.engine import Engine

from mailbot.domain.procedures import OPEN_STATUSES
from mailbot.domain.workdays import WorkingCalendar
from mailbot.store import due_reads
from mailbot.store.db import make_engine, reading, to_db, upgrade
from mailbot.store.db import session as new_session
from mailbot.store.light_tables import CASES
from mailbot.store.models import Case, Deadline
from tests.probes import sqlite_plans

T = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)
JO, PRIYA = "jo.mensah@1mm.org.uk", "priya.shah@1mm.org.uk"


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-icu"])
def engine(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """SQLite; PostgreSQL with the C collation the tests' servers have; and PostgreSQL sorting text as British
    English does (ICU), as a production server may: "a" before "B", "jo.mensah@" before "Jo@" before "jom@",
    where the code points give "B", "Jo@", "a", "jo.mensah@", "jom@"."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'due.db'}"
    else:
        url = request.getfixturevalue("postgres").url
        if request.param == "postgresql-icu":
            server = make_engine(url)
            with server.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("CREATE DATABASE british LOCALE_PROVIDER icu ICU_LOCALE 'en-GB' "
                                  "LOCALE 'C.UTF-8' TEMPLATE template0"))
            server.dispose()
            url = url.rsplit("/", 1)[0] + "/british"
    made = make_engine(url)
    upgrade(made)
    yield made
    made.dispose()


def test_the_icu_database_sorts_unlike_the_code_points(engine: Engine) -> None:
    # What makes the third database worth having: an owner walk that sorted in Python would skip owners there.
    names = ["jom@x", "B@x", "Jo@x", "a@x", "jo.mensah@x"]
    with reading(engine) as conn:
        values = " UNION ALL ".join(f"SELECT '{name}' AS name" for name in names)
        in_db = [row[0] for row in conn.execute(text(f"SELECT name FROM ({values}) AS v ORDER BY name"))]
    if engine.url.database == "british":
        assert in_db == ["a@x", "B@x", "jo.mensah@x", "Jo@x", "jom@x"]
    else:
        assert in_db == sorted(names)


# (open cases' owners, other cases' owners, staff, whether a case has an owner outside the staff)
OWNERS = [
    ([JO, PRIYA, JO], [], {JO, PRIYA}, False),
    ([JO, None], [], {JO}, False),
    ([None], [], set(), False),
    ([], ["gone@1mm.org.uk"], {JO}, False),  # the one outside owns only a closed case
    ([JO, "gone@1mm.org.uk"], [], {JO, PRIYA}, True),
    ([JO, PRIYA], [], {JO}, True),
    (["Jo@1mm.org.uk"], [], {JO}, True),  # equal only when the same, as NOT IN
    ([JO + ".evil"], [], {JO}, True),
    (["jom@1mm.org.uk", JO], [], {JO, "Jo@1mm.org.uk"}, True),
    # In en-GB order "B@x" falls between staff addresses, which in code point order it does not.
    (["a@x", "B@x", "jo.mensah@x", "jom@x"], [], {"a@x", "jom@x", "jo.mensah@x"}, True),
    (["a@x", "B@x", "jo.mensah@x", "jom@x"], [], {"a@x", "B@x", "jom@x", "jo.mensah@x"}, False),
    (["zoë@example.org", "zoe@example.org"], [], {"zoe@example.org"}, True),
    ([""], [], {JO}, True),
    ([JO], [], set(), True),
]


def test_the_hand_over_look_finds_an_owner_outside_the_staff_exactly_when_the_work_would(engine: Engine) -> None:
    for number, (open_owners, other_owners, staff, outside) in enumerate(OWNERS):
        with new_session(engine) as s:
            s.exec(delete(Case))
            owners = [(owner, "open" if n % 2 else "awaiting_staff") for n, owner in enumerate(open_owners)]
            owners += [(owner, status) for owner in other_owners for status in ("closed", "resolved")]
            for seq, (owner, status) in enumerate(owners, start=1):
                s.add(Case(ref=f"1MM-2026-{1000 * number + seq:04d}", year=2026, seq=1000 * number + seq,
                           complainant=f"c{seq}@example.org", assignee=owner, status=status, opened_at=to_db(T),
                           stage_started_at=to_db(T), updated_at=to_db(T)))
            s.commit()
        with reading(engine) as conn:
            walked = due_reads.owner_outside(conn, OPEN_STATUSES, staff)
            chosen = conn.execute(select(CASES.c.id).where(due_reads.gone_filter(CASES.c, OPEN_STATUSES, staff))
                                  ).first() is not None
        assert (walked, chosen) == (outside, outside), (open_owners, other_owners, staff)


def test_no_look_reads_the_open_cases_or_the_running_deadlines_whole(tmp_path: Path) -> None:
    # SQLite says how it reads: a look may seek in an index of them, but never scans the cases or the deadlines,
    # nor reads every open case through the index by status ("(status=?)": the plain NOT IN look, and the chase
    # planned from the cases' side).
    engine = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    upgrade(engine)
    with new_session(engine) as s:
        for seq in range(1, 41):
            case = Case(ref=f"1MM-2026-{seq:04d}", year=2026, seq=seq, complainant=f"c{seq}@example.org",
                        assignee=JO, opened_at=to_db(T), stage_started_at=to_db(T), updated_at=to_db(T),
                        closed_at=to_db(T) if seq % 4 == 0 else None, status="closed" if seq % 4 == 0 else "open")
            s.add(case)
            s.flush()
            s.add(Deadline(case_id=case.id, stage=1, name="full_response", due_at=to_db(T + timedelta(days=20))))
        s.commit()
    due, plans = sqlite_plans(engine, lambda conn: due_reads.work_due(conn, T, WorkingCalendar(), OPEN_STATUSES,
                                                                      {JO}, 6))
    engine.dispose()
    assert due is None
    assert len(plans) >= 6
    whole = ("SCAN case", "SCAN deadline", "(status=?)")
    assert not [plan for plan in plans if any(read in plan for read in whole)], plans
    assert [plan for plan in plans if "ix_deadline_running" in plan]
