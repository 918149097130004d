"""Peak memory and time of the bot's scheduled work as the number of open cases grows (issue 15, first goal).

For each N, a fresh SQLite database is filled with N open cases as a year of real work leaves them (written
straight into the tables, as `mailbot` itself would have: each with its opening message of about 1 KB, its
first response met, its full response due in the next 1-30 working days, one in twenty already overdue and
alerted), then `mailbot run --once` runs in local mode with nothing to fetch, at 10:00 on a working day, so all
it does is start, open the database and run the scheduled work (deadline reminders and alerts, restriction
reviews; the digest is off unless --digest). It reports the pass's peak RSS (`bench/peak_rss.py`) and wall time.

    .venv/bin/python bench/open_cases.py                      # 1,000 10,000 50,000
    .venv/bin/python bench/open_cases.py --cases 1000 22000 --rounds 3 --digest
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.peak_rss import peak_rss_mb  # noqa: E402

NOW = datetime(2027, 3, 16, 10, 0, tzinfo=timezone.utc)  # a Tuesday
BODY = ("I am writing about my mentoring sessions, which have not happened as promised. " * 12).encode()


def fill(data: Path, cases: int, url: str | None = None) -> None:
    from sqlalchemy import insert

    from mailbot.store.db import open_database, to_db
    from mailbot.store.models import Case, Deadline, MailMessage

    engine = open_database(url or f"sqlite:///{data / 'mailbot.db'}")
    rng = random.Random(cases)
    case_rows, deadline_rows, message_rows = [], [], []
    for n in range(1, cases + 1):
        opened = NOW - timedelta(days=rng.randint(1, 40), minutes=rng.randint(0, 600))
        who = f"person{n}@example.org"
        case_rows.append({"id": n, "ref": f"1MM-2027-{n:05d}", "year": 2027, "seq": n, "status": "open", "stage": 1,
                          "procedure": "external", "complainant": who, "from_addr": who, "complainant_name": f"P {n}",
                          "subject": f"Complaint {n}", "category": "service", "assignee": "priya.shah@1mm.org.uk",
                          "opened_at": opened, "stage_started_at": opened, "updated_at": opened, "channel": "email",
                          "status_nonce": f"nonce{n}"})
        overdue = n % 20 == 0
        due = NOW - timedelta(days=2) if overdue else NOW + timedelta(days=rng.randint(2, 40))
        deadline_rows += [
            {"case_id": n, "stage": 1, "name": "first_response", "due_at": opened + timedelta(days=1),
             "met_at": opened + timedelta(hours=5), "superseded": False, "reminded_at": None,
             "overdue_alerted_at": None},
            {"case_id": n, "stage": 1, "name": "full_response", "due_at": due, "superseded": False, "met_at": None,
             "reminded_at": due - timedelta(days=1) if overdue else None,
             "overdue_alerted_at": due if overdue else None},
        ]
        message_rows.append({"case_id": n, "direction": "in", "message_id": f"<m{n}@example.org>",
                             "subject": f"Complaint {n}", "from_addr": who, "to_addrs": "complaints@1mm.org.uk",
                             "kind": "new_case", "at": opened, "raw": b"Subject: x\r\n\r\n" + BODY, "attempts": 0,
                             "automatic": False})
    naive = [case_rows, deadline_rows, message_rows]
    for rows in naive:  # the database keeps UTC without a zone (store.db.to_db)
        for row in rows:
            for key, value in row.items():
                if isinstance(value, datetime):
                    row[key] = to_db(value)
    with engine.begin() as conn:
        for table, rows in ((Case, case_rows), (Deadline, deadline_rows), (MailMessage, message_rows)):
            for start in range(0, len(rows), 5000):
                conn.execute(insert(table), rows[start:start + 5000])
        if conn.dialect.name == "postgresql":  # the ids were given: move each table's sequence past them
            for name in ("case", "deadline", "message"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('\"{name}\"', 'id'), "
                                     f"(SELECT max(id) FROM \"{name}\"))")
    if engine.dialect.name == "postgresql":
        # What autovacuum has long done to a database that grew to this size over months: its statistics and
        # visibility map. Left to autovacuum, it ran in the middle of the timed run after the bulk insert.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def bot_environment(data_dir: Path) -> dict[str, str]:
    """The environment of a bot on ``data_dir`` with no mailbox, running this checkout's code (``PYTHONPATH``: the
    editable install finds the main checkout whichever work tree runs the benchmark), unless the caller's
    ``PYTHONPATH`` names another."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
    env.update({"PYTHONPATH": os.pathsep.join([*filter(None, [os.environ.get("PYTHONPATH")]), str(REPO)]),
                "MAILBOT_DATA_DIR": str(data_dir), "MAILBOT_TEMPLATES_DIR": str(REPO / "templates"),
                "MAILBOT_SECRET": "bench-secret-bench-secret-bench-secret-42"})
    return env


def once(root: Path, digest: bool) -> tuple[float, float]:
    """Peak RSS (MB) and wall time (s) of one `mailbot run --once`."""
    env = bot_environment(root / "data")
    env.update({"MAILBOT_HTTP_PORT": "0", "MAILBOT_DIGEST_TIME": "09:00" if digest else "off"})
    started = time.monotonic()
    peak = peak_rss_mb([sys.executable, "-m", "mailbot", "run", "--once", "--now", NOW.isoformat()], env=env,
                       cwd=root)
    return peak, time.monotonic() - started  # the small Python in between adds its start, ~10 ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--rounds", type=int, default=2, help="runs per size, interleaved across sizes")
    parser.add_argument("--digest", action="store_true", help="let the day's digest run too")
    args = parser.parse_args()
    roots = {}
    for n in args.cases:
        root = Path(tempfile.mkdtemp(prefix=f"mailbot-open-{n}-"))
        (root / "data").mkdir()
        for name in ("staff.toml", "participants.csv"):
            shutil.copy(REPO / "data" / name, root / "data" / name)
        began = time.monotonic()
        fill(root / "data", n)
        print(f"filled {n:,} open cases in {time.monotonic() - began:.1f} s", file=sys.stderr)
        roots[n] = root
    results: dict[int, list[tuple[float, float]]] = {n: [] for n in args.cases}
    try:
        for _ in range(args.rounds):
            for n in args.cases:  # interleaved, so a noisy minute hits every size
                backup = roots[n] / "pristine.db"
                db = roots[n] / "data" / "mailbot.db"
                if not backup.exists():
                    with sqlite3.connect(db) as conn:  # everything in the file itself, none of it in the WAL
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    shutil.copy(db, backup)
                # The same work each round: the file as filled, and no write-ahead log of the last round's work
                # (SQLite would replay it onto the copy, and the day's digest would already be sent).
                for leftover in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                    leftover.unlink(missing_ok=True)
                shutil.copy(backup, db)
                results[n].append(once(roots[n], args.digest))
    finally:
        for root in roots.values():
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'open cases':>10}  {'peak RSS MB (runs)':<24} {'wall s (runs)':<20}")
    for n in args.cases:
        rss = [r for r, _ in results[n]]
        wall = [w for _, w in results[n]]
        print(f"{n:>10,}  {statistics.median(rss):6.0f} ({', '.join(f'{r:.0f}' for r in rss)})"
              f"{'':<6} {statistics.median(wall):5.2f} ({', '.join(f'{w:.2f}' for w in wall)})")


if __name__ == "__main__":
    main()
