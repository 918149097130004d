"""What one delivery pass costs with little to send: the statements it runs and its CPU, on SQLite or PostgreSQL.

    .venv/bin/python bench/pass_cost.py [--passes 40] [--postgres]

Each round takes in one complaint (two letters) with the real Ingestor, then runs one `Deliverer.deliver_due`
pass to a real SMTP sink; only the pass is counted. A backlog used to start a pass after every intake commit
(~50 ms), so this fixed cost decided how fast a backlog went on PostgreSQL (runtime.PASS_SPACING).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


from bench.run import complaint  # noqa: E402
from bench.statements import on_every_statement  # noqa: E402
from mailbot.bootstrap import App  # noqa: E402
from mailbot.services.mailbox import Arrival  # noqa: E402
from mailbot.settings import load_settings  # noqa: E402
from tests.servers import PostgresServer, SmtpSink  # noqa: E402

_LITERALS = re.compile(r"'[^']*'|\b\d+\b")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passes", type=int, default=40)
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL server, not SQLite")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mailbot-pass-"))
    root.chmod(0o755)  # initdb runs as the postgres user
    try:
        with ExitStack() as stack:
            sink = stack.enter_context(SmtpSink(root / "sink"))
            url = stack.enter_context(PostgresServer(root / "pg")).url if args.postgres else None
            return run(args.passes, root, sink, url)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(passes: int, root: Path, sink: SmtpSink, url: str | None) -> int:
    data = root / "data"
    data.mkdir()
    for name in ("staff.toml", "participants.csv"):
        shutil.copy(REPO / "data" / name, data / name)
    settings = load_settings(data_dir=str(data), templates_dir=str(REPO / "templates"),
                             secret="bench-secret-of-at-least-thirty-two-bytes", smtp_host=sink.host,
                             smtp_port=str(sink.port), smtp_security="none", **({"database_url": url} if url else {}))
    app = App(settings)
    statements: collections.Counter[str] = collections.Counter()
    counting = [False]

    def count(text: str) -> None:
        if counting[0]:  # SQLite's trace has the values written in: one line per statement, not per value
            statements[_LITERALS.sub("?", " ".join(text.split()))[:100]] += 1

    on_every_statement(app.engine, count)

    warm = 5  # the first passes build plans and connections
    cpu = 0.0
    for n in range(passes + warm):
        app.ingestor.ingest_batch([Arrival(complaint(n, "pass", True)[0], datetime.now(timezone.utc))])
        counting[0] = n >= warm
        began = time.process_time()
        report = asyncio.run(app.deliverer.deliver_due())
        if n >= warm:
            cpu += time.process_time() - began
        counting[0] = False
        assert report.sent == 2, report
    print(f"{'PostgreSQL' if url else 'SQLite'}: one pass sending 2 letters: {cpu / passes * 1000:.2f} ms of CPU "
          f"(the SMTP conversation included), statements per pass:")
    for text, times in statements.most_common():
        print(f"  {times / passes:5.1f}  {text}")
    app.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
