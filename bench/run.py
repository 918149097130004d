"""mailbot benchmark: acknowledgement latency under the daemon, and backlog throughput of `mailbot run --once`.

Run from the repository root:

    .venv/bin/python bench/run.py [--latency-count 50] [--backlog 2000] [--rounds 2] [--sink postfix|aiosmtpd]
                                  [--db sqlite|postgres] [--prefill N] [--bodies long|short] [--json]

Each part starts its own throwaway Dovecot and SMTP sink (tests/servers.py, or Postfix's smtp-sink) and a fresh
data directory, and runs the bot as a real `python -m mailbot` subprocess. The backlog is measured against a bare
loop (the same fetch and the same number of 1 KB letters to the same sink, nothing else), interleaved with it round
by round; the latency against a bare IMAP IDLE client on the same mailbox. See bench/README.md for what the numbers
mean.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.parser
import email.policy
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
from imapclient import IMAPClient  # noqa: E402

from bench.peak_rss import peak_rss_mb  # noqa: E402
from tests.integration.bot import Bot, Daemon, make_mail, new_bot  # noqa: E402
from tests.servers import DovecotServer, PostgresServer, SmtpSink, dovecot_binary, free_port  # noqa: E402

ACK = "acknowledgement"

BODIES = (
    "I was promised a call back from my mentoring coordinator a week ago and nobody has rung me.\n\n"
    "I have emailed twice since then. Could someone tell me what is going on with my application?",
    "My son's mentor has missed the last three sessions without letting us know in advance.\n\n"
    "We rearranged our week each time. This is not what we were told to expect when we signed up.",
    "The online form kept failing when I tried to update my details, and when I phoned the office "
    "the line just rang out.\n\nPlease can someone look into this and get back to me.",
    "I attended the induction evening but have heard nothing since, even though I was told I would be "
    "matched within a fortnight. It has now been two months.",
)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (what a small sample can honestly claim)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


LINES = (
    "I am writing to complain about how my mentoring has been handled over the last two months.",
    "My mentor cancelled our sessions at short notice on three occasions without explanation.",
    "Each time I had arranged to leave work early, and twice I was already on my way.",
    "When I contacted the coordinator I was told someone would call me back within a day.",
    "Nobody called, and my follow-up email a week later did not receive a reply either.",
)


def long_body(i: int) -> str:
    """A 20-line complaint, as people write them (the issue's measure), varied by ``i``."""
    return "\n".join(f"{LINES[(i + n) % len(LINES)]}" + (" It still matters to me." if n % 4 == 3 else "")
                     for n in range(20))


def complaint(i: int, tag: str, long: bool = False) -> tuple[bytes, str]:
    """A plain complaint from a distinct sender; returns (raw, Message-ID without brackets)."""
    mid = f"bench-{tag}-{i:05d}@example.net"
    raw = make_mail(
        frm=f"Complainant {i} <complainant{i:05d}.{tag}@example.net>",
        subject=f"Complaint {i}: nobody got back to me",
        body=long_body(i) if long else BODIES[i % len(BODIES)],
        message_id=f"<{mid}>",
    )
    return raw, mid


# ---- the SMTP sink: aiosmtpd (tests/servers.py) or Postfix's smtp-sink ---------------------------------------

SMTP_SINK = Path("/usr/sbin/smtp-sink")


class PostfixSink:
    """Postfix's smtp-sink on loopback, writing each message to a file (``-d``) so the script can read the
    letters' headers; it takes about a tenth of the aiosmtpd sink's CPU for the same letters, so the sink no
    longer hides the bot's cost. The arrival time is the file's modification time."""

    host = "127.0.0.1"

    def __init__(self, root: Path) -> None:
        self.dir = root / "messages"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "PostfixSink":
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.dir, "nobody")
        self.proc = subprocess.Popen([str(SMTP_SINK), "-u", "nobody", "-R", str(self.dir), "-d", "%Y%m%d%H%M%S.",
                                      f"{self.host}:{self.port}", "256"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("smtp-sink did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def count(self) -> int:
        """The letters that have arrived (one file each), as ``SmtpSink.count`` says."""
        return sum(1 for _ in self.dir.iterdir())


def make_sink(kind: str, root: Path) -> SmtpSink | PostfixSink:
    return PostfixSink(root) if kind == "postfix" else SmtpSink(root)


def machine() -> dict[str, object]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }


# ---- watching the sink ----------------------------------------------------------------------------


@dataclass
class Letter:
    kind: str
    in_reply_to: str
    received_at: float


class SinkWatcher:
    """Reads the sink's directory incrementally (headers only), so polling stays cheap however much arrived."""

    def __init__(self, sink: SmtpSink | PostfixSink) -> None:
        self.dir = sink.dir
        self.postfix = isinstance(sink, PostfixSink)
        self.seen: set[str] = set()
        self.letters: list[Letter] = []
        self.parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)

    def poll(self) -> list[Letter]:
        new = []
        names = self.dir.glob("*") if self.postfix else self.dir.glob("*.eml")
        for eml in sorted(p for p in names if p.name not in self.seen and not p.name.endswith(".json")):
            try:
                raw = eml.read_bytes()
                if self.postfix:
                    if b"\n\n" not in raw.replace(b"\r\n", b"\n"):
                        continue  # its headers are still being written
                    received_at = eml.stat().st_mtime
                else:
                    received_at = float(json.loads(eml.with_suffix(".json").read_text())["received_at"])
            except (OSError, ValueError, KeyError):
                continue  # not complete yet: the next poll reads it
            headers = self.parser.parsebytes(raw)
            letter = Letter(kind=str(headers.get("X-Mailbot-Letter", "")),
                            in_reply_to=str(headers.get("In-Reply-To", "")).strip().strip("<>"),
                            received_at=received_at)
            self.seen.add(eml.name)
            self.letters.append(letter)
            new.append(letter)
        return new


# ---- part (a): latency -----------------------------------------------------------------------------


class IdleFloor:
    """A bare IMAP IDLE client on the same mailbox: when Dovecot tells an idling client of each new message.
    That is the floor under any IMAP bot's latency (Dovecot waits before it notifies); the bot's cost is above it."""

    def __init__(self, dovecot: DovecotServer) -> None:
        self.client = IMAPClient(dovecot.host, port=dovecot.port, use_uid=True, ssl=False)
        self.client.login("complaints", "secret")
        self.count = int(self.client.select_folder("INBOX", readonly=True)[b"EXISTS"])
        self.seen_at: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.client.idle()  # one IDLE for the whole run: a client leaving and re-entering it would miss the moment
        while not self.stop.is_set():
            self._note(self.client.idle_check(timeout=0.2))
        self._note(self.client.idle_done()[1])

    def _note(self, responses: list) -> None:  # type: ignore[type-arg]
        now = time.time()
        for response in responses:
            if isinstance(response, tuple) and len(response) >= 2 and response[1] == b"EXISTS":
                for n in range(self.count + 1, int(response[0]) + 1):
                    self.seen_at[n] = now
                self.count = max(self.count, int(response[0]))

    def __enter__(self) -> "IdleFloor":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.logout()


def bench_latency(root: Path, count: int, verbose: bool, sink_kind: str, long: bool) -> dict[str, object]:
    with DovecotServer(root / "dovecot") as dovecot, make_sink(sink_kind, root / "sink") as sink:
        bot = new_bot(root / "bot", dovecot, sink)  # type: ignore[arg-type]
        daemon = Daemon(bot)
        daemon.start()
        try:
            daemon.wait_log("IMAP intake idling", timeout=30)
            watcher = SinkWatcher(sink)
            imap = dovecot.client()
            latencies: list[float] = []
            floors: list[float] = []
            try:
                with IdleFloor(dovecot) as floor:
                    for i in range(count):
                        raw, mid = complaint(i, "lat", long)
                        t0 = time.time()
                        imap.append("INBOX", raw)
                        ack = None
                        deadline = time.monotonic() + 15
                        while ack is None:
                            for letter in watcher.poll():
                                if letter.kind == ACK and letter.in_reply_to == mid:
                                    ack = letter
                            if ack is None:
                                if time.monotonic() > deadline:
                                    raise TimeoutError(f"no acknowledgement for complaint {i} within 15 s:\n"
                                                       + daemon.log.read_text()[-3000:])
                                time.sleep(0.002)
                        latencies.append(ack.received_at - t0)
                        while i + 1 not in floor.seen_at and time.monotonic() < deadline:
                            time.sleep(0.002)
                        floors.append(floor.seen_at.get(i + 1, float("nan")) - t0)
                        if verbose:
                            print(f"  complaint {i:3d}: ack after {latencies[-1] * 1000:6.0f} ms, IDLE floor "
                                  f"{floors[-1] * 1000:6.0f} ms", file=sys.stderr)
                        # Let the staff notification land too, so each complaint starts from an idle bot.
                        deadline = time.monotonic() + 5
                        while len(watcher.letters) < 2 * (i + 1) and time.monotonic() < deadline:
                            watcher.poll()
                            time.sleep(0.005)
                        time.sleep(0.2)
            finally:
                imap.logout()
        finally:
            code = daemon.stop()
        if code != 0:
            raise RuntimeError(f"mailbot run exited {code}:\n{daemon.log.read_text()[-3000:]}")
    above = [lat - fl for lat, fl in zip(latencies, floors) if fl == fl]
    return {
        "count": len(latencies),
        "p50_s": round(statistics.median(latencies), 4),
        "p95_s": round(percentile(latencies, 95), 4),
        "max_s": round(max(latencies), 4),
        "min_s": round(min(latencies), 4),
        "idle_floor_p50_s": round(statistics.median([f for f in floors if f == f]), 4),
        # Per complaint, the bot's acknowledgement less the bare client's notice of the same message.
        "above_floor_p50_s": round(statistics.median(above), 4) if above else None,
        "above_floor_p95_s": round(percentile(above, 95), 4) if above else None,
    }


# ---- part (b): backlog -----------------------------------------------------------------------------


# `mailbot run --once` under cProfile timed by the main thread's CPU clock; argv[1] is the output file. Intake's
# thread has a profile of its own, timed by its own CPU clock, in argv[1] + ".intake".
PROFILED_ONCE = """
import cProfile, runpy, sys, time
out = sys.argv[1]
sys.argv = ["mailbot", "run", "--once"]
import mailbot.runtime
# Intake's thread too, written beside the main thread's as FILE.intake.
_intake = mailbot.runtime.intake_once
intake_profiler = cProfile.Profile(time.thread_time)
def intake_once(*args, **kwargs):
    intake_profiler.enable()
    try:
        return _intake(*args, **kwargs)
    finally:
        intake_profiler.disable()
        intake_profiler.dump_stats(out + ".intake")
mailbot.runtime.intake_once = intake_once
profiler = cProfile.Profile(time.thread_time)
profiler.enable()
try:
    runpy.run_module("mailbot", run_name="__main__")
finally:
    profiler.disable()
    profiler.dump_stats(out)
"""


def postgres_cpu(server: PostgresServer) -> float:
    """CPU seconds of a PostgreSQL server so far: the postmaster, its live processes, and those it has reaped
    (each client connection's backend is one; its time joins the postmaster's children's when it ends)."""
    postmaster = psutil.Process(int((server.datadir / "postmaster.pid").read_text().split()[0]))
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in postmaster.children():
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass  # ended meanwhile: counted with the reaped ones next time
    return total


def reference_loop_s() -> float:
    """CPU seconds for a fixed pure-Python loop: how fast this (shared) machine is right now.

    The same work's CPU time has been seen to vary by half from one minute to the next here; this
    number, taken just before the backlog run, says which kind of minute it was.
    """
    began = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i
    return round(time.process_time() - began, 2)


def fill_maildir(dovecot: DovecotServer, count: int, long: bool = False) -> float:
    """Write `count` complaints straight into the Maildir's new/ (as an MTA's local delivery would)."""
    started = time.monotonic()
    box = dovecot.maildir()
    owner = dovecot.mail_root.stat()
    for sub in ("", "cur", "new", "tmp"):
        path = box / sub
        path.mkdir(exist_ok=True)
        os.chown(path, owner.st_uid, owner.st_gid)
    host = socket.gethostname().replace("/", "_").replace(":", "_")
    base = int(time.time()) - 60
    for i in range(count):
        raw, _ = complaint(i, "backlog", long)
        name = f"{base}.M{i:06d}P{os.getpid()}Q{i}.{host},S={len(raw)}"
        tmp = box / "tmp" / name
        with open(tmp, "wb") as file:
            file.write(raw)
        os.chmod(tmp, 0o644)
        os.chown(tmp, owner.st_uid, owner.st_gid)
        os.utime(tmp, (base + i * 0.001, base + i * 0.001))  # INTERNALDATE, in arrival order
        os.rename(tmp, box / "new" / name)
    return time.monotonic() - started


def _machine_ticks() -> tuple[int, int, int]:
    """(busy, stolen, all) clock ticks of every CPU since boot, from /proc/stat. Idle and waiting for I/O are not
    busy; time the hypervisor gave to other guests (steal) is, since this machine could not use it."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest time is already in user)
    return total - fields[3] - fields[4], fields[7], total


def _busy_share(before: tuple[int, int, int], after: tuple[int, int, int]) -> dict[str, float]:
    """The machine's CPUs busy, and stolen, over a run: shares of all the CPUs' time."""
    total = max(1, after[2] - before[2])
    return {"busy": round((after[0] - before[0]) / total, 2), "stolen": round((after[1] - before[1]) / total, 2)}


def thread_times(schedstat: str, start_ticks: int, now_s: float, ticks_per_s: float) -> dict[str, float]:
    """Where one thread's life went, from its ``/proc/PID/task/TID/schedstat`` ("ns on a CPU, ns runnable but
    waiting for one, slices") and its start (field 22 of its ``stat``, in clock ticks since boot) as seen at
    ``now_s`` (CLOCK_BOOTTIME): on a CPU, waiting for a CPU, and waiting on anything else (the interpreter lock,
    a lock or condition, the network, the disk), in seconds."""
    on_cpu_ns, runqueue_ns, _slices = (int(x) for x in schedstat.split()[:3])
    life = max(0.0, now_s - start_ticks / ticks_per_s)
    on_cpu, runqueue = on_cpu_ns / 1e9, runqueue_ns / 1e9
    return {"life_s": round(life, 2), "cpu_s": round(on_cpu, 2), "runqueue_s": round(runqueue, 2),
            "other_s": round(max(0.0, life - on_cpu - runqueue), 2)}


def _thread_samples(pid: int) -> dict[int, tuple[str, int]]:
    """Each thread of ``pid``: its schedstat line and its start in clock ticks since boot (Linux only)."""
    found: dict[int, tuple[str, int]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                schedstat = f.read()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                start = int(f.read().rsplit(")", 1)[1].split()[19])
        except (OSError, ValueError, IndexError):
            continue
        found[int(tid)] = (schedstat, start)
    return found


def threads_cpu_s(samples: dict[int, tuple[str, int, float]]) -> float:
    """CPU seconds of all of mailbot's own threads as last seen (Python 3.11 names no thread for the kernel)."""
    return round(sum(int(schedstat.split()[0]) for schedstat, _start, _seen in samples.values()) / 1e9, 2)


def busiest_thread(samples: dict[int, tuple[str, int, float]]) -> dict[str, float] | None:
    """Of the threads last seen (schedstat, start ticks, when seen), the one longest on a CPU: in a backlog, intake's."""
    ticks = os.sysconf("SC_CLK_TCK")
    times = [thread_times(schedstat, start, seen, ticks) for schedstat, start, seen in samples.values()]
    return max(times, key=lambda t: t["cpu_s"], default=None)


def _child_kind(child: psutil.Process) -> str:
    """Which of mailbot's children this is: the SMTP worker, the delivery process (a backlog's, since the
    twenty-sixth look), or the reader of a backlog's mail (mail.parse_pool)."""
    try:
        command = " ".join(child.cmdline())
    except psutil.Error:
        return "other"
    for marker, kind in (("smtp_process", "smtp_worker"), ("delivery_process", "delivery"),
                         ("multiprocessing", "reader")):
        if marker in command:
            return kind
    return "other"


def _track_rss(pid: int, peak: list[int], done: threading.Event, child_cpu: dict[int, float] | None = None,
               threads: dict[int, tuple[str, int, float]] | None = None,
               child_kinds: dict[int, str] | None = None) -> None:
    """Peak of the sum of resident sets of mailbot and its children (the SMTP worker or the delivery process, the
    reader); in ``child_cpu``, each child's CPU seconds as last seen (it is reaped before the end, so a little is
    missed), and in ``child_kinds`` which child it is; in ``threads``, each of mailbot's own threads as last seen
    (``_thread_samples``, with the CLOCK_BOOTTIME of the sample), every fifth sample: up to 0.1 s of a thread's end
    is missed."""
    try:
        proc = psutil.Process(pid)
        children: list[psutil.Process] = []
        listed = 0.0
        sampled = 0
        while not done.is_set():
            # Finding the children walks every process on the machine (0.6 ms a time here): at every sample, 50 a
            # second, that took 3% of a core from the bot during its run and none from the bare loop. The children
            # (the SMTP worker, the mail reader) live for the whole pass, so twice a second finds them.
            if time.monotonic() - listed >= 0.5:
                children, listed = proc.children(recursive=True), time.monotonic()
            total = proc.memory_info().rss
            for child in children:
                try:
                    total += child.memory_info().rss
                    if child_cpu is not None:
                        child_cpu[child.pid] = sum(child.cpu_times()[:2])
                        if child_kinds is not None and child.pid not in child_kinds:
                            child_kinds[child.pid] = _child_kind(child)
                except psutil.NoSuchProcess:
                    pass
            peak[0] = max(peak[0], total)
            sampled += 1
            if threads is not None and hasattr(time, "CLOCK_BOOTTIME") and sampled % 5 == 0:
                seen = time.clock_gettime(time.CLOCK_BOOTTIME)
                for tid, (schedstat, start) in _thread_samples(pid).items():
                    threads[tid] = (schedstat, start, seen)
            done.wait(0.02)
    except psutil.NoSuchProcess:
        pass


LETTER_1KB = (b"From: complaints@1mm.org.uk\r\nSubject: [1MM-2026-0001] We have received your complaint\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + b"Thank you for your complaint. Thank you.\r\n" * 24)
# Short lines, as a letter has: one line of 1,020 characters broke RFC 5321's limit of 998, and aiosmtpd refused it.


def bare_loop(dovecot: DovecotServer, sink: SmtpSink | PostfixSink, count: int) -> dict[str, object]:
    """The floor under any bot on these servers: fetch the same messages the same way (UID FETCH in chunks of
    100, BODY.PEEK[]), and send the same number of letters (two per message, 1 KB each) to the same sink over one
    connection; no parsing, no database. Nothing changes in the mailbox, so the bot then meets the same mail."""
    import smtplib

    started, cpu, ticks = time.time(), time.process_time(), _machine_ticks()
    imap = IMAPClient(dovecot.host, port=dovecot.port, use_uid=True, ssl=False)
    imap.login("complaints", "secret")
    imap.select_folder("INBOX", readonly=True)
    uids = imap.search("ALL")
    fetched = 0
    smtp = smtplib.SMTP(sink.host, sink.port)
    for start in range(0, len(uids), 100):
        for uid, data in imap.fetch(uids[start:start + 100], ["BODY.PEEK[]", "INTERNALDATE"]).items():
            fetched += 1
            for n in range(2):
                smtp.sendmail("complaints@1mm.org.uk", [f"person{uid}.{n}@example.net"], LETTER_1KB)
    smtp.quit()
    imap.logout()
    wall = time.time() - started
    if fetched != count:
        raise RuntimeError(f"the bare loop fetched {fetched} messages, expected {count}")
    return {"wall_s": round(wall, 2), "per_s": round(count / wall, 1), "cpu_s": round(time.process_time() - cpu, 2),
            "machine_busy": _busy_share(ticks, _machine_ticks())}


def bench_backlog(root: Path, count: int, profile: Path | None, sink_kind: str = "postfix", db: str = "sqlite",
                  prefill: int = 0, long: bool = True, bare: bool = True, spy: Path | None = None) -> dict[str, object]:
    """One round: a fresh Dovecot, sink and data directory; the bare loop, then the bot, on the same mail."""
    with DovecotServer(root / "dovecot") as dovecot, make_sink(sink_kind, root / "sink") as sink, \
            (PostgresServer(root / "postgres") if db == "postgres" else contextlib.nullcontext()) as postgres:
        bot = new_bot(root / "bot", dovecot, sink)  # type: ignore[arg-type]
        if postgres is not None:
            bot.extra["MAILBOT_DATABASE_URL"] = postgres.url
        fill_s = fill_maildir(dovecot, count, long)
        # Let Dovecot index the new mail now, so the timed run measures the bot, not Dovecot's first scan.
        imap = dovecot.client()
        try:
            waiting = imap.select_folder("INBOX", readonly=True)[b"EXISTS"]
        finally:
            imap.logout()
        if waiting != count:
            raise RuntimeError(f"Dovecot sees {waiting} messages, expected {count}")
        # Migrations once beforehand (as `mailbot db upgrade` at deploy time), outside the timed run.
        bot.cli("db", "upgrade")
        if prefill:
            sys.path.insert(0, str(REPO / "bench"))
            from open_cases import fill

            fill(bot.data_dir, prefill, postgres.url if postgres is not None else None)
        # Each timed run starts with nothing of the run before it still being written to disk: without this the
        # first run of a round (the bare loop) met the kernel writing back the 2,000 message files just filled
        # and went at half its speed (900 against 1,900 a second), so the ratio below flattered the bot.
        os.sync()
        if bare:
            # One untimed bare loop first, so the timed one meets the servers as the bot's run will, after a
            # backlog's worth of letters: a sink's first 4,000 letters went at half the pace of the next (the send
            # phase 1.1-2.2 s against 0.55-0.97 s, even after a 500-letter warm-up), so the ratio flattered the bot.
            bare_loop(dovecot, sink, count)
            os.sync()
        reference_s = reference_loop_s()
        bare_result = bare_loop(dovecot, sink, count) if bare else None
        os.sync()  # the bare loop's 4,000 letters at the sink: written before the bot's run, not during it

        cmd = [sys.executable]
        if spy:
            # Sampled stacks of every thread and the SMTP child, as collapsed lines (flamegraph.pl's input). Threads
            # waiting in psycopg's poll still count as busy here: read Connection.wait as time spent on the server.
            cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--rate", "250", "--format", "raw",
                   "--subprocesses", "--threads", "--nonblocking", "--output", str(spy), "--", *cmd]
        if profile:
            # CPU time, not wall time: on these shared machines the wall clock mostly measures the neighbours.
            cmd += ["-c", PROFILED_ONCE, str(profile)]
        else:
            cmd += ["-m", "mailbot", "run", "--once"]
        log_path = root / "once.log"
        peak = [0]
        done = threading.Event()
        load_before = round(os.getloadavg()[0], 2)
        sink_process = psutil.Process(sink.pid)
        sink_cpu_before = sum(sink_process.cpu_times()[:2])
        server_cpu_before = postgres_cpu(postgres) if postgres is not None else 0.0
        with open(log_path, "wb") as log:
            started, ticks = time.time(), _machine_ticks()
            proc = subprocess.Popen(cmd, env=bot.env(), cwd=bot.root, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
            child_cpu: dict[int, float] = {}
            threads: dict[int, tuple[str, int, float]] = {}
            child_kinds: dict[int, str] = {}
            tracker = threading.Thread(target=_track_rss, daemon=True,
                                       args=(proc.pid, peak, done, child_cpu, threads, child_kinds))
            tracker.start()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.time() - started
            machine_busy = _busy_share(ticks, _machine_ticks())
            proc.returncode = os.waitstatus_to_exitcode(status)
            done.set()
            tracker.join()
        if proc.returncode != 0:
            raise RuntimeError(f"mailbot run --once exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        sink_cpu = sum(sink_process.cpu_times()[:2]) - sink_cpu_before
        server_cpu = postgres_cpu(postgres) - server_cpu_before if postgres is not None else None
        watcher = SinkWatcher(sink)
        letters = [x for x in watcher.poll() if x.kind]  # the bare loop's letters carry no X-Mailbot-Letter
        acks = [x for x in letters if x.kind == ACK]
        ack_times = sorted(x.received_at - started for x in acks)
        startup = startup_times(bot) if not (profile or spy) else None
    cpu = usage.ru_utime + usage.ru_stime
    result: dict[str, object] = {
        "messages": count,
        "sink": sink_kind,
        "db": db,
        "prefill": prefill,
        "bodies": "20 lines" if long else "short",
        "fill_s": round(fill_s, 2),
        "wall_s": round(wall, 2),
        "acks": len(acks),
        "letters": len(letters),
        "acks_per_s": round(len(acks) / wall, 1),
        "first_ack_s": round(ack_times[0], 2) if ack_times else None,
        "last_ack_s": round(ack_times[-1], 2) if ack_times else None,
        # How evenly the letters flowed: the longest time the sink went without one between the first and the last,
        # and how often that was more than 0.5 s (a delivery pass comes every 0.3 s at most while there is work).
        **letter_pauses(sorted(x.received_at for x in letters)),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_complaint": round(1000 * cpu / count, 2),
        # Of which the child processes (the SMTP worker or a backlog's delivery process, and the reader of a backlog's
        # mail), as last sampled every 20 ms: the rest is the main process. (The key's name is older than both.)
        "smtp_worker_cpu_ms_per_complaint": round(1000 * sum(child_cpu.values()) / count, 2),
        # The same, child by child: {"delivery": ms, "smtp_worker": ms, "reader": ms} (those that ran).
        "children_cpu_ms_per_complaint": {
            kind: round(1000 * sum(cpu_s for pid, cpu_s in child_cpu.items() if child_kinds.get(pid) == kind) / count, 2)
            for kind in sorted(set(child_kinds.values()))},
        "sink_cpu_s": round(sink_cpu, 2),
        # mailbot's busiest thread (intake's, in a backlog): on a CPU, waiting for one, waiting on anything else.
        "busiest_thread": busiest_thread(threads),
        # All of mailbot's own threads: less the busiest, what delivery's bookkeeping and the rest cost the process.
        "threads_cpu_s": threads_cpu_s(threads),
        "machine_busy": machine_busy,
        "postgres_cpu_s": round(server_cpu, 2) if server_cpu is not None else None,
        "load_before": load_before,
        "reference_loop_s": reference_s,
        # Linux: KiB; for wait4 the largest of mailbot and its reaped SMTP worker, not their sum, and never less than
        # this benchmark's own peak when the bot started (Linux carries it over the exec: ~226 MB after --prefill
        # 50000). The sampled figure below has neither fault.
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        # mailbot and its SMTP worker together, sampled every 20 ms: the one the target is judged on.
        "peak_rss_sampled_mb": round(peak[0] / 2**20, 1),
        "output": log_path.read_text().strip()[-500:],
    }
    # Every process's CPU on the machine during the run (the bot, its children, Dovecot, the sink, PostgreSQL and
    # anything else running), a complaint: the machine's busy share of all its CPUs' time, over the run.
    cpus = os.cpu_count() or 1
    result["machine_cpu_ms_per_complaint"] = round(1000 * machine_busy["busy"] * cpus * wall / count, 2)
    if bare_result is not None:
        result["bare"] = bare_result
        result["ratio_to_bare"] = round(result["acks_per_s"] / bare_result["per_s"], 2)  # type: ignore[operator]
        # What running at half the bare loop's rate leaves a complaint on these CPUs, every process's CPU included,
        # were they all kept busy: the CPU a complaint that the ratio's goal asks of the whole machine.
        result["half_bare_cpu_ms_per_complaint"] = round(
            1000 * cpus / (0.5 * float(bare_result["per_s"])), 2)  # type: ignore[arg-type]
    if startup is not None:
        result["startup"] = startup
    return result


def startup_times(bot: Bot, runs: int = 5) -> dict[str, object]:
    """Wall time of `mailbot cases` and of `mailbot run --once` with nothing to do (the backlog done), alternated;
    and the idle pass's peak RSS."""
    timings: dict[str, list[float]] = {"cases": [], "once_idle": [], "libraries": [], "core_libraries": [],
                                       "mail_libraries": []}
    # The floors: a Python that only imports the libraries each command cannot do without. The listing reads with
    # SQLAlchemy Core, and so does an idle pass, which also reads the mailbox (imapclient) from an event loop
    # (asyncio). ``libraries`` adds pydantic, which every command imported for its settings until they were read
    # by hand (2026-12-06, night; pydantic-settings' own imports came on top), kept for comparison with earlier runs.
    commands = (("cases", ["-m", "mailbot", "cases"]), ("once_idle", ["-m", "mailbot", "run", "--once"]),
                ("core_libraries", ["-c", "import sqlalchemy, sqlalchemy.dialects.sqlite"]),
                ("mail_libraries", ["-c", "import sqlalchemy, sqlalchemy.dialects.sqlite, imapclient, asyncio"]),
                ("libraries", ["-c", "import sqlalchemy, sqlalchemy.dialects.sqlite, pydantic"]))
    for _ in range(runs):
        for name, args in commands:
            began = time.monotonic()
            subprocess.run([sys.executable, *args], env=bot.env(), cwd=bot.root, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            timings[name].append(round(time.monotonic() - began, 3))
    result: dict[str, object] = {name: {"median_s": round(statistics.median(values), 3), "runs": values}
                                 for name, values in timings.items()}
    result["once_idle_peak_rss_mb"] = max(idle_peak_rss_mb(bot) for _ in range(2))
    return result


def idle_peak_rss_mb(bot: Bot) -> float:
    """Peak RSS of one `mailbot run --once` with nothing to do: the issue's "bot idle on a database of N open
    cases" (start-up, the mailbox, the scheduled work's look)."""
    # Through bench/peak_rss.py: started from here, the bot would report this benchmark's own peak.
    return peak_rss_mb([sys.executable, "-m", "mailbot", "run", "--once"], env=bot.env(), cwd=bot.root,
                       stderr=subprocess.DEVNULL)


# ---- output ------------------------------------------------------------------------------------------


def _spread(values: list[float], unit: str, fmt: str = "{:.2f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0]) + unit
    return f"{fmt.format(statistics.median(values))}{unit} ({', '.join(fmt.format(v) for v in values)})"


def letter_pauses(arrivals: list[float]) -> dict[str, object]:
    """The longest gap between consecutive letters at the sink, and the gaps over half a second."""
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    return {"longest_letter_pause_s": round(max(gaps), 2) if gaps else None,
            "letter_pauses_over_half_s": sum(g > 0.5 for g in gaps)}


def _split(result: dict[str, object]) -> str:
    """A backlog round's CPU a complaint, part by part (as last sampled, so each a little short)."""
    count = int(result["messages"])  # type: ignore[call-overload]
    intake = float(result["busiest_thread"]["cpu_s"])  # type: ignore[index]
    others = float(result["threads_cpu_s"]) - intake  # type: ignore[arg-type]
    children = result["children_cpu_ms_per_complaint"]
    delivery = children.get("delivery", 0.0) + children.get("smtp_worker", 0.0)  # type: ignore[union-attr]
    return " / ".join(f"{ms:.2f}" for ms in (1000 * intake / count, 1000 * others / count, delivery,
                                              children.get("reader", 0.0))) + " ms"  # type: ignore[union-attr]


def table(results: dict[str, object]) -> str:
    rows: list[tuple[str, str, str]] = []
    lat = results.get("latency")
    if isinstance(lat, dict):
        rows += [
            (f"ack latency p50 / p95 / max ({lat['count']} complaints)",
             f"{lat['p50_s'] * 1000:.0f} / {lat['p95_s'] * 1000:.0f} / {lat['max_s'] * 1000:.0f} ms", ""),
            ("bare IDLE client's notice, p50 (the floor)", f"{lat['idle_floor_p50_s'] * 1000:.0f} ms", ""),
            ("ack latency above the floor, p50 / p95",
             f"+{lat['above_floor_p50_s'] * 1000:.0f} / +{lat['above_floor_p95_s'] * 1000:.0f} ms", "<= +30 ms"),
        ]
    rounds = results.get("backlog")
    if isinstance(rounds, list) and rounds:
        first = rounds[0]
        n = first["messages"]

        def each(key: str) -> list[float]:
            return [float(r[key]) for r in rounds]

        rows += [
            (f"backlog: {n} complaints ({first['bodies']} bodies), {first['db']}, sink {first['sink']}, "
             f"prefill {first['prefill']:,} open cases, {len(rounds)} round(s)", "", ""),
            ("  wall time of run --once", _spread(each("wall_s"), " s"), ""),
            ("  acks per second", _spread(each("acks_per_s"), "/s", "{:.0f}"), ""),
            ("  CPU per complaint (mailbot and its child processes, whole run)",
             _spread(each("cpu_ms_per_complaint"), " ms"), "<= 4 ms"),
            ("    of which the children: delivery process or SMTP worker, mail reader (sampled)",
             _spread(each("smtp_worker_cpu_ms_per_complaint"), " ms"), ""),
            *([("    split: intake's thread / main process's other threads / delivery process + SMTP worker / reader",
                " | ".join(_split(r) for r in rounds), "")]
              if all(r.get("busiest_thread") and r.get("children_cpu_ms_per_complaint") for r in rounds) else []),
            ("  CPU of the sink", _spread(each("sink_cpu_s"), " s"), ""),
            *([("  the sink's longest wait between letters (pauses over 0.5 s)",
                " | ".join(f"{r['longest_letter_pause_s']:.2f} s ({r['letter_pauses_over_half_s']})" for r in rounds),
                "")] if all(r.get("longest_letter_pause_s") is not None for r in rounds) else []),
            *([("  CPU of PostgreSQL (server processes)", _spread(each("postgres_cpu_s"), " s"), "")]
              if first.get("postgres_cpu_s") is not None else []),
            ("  the machine's CPUs busy during the run (every process; of it stolen by the host)",
             _spread([100 * float(r["machine_busy"]["busy"]) for r in rounds], "%", "{:.0f}")
             + f"; stolen {', '.join(format(100 * r['machine_busy']['stolen'], '.0f') for r in rounds)}%", ""),
            *([("  intake's thread (mailbot's busiest): on a CPU / waiting for a CPU / waiting on anything else",
                " | ".join(f"{t['cpu_s']:.2f} / {t['runqueue_s']:.2f} / {t['other_s']:.2f} s of {t['life_s']:.2f}"
                           for t in (r["busiest_thread"] for r in rounds)), "")]
              if all(r.get("busiest_thread") for r in rounds) else []),
            ("  peak RSS, mailbot and its children (delivery process or SMTP worker, reader)",
             _spread(each("peak_rss_sampled_mb"), " MB", "{:.0f}"), ""),
        ]
        if all("bare" in r for r in rounds):
            rows += [
                ("  bare loop (same fetch, same letters, same sink)",
                 _spread([float(r["bare"]["per_s"]) for r in rounds], "/s", "{:.0f}"), ""),
                ("  the machine's CPUs busy during the bare loop",
                 _spread([100 * float(r["bare"]["machine_busy"]["busy"]) for r in rounds], "%", "{:.0f}"), ""),
                ("  bot against the bare loop", _spread(each("ratio_to_bare"), "x"), ">= 0.5x"),
                ("  CPU a complaint of every process on the machine during the bot's run",
                 _spread(each("machine_cpu_ms_per_complaint"), " ms"), ""),
                ("  ... what half the bare loop's rate leaves a complaint, all the CPUs busy",
                 _spread(each("half_bare_cpu_ms_per_complaint"), " ms"), ""),
            ]
        if all("startup" in r for r in rounds):
            rows += [
                ("  `mailbot cases`, wall (median of 5 a round)",
                 _spread([float(r["startup"]["cases"]["median_s"]) for r in rounds], " s", "{:.3f}"), "< 0.5 s"),
                ("  `mailbot run --once` with nothing to do",
                 _spread([float(r["startup"]["once_idle"]["median_s"]) for r in rounds], " s", "{:.3f}"), "< 0.5 s"),
                (f"  peak RSS of `mailbot run --once` with nothing to do, on the {n + first['prefill']:,} open cases",
                 _spread([float(r["startup"]["once_idle_peak_rss_mb"]) for r in rounds], " MB", "{:.0f}"),
                 "< 150 MB, flat"),
                ("  a Python importing only sqlalchemy (the floor under `cases`)",
                 _spread([float(r["startup"]["core_libraries"]["median_s"]) for r in rounds], " s", "{:.3f}"), ""),
                ("  ... and imapclient and asyncio (the floor under an idle `run --once`)",
                 _spread([float(r["startup"]["mail_libraries"]["median_s"]) for r in rounds], " s", "{:.3f}"), ""),
                ("  ... sqlalchemy and pydantic (about what `cases` imported until 2026-12-06, night)",
                 _spread([float(r["startup"]["libraries"]["median_s"]) for r in rounds], " s", "{:.3f}"), ""),
            ]
        rows.append(("  acks at the sink (each round)", ", ".join(f"{r['acks']} (+{r['letters'] - r['acks']})"
                                                                for r in rounds), ""))
    header = ("measure", "value (median (each round))", "goal")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
             for r in [header, tuple("-" * w for w in widths), *rows]]
    m = results["machine"]
    assert isinstance(m, dict)
    if isinstance(rounds, list) and rounds:
        lines.append(f"\n1-minute load average before each round: {', '.join(str(r['load_before']) for r in rounds)}; "
                     f"reference loop: {', '.join(str(r['reference_loop_s']) for r in rounds)} s of CPU "
                     "(0.28-0.48 s seen here; lower is a faster minute)")
    lines.append(f"\n{m['date']} on {m['host']}: {m['cpus']} CPUs ({m['cpu']}), {m['memory_gb']} GB, "
                 f"Python {m['python']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-count", type=int, default=50, help="complaints for the latency part (0 skips it)")
    parser.add_argument("--backlog", type=int, default=2000, help="complaints for the backlog part (0 skips it)")
    parser.add_argument("--rounds", type=int, default=1, help="backlog rounds, each the bare loop then the bot")
    parser.add_argument("--sink", choices=("postfix", "aiosmtpd"), default=None,
                        help="the SMTP sink (default: Postfix's smtp-sink where installed)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--prefill", type=int, default=0, metavar="N", help="open cases in the database beforehand")
    parser.add_argument("--bodies", choices=("long", "short"), default="long", help="20-line bodies, or 2-3 lines")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare loop")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--verbose", action="store_true", help="print each latency sample to stderr")
    parser.add_argument("--profile", type=Path, help="run the backlog's mailbot under cProfile, writing here")
    parser.add_argument("--spy", type=Path, help="sample the backlog's mailbot with py-spy (pip install py-spy), "
                        "writing collapsed stacks here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    args = parser.parse_args(argv)
    if dovecot_binary() is None:
        print("bench: dovecot is not installed: run scripts/setup.sh", file=sys.stderr)
        return 2
    sink = args.sink or ("postfix" if SMTP_SINK.exists() else "aiosmtpd")
    if sink == "postfix" and not SMTP_SINK.exists():
        print("bench: Postfix's smtp-sink is not installed: apt-get install postfix (no configuration needed)",
              file=sys.stderr)
        return 2
    long = args.bodies == "long"

    results: dict[str, object] = {"machine": machine()}
    root = Path(tempfile.mkdtemp(prefix="mailbot-bench-"))
    root.chmod(0o755)  # the dovecot user must reach the mail directories
    try:
        if args.latency_count > 0:
            results["latency"] = bench_latency(root / "latency", args.latency_count, args.verbose, sink, long)
        if args.backlog > 0:
            results["backlog"] = [
                bench_backlog(root / f"backlog{n}", args.backlog, args.profile.resolve() if args.profile else None,
                              sink_kind=sink, db=args.db, prefill=args.prefill, long=long, bare=not args.no_bare,
                              spy=args.spy.resolve() if args.spy else None)
                for n in range(args.rounds)]
    finally:
        if args.keep:
            print(f"bench: kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
