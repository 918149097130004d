"""Repeats per kill: the daemon killed with SIGKILL at random moments while a backlog's letters flow.

Run from the repository root:

    .venv/bin/python bench/kill_repeats.py [--backlog 300] [--kills 8] [--seed 1]

A real Dovecot holds the backlog and a real SMTP sink (in its own process) counts every letter by its
Message-ID. The daemon is started, killed with SIGKILL once the sink has seen some letters of this run,
and started again, --kills times; then it runs to the end. Every letter that reached the sink more than
once is a repeat. Issue 11's goal: at most one repeat per four kills, and no letter more than twice.
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from tests.integration.bot import Daemon, make_mail, new_bot  # noqa: E402
from tests.servers import DovecotServer, SmtpSink  # noqa: E402

DEBUG = "--debug" in sys.argv


def run(backlog: int, kills: int, seed: int, whole: bool = False) -> dict[str, object]:
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="mailbot-kill-"))
    root.chmod(0o755)
    try:
        with DovecotServer(root / "dovecot") as dovecot, SmtpSink(root / "sink") as sink:
            bot = new_bot(root / "bot", dovecot, sink)
            imap = dovecot.client()
            try:
                for n in range(backlog):
                    imap.append("INBOX", make_mail(frm=f"person{n}@example.com", subject=f"Complaint {n}"))
            finally:
                imap.logout()
            expected = 2 * backlog  # an acknowledgement and a staff notification each
            kill_times: list[float] = []
            for _ in range(kills):
                daemon = Daemon(bot)
                before = sink.count()
                daemon.start()
                # Kill at a random moment while letters flow: once this run's letters have started to reach the
                # sink (not the instant one arrives, which would aim at the window instead of sampling it).
                deadline = time.monotonic() + 60
                while sink.count() < min(before + 5, expected) and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.4))
                assert daemon.proc is not None
                # --whole: the process and its SMTP child together, as a service manager kills a cgroup.
                children = psutil.Process(daemon.proc.pid).children(recursive=True) if whole else []
                daemon.proc.kill()
                for child in children:
                    child.kill()
                daemon.proc.wait()
                kill_times.append(time.time())
            daemon = Daemon(bot)
            daemon.start()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                ids = {m.message["Message-ID"] for m in sink.messages()}
                if len(ids) >= expected:
                    break
                time.sleep(0.2)
            time.sleep(1)
            daemon.stop()
            counts = collections.Counter(m.message["Message-ID"] for m in sink.messages())
            if DEBUG:
                by_id = collections.defaultdict(list)
                for m in sink.messages():
                    by_id[m.message["Message-ID"]].append(m.received_at)
                for mid, times in by_id.items():
                    if len(times) > 1:
                        first = times[0]
                        nearest = min(kill_times, key=lambda k: abs(k - first))
                        print(f"repeat {mid[:12]} copies={len(times)} first-kill={first - nearest:+.3f}s "
                              f"gaps={[round(t - first, 3) for t in times[1:]]}")
            repeats = sum(c - 1 for c in counts.values())
            return {"letters": len(counts), "expected": expected, "kills": kills, "repeats": repeats,
                    "most_copies": max(counts.values()) if counts else 0,
                    "repeats_per_kill": repeats / kills if kills else 0.0}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=300)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--debug", action="store_true", help="list each repeat against the nearest kill")
    parser.add_argument("--whole", action="store_true", help="kill the SMTP child process with the bot")
    args = parser.parse_args()
    result = run(args.backlog, args.kills, args.seed, args.whole)
    print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
