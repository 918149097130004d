"""The daemon meeting a backlog: `mailbot run` started on a mailbox that already holds N complaints (a start after
an outage), timed from its start to the sink's last acknowledgement.

    .venv/bin/python bench/daemon_backlog.py [--backlog 2000] [--rounds 3] [--sink postfix|aiosmtpd] [--json]

`bench/run.py` measures `mailbot run --once` on a backlog; this is the daemon's way through the same work (its SMTP
child, and from 2026-12-07 its reader child). Prints, a round at a time: acknowledgements a second over the whole
run, the first and the last acknowledgement after the start, and the CPU of the daemon's processes a complaint (the
bot, its SMTP child, its reader child; each process's own CPU, sampled every 50 ms, so a child that has ended is
counted as last seen and never twice).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.run import ACK, SinkWatcher, fill_maildir, make_sink, reference_loop_s  # noqa: E402
from tests.integration.bot import Daemon, new_bot  # noqa: E402
from tests.servers import DovecotServer  # noqa: E402


def one_round(root: Path, count: int, sink_kind: str) -> dict[str, object]:
    with DovecotServer(root / "dovecot") as dovecot, make_sink(sink_kind, root / "sink") as sink:
        bot = new_bot(root / "bot", dovecot, sink)
        fill_maildir(dovecot, count, True)
        imap = dovecot.client()  # Dovecot indexes the new mail now, not during the timed run
        try:
            imap.select_folder("INBOX", readonly=True)
        finally:
            imap.logout()
        bot.cli("db", "upgrade")  # deploy-time work, outside the timed run
        os.sync()
        reference = reference_loop_s()
        daemon = Daemon(bot)
        started = time.time()
        daemon.start()
        assert daemon.proc is not None
        main = psutil.Process(daemon.proc.pid)
        watcher = SinkWatcher(sink)
        acks: list[float] = []
        cpu: dict[int, float] = {}
        try:
            while len(acks) < count:
                if time.time() - started > 300:
                    raise RuntimeError(f"{len(acks)} of {count} acknowledgements after 300 s:\n"
                                       f"{daemon.log.read_text()[-3000:]}")
                time.sleep(0.05)
                try:
                    for process in [main, *main.children(recursive=True)]:
                        times = process.cpu_times()
                        cpu[process.pid] = times.user + times.system
                except psutil.NoSuchProcess:
                    pass
                acks += [m.received_at - started for m in watcher.poll() if m.kind == ACK]
        finally:
            code = daemon.stop()
        if code != 0:
            raise RuntimeError(f"mailbot run exited {code}:\n{daemon.log.read_text()[-3000:]}")
        last = max(acks)
        return {"messages": count, "sink": sink_kind, "acks": len(acks), "acks_per_s": round(count / last, 1),
                "first_ack_s": round(min(acks), 2), "last_ack_s": round(last, 2),
                "cpu_ms_per_complaint": round(sum(cpu.values()) / count * 1000, 2), "processes": len(cpu),
                "reference_loop_s": round(reference, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sink", choices=["postfix", "aiosmtpd"], default="postfix")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="mailbot-daemon-backlog-") as folder:
            root = Path(folder)
            os.chmod(root, 0o755)  # Dovecot's users read below it
            result = one_round(root, args.backlog, args.sink)
        results.append(result)
        if not args.json:
            print(f"round {n + 1}: {result['acks_per_s']} acks/s, first {result['first_ack_s']} s, last "
                  f"{result['last_ack_s']} s, {result['cpu_ms_per_complaint']} ms of CPU a complaint "
                  f"({result['processes']} processes; reference loop {result['reference_loop_s']} s)", flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"median: {statistics.median(r['acks_per_s'] for r in results)} acks/s, "
              f"{statistics.median(r['cpu_ms_per_complaint'] for r in results)} ms a complaint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
