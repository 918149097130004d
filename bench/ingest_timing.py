"""Where one complaint's ingest time goes, in-process and without a profiler's overhead.

    .venv/bin/python bench/ingest_timing.py [--count 500] [--profile OUT] [--quiet] [--bodies long] [--postgres]
                                            [--as-intake] [--trace]

Runs the real Ingestor on a throwaway SQLite database (no IMAP, no SMTP) and times each step of
each message with perf_counter by wrapping the functions the ingest path calls.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import inspect
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.run import complaint  # noqa: E402
from bench.statements import on_every_statement  # noqa: E402
from mailbot.bootstrap import App  # noqa: E402
from mailbot.services import correspondence as correspondence_mod  # noqa: E402
from mailbot.services import ingest as ingest_mod  # noqa: E402
from mailbot.services.mailbox import INTAKE_TRANSACTION_SECONDS, Arrival, CursorPosition  # noqa: E402
from mailbot.settings import load_settings  # noqa: E402

TIMES: collections.Counter[str] = collections.Counter()
COUNTED = 100  # complaints whose statements are counted, before the timed ones

# (what owns the function, given the app; its name; the label printed). Indented labels are inside the one above.
STEPS = [
    (lambda app: ingest_mod, "parse_mail", "parse_mail"),
    (lambda app: ingest_mod, "route", "route (the chain, with its queries)"),
    (lambda app: app.lifecycle, "open_case", "lifecycle.open_case"),
    (lambda app: ingest_mod.Ingestor, "_record", "record the inbound row"),
    (lambda app: app.lifecycle, "handle", "lifecycle.handle (letters etc.)"),
    (lambda app: app.letters, "letter_context", "  letter_context"),
    (lambda app: app.letters, "queue", "  Correspondence.queue"),
    (lambda app: correspondence_mod.repo, "automatic_letters", "    the auto-reply cap query"),
    (lambda app: correspondence_mod.LetterRenderer, "render", "    render (jinja)"),
    (lambda app: correspondence_mod, "letter_bytes", "    letter_bytes (MIME)"),
    (lambda app: ingest_mod.Ingestor, "_advance_cursor", "advance the cursor"),
    (lambda app: ingest_mod.Session, "commit", "session.commit"),
    (lambda app: ingest_mod.Session, "flush", "(session.flush, wherever called)"),
]


def timed(owner: object, name: str, label: str) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES[label] += time.perf_counter() - began

    is_static = isinstance(inspect.getattr_static(owner, name), staticmethod)
    setattr(owner, name, staticmethod(wrapper) if is_static else wrapper)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--quiet", action="store_true", help="no per-step timing (no wrapper overhead)")
    parser.add_argument("--bodies", choices=("short", "long"), default="short", help="long: 20-line complaints")
    parser.add_argument("--trace", action="store_true", help="print every statement of the last complaint")
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL server, not SQLite")
    parser.add_argument("--as-intake", action="store_true",
                        help="commit as intake does (every 50 ms), not once for all the complaints")
    args = parser.parse_args()
    if args.postgres:
        from tests.servers import PostgresServer

        with PostgresServer(Path(tempfile.mkdtemp(prefix="mailbot-ingest-pg-"))) as server:
            return run(args, server.url)
    return run(args, None)


def run(args: argparse.Namespace, database_url: str | None) -> int:
    root = Path(tempfile.mkdtemp(prefix="mailbot-ingest-"))
    try:
        data = root / "data"
        data.mkdir()
        for name in ("staff.toml", "participants.csv"):
            shutil.copy(REPO / "data" / name, data / name)
        settings = load_settings(data_dir=str(data), templates_dir=str(REPO / "templates"),
                                 secret="bench-secret-of-at-least-thirty-two-bytes", smtp_host="127.0.0.1",
                                 smtp_port="2", smtp_security="none",
                                 **({"database_url": database_url} if database_url else {}))
        app = App(settings)
        steps = [] if args.quiet else STEPS
        for owner, name, label in steps:
            timed(owner(app), name, label)
        statements: collections.Counter[str] = collections.Counter()

        trace: list[str] = []

        def _count(statement: str) -> None:
            statements[statement.split(None, 1)[0].upper()] += 1
            if args.trace:
                trace.append(" ".join(statement.split())[:160])

        trips = [0]

        def _trip() -> None:
            trips[0] += 1

        raws = [complaint(i, "timing", args.bodies == "long")[0] for i in range(COUNTED + args.count)]
        position = CursorPosition("bench@localhost/INBOX", 1)
        arrivals = [Arrival(raw, datetime.now(timezone.utc), uid=i + 1) for i, raw in enumerate(raws)]
        max_seconds = INTAKE_TRANSACTION_SECONDS if args.as_intake else None
        # The statements are counted on complaints of their own, taken in first and not timed: SQLite hands its
        # trace callback each statement written out with its values (a letter's raw bytes as hex), which made
        # every complaint look ~1 ms slower than it is. With --trace the timed ones are traced as well.
        stop_counting = on_every_statement(app.engine, _count, _trip)
        app.ingestor.ingest_batch(arrivals[:COUNTED], position, max_seconds=max_seconds)
        counted = statements.copy()
        counted_trips = trips[0]
        if not args.trace:
            stop_counting()
        arrivals = arrivals[COUNTED:]
        TIMES.clear()
        # CPU time, not wall time: on PostgreSQL the wall clock counts the server's work and the round trips.
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        began = time.perf_counter()
        cpu_began = time.process_time()
        if profiler:
            profiler.enable()
        app.ingestor.ingest_batch(arrivals[:-1], position, max_seconds=max_seconds)
        del trace[:]
        app.ingestor.ingest_batch(arrivals[-1:], position)
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(args.profile))
        total = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
        print(f"{args.count} complaints in {total:.2f} s: {total / args.count * 1000:.2f} ms each "
              f"(CPU {cpu / args.count * 1000:.2f} ms each)")
        print(f"  SQL statements per complaint (the {COUNTED} before): " + ", ".join(
            f"{verb} {n / COUNTED:.1f}" for verb, n in counted.most_common()))
        if app.engine.dialect.name == "postgresql":
            print(f"  round trips to the server per complaint: {counted_trips / COUNTED:.2f}")
        for statement in trace:
            print("    " + statement)
        for label, seconds in TIMES.items():
            print(f"  {label:34s} {seconds / args.count * 1000:7.3f} ms/msg")
        app.engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
