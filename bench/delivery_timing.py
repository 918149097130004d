"""Outbox delivery alone: N letters already queued, one `deliver_due` pass to a real SMTP sink (another process).

    .venv/bin/python bench/delivery_timing.py [--letters 2000] [--concurrency 8] [--profile OUT]
                                              [--sink aiosmtpd|postfix]

Prints wall time, letters per second and this process's CPU time for the pass.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.run import complaint, make_sink  # noqa: E402
from mailbot.bootstrap import App  # noqa: E402
from mailbot.services.mailbox import Arrival  # noqa: E402
from mailbot.settings import load_settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=2000, help="letters to send (two per complaint)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--sink", choices=["aiosmtpd", "postfix"], default="aiosmtpd",
                        help="postfix: Postfix's smtp-sink, which offers PIPELINING and costs a tenth of the CPU")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mailbot-delivery-"))
    try:
        with make_sink(args.sink, root / "sink") as sink:
            data = root / "data"
            data.mkdir()
            for name in ("staff.toml", "participants.csv"):
                shutil.copy(REPO / "data" / name, data / name)
            settings = load_settings(data_dir=str(data), templates_dir=str(REPO / "templates"), secret="bench-secret-of-at-least-thirty-two-bytes",
                                     smtp_host=sink.host, smtp_port=str(sink.port), smtp_security="none")
            app = App(settings)
            app.deliverer.concurrency = args.concurrency
            now = datetime.now(timezone.utc)
            app.ingestor.ingest_batch(Arrival(complaint(i, "deliv")[0], now) for i in range(args.letters // 2))
            # CPU time of this thread: waiting for the sink is not the bot's cost.
            profiler = cProfile.Profile(time.thread_time) if args.profile else None
            sink_process = psutil.Process(sink.pid)
            sink_before = sum(sink_process.cpu_times()[:2])
            before = resource.getrusage(resource.RUSAGE_SELF)
            began = time.perf_counter()
            if profiler:
                profiler.enable()
            report = asyncio.run(app.deliverer.deliver_due())
            if profiler:
                profiler.disable()
                profiler.dump_stats(str(args.profile))
            wall = time.perf_counter() - began
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            sink_cpu = sum(sink_process.cpu_times()[:2]) - sink_before
            arrived = sink.count()
            app.engine.dispose()
        print(f"sent {report.sent} (sink has {arrived}) in {wall:.2f} s: {report.sent / wall:.0f} letters/s, "
              f"CPU {cpu:.2f} s ({cpu / max(report.sent, 1) * 1000:.2f} ms/letter), sink CPU {sink_cpu:.2f} s "
              f"({sink_cpu / max(report.sent, 1) * 1000:.2f} ms/letter), concurrency {args.concurrency}, {args.sink}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
