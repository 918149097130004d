"""A backlog's messages read in a child process while intake handles the ones before them.

Reading a message is a pure function of its bytes: parsing it (``domain.mail.parse``), and what its words say
(its category, any safeguarding terms, any request about personal data: ``InboundMail.reading`` and
``data_request``). On a 20-line complaint that is about a quarter of the CPU intake's thread spends holding the
interpreter lock, and during a backlog that thread is what the bot waits on. Here that work is done by one child
process, on the other core, a few dozen messages ahead of intake; the messages come back parsed and read
(pickled, with what was read of them: the child runs this very code on the same bytes, so nothing differs).

The child is worth its round trip only for a batch, and only with a second CPU to run on: a fetch of fewer than
``MIN_BATCH`` messages (what the daemon meets as mail arrives) is read in this process, as before, with no added
latency, and so is everything where the CPU set or a CPU quota (a container's, a systemd unit's) allows less than
two CPUs. The child starts at the first larger batch and is read from once it is ready; until then, and for good
once it has failed, messages are read here. A message larger than ``LARGEST`` bytes is read here too: it would
cross the pipe twice. A message the child could not read is read again here, so a failure there is never a message
lost or read differently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    from mailbot.domain.mail.message import InboundMail

# The parser (``domain.mail.parse``) is imported where a message is read, not here: a pass that finds no mail never
# loads it.

log = logging.getLogger(__name__)

MIN_BATCH = 8
LARGEST = 256 * 1024
# Messages a child's task carries (fewer round trips than one each, and the first come back soon), and how many
# tasks it may be given ahead of intake: 32 messages, more than intake reads ahead (services.ingest.ASK_AHEAD).
CHUNK = 8
IN_FLIGHT = 4


def quota_cpus(cpu_max: str | None, quota_us: str | None = None, period_us: str | None = None) -> float | None:
    """The CPUs a CPU quota allows, from cgroup v2's ``cpu.max`` ("150000 100000": 1.5 CPUs; "max 100000":
    no quota) or, without it, cgroup v1's ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` (-1: no quota); None when
    there is no quota or the files say something else."""
    if cpu_max is not None:
        quota, _, period = cpu_max.strip().partition(" ")
    elif quota_us is not None and period_us is not None:
        quota, period = quota_us.strip(), period_us.strip()
    else:
        return None
    try:
        allowed, per = int(quota), int(period or "100000")
    except ValueError:
        return None  # "max", or something unexpected: no limit we can read
    return allowed / per if allowed > 0 and per > 0 else None


def cgroup_v2_dirs(proc_self_cgroup: str | None, root: str = "/sys/fs/cgroup") -> list[str]:
    """The cgroup v2 directories whose ``cpu.max`` limits this process, its own first and then each parent's, from
    ``/proc/self/cgroup`` ("0::/system.slice/mailbot.service": a systemd unit's CPUQuota is in that directory, not
    in the root's). Just the root where the file names none (inside a container, "0::/" is the container's own)."""
    for line in (proc_self_cgroup or "").splitlines():
        if line.startswith("0::/"):
            parts = [part for part in line[len("0::/"):].strip().split("/") if part and part != ".."]
            return [root + "".join("/" + part for part in parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [root]


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def usable_cpus() -> float:
    """The CPUs this process may use: those it may run on (its CPU set), or fewer where a CPU quota says so
    (``docker run --cpus 1`` or a systemd unit's ``CPUQuota=100%`` leave every core in the CPU set but allow one
    core's time): the smallest of the CPU set, the quotas of its cgroup and each parent (v2), and the v1 CPU
    controller's."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quotas = [quota_cpus(_read(f"{folder}/cpu.max")) for folder in cgroup_v2_dirs(_read("/proc/self/cgroup"))]
    quotas.append(quota_cpus(None, _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                             _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")))
    return min([cpus, *(quota for quota in quotas if quota is not None)])


def read_mail(raw: bytes) -> InboundMail:
    """A message parsed, and its words read (what opening a case asks of them)."""
    from mailbot.domain.mail.parse import parse_mail

    mail = parse_mail(raw)
    mail.reading  # noqa: B018  (computed now, kept in the instance: it goes back with it)
    mail.data_request  # noqa: B018
    return mail


def read_mails(raws: list[bytes]) -> list[InboundMail]:
    """A task of the child: several messages read."""
    return [read_mail(raw) for raw in raws]


def _ready() -> bool:
    return True


# How often the child looks for its parent (see _child_start).
PARENT_LOOK_SECONDS = 1.0


def _child_start(level: int, fmt: str, parent: int) -> None:
    """The child's log lines (the mail parser's warnings) go out as the parent's do, JSON included; a Ctrl-C at
    the terminal, which reaches the whole process group, is the parent's to act on (the child ends with it).

    A parent killed outright (SIGKILL, the OOM killer) never tells the child to stop, and the child never reads an
    end of its task queue: it holds that pipe's writing end itself, as multiprocessing hands it both. It would wait
    for ever, so it watches its parent (``parent``, the pid that started it: one killed while this child was
    starting is gone already) and ends when it has gone (it is then another process's child)."""
    import atexit
    import signal
    import threading
    import time

    from mailbot import logs
    from mailbot.launch import leave_to_the_kernel

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure(level, fmt)
    # At its end, as the bot's other processes do (intake's thread waits for it to end).
    atexit.register(leave_to_the_kernel)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_LOOK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class ParsePool:
    """A reader (``read``) for ``Ingestor.ingest_batch`` that reads large batches in a child process.

    Used as a context manager around a pass of intake (`run --once`), or closed after each fetch (the daemon,
    whose pool starts a child only for a full fetch chunk: ``start_at``): the child, if one was started, ends
    with it.
    """

    def __init__(self, min_batch: int = MIN_BATCH, largest: int = LARGEST, log_format: str = "text",
                 cpus: float | None = None, on_backlog: Callable[[], None] | None = None,
                 start_at: int | None = None) -> None:
        """``on_backlog`` is called at the first batch large enough for a child, where there are two CPUs for one
        (the runtime then hands delivery to a process of its own); once, and once more after each ``close`` (the
        daemon closes the pool at the end of each fetch). A child is started for a batch of
        ``start_at`` messages or more (``min_batch`` unless given); once it runs, it reads any batch of
        ``min_batch`` or more."""
        if cpus is not None:
            self.cpus = cpus
        self.on_backlog = on_backlog
        self._backlog_told = False  # on_backlog called since the last close
        self.min_batch = min_batch
        self.start_at = min_batch if start_at is None else max(start_at, min_batch)
        self.largest = largest
        self.log_format = log_format  # MAILBOT_LOG_FORMAT: the child logs as the parent does
        self._executor: ProcessPoolExecutor | None = None
        self._ready: Future[bool] | None = None
        self._failed = False
        self.read_there = 0  # messages the child read (what the tests look at)

    @cached_property
    def cpus(self) -> float:
        """With one CPU to run on, a child could only take turns with intake, and its pickling would be extra.
        Asked only of a batch large enough for a child: the daemon's pass over a message or two reads no file."""
        return usable_cpus()

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._backlog_told = False

    def read(self, raws: Sequence[bytes]) -> Iterator[InboundMail]:
        """Each message of ``raws`` read, in order; lazily, as ``parse_each`` gives them."""
        from mailbot.domain.mail.parse import parse_each

        if len(raws) < self.min_batch or self.cpus < 2:
            return parse_each(raws)
        if self._executor is None and len(raws) < self.start_at:
            return parse_each(raws)
        if self.on_backlog is not None and not self._backlog_told:
            self._backlog_told = True
            self.on_backlog()
        if not self.start():
            return parse_each(raws)
        return self._read_there(raws)

    def start(self, wait: float = 0.0) -> bool:
        """Start the child if there is none yet; whether it can take work now (waiting up to ``wait`` seconds
        for it to be ready). False for good once it has failed."""
        if self._failed:
            return False
        if self._executor is None:
            # Imported here: multiprocessing's machinery is ~9 ms of every start, and most passes need no child.
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            try:
                # spawn: a fork would copy this process's threads' locks in whatever state they are in.
                self._executor = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_child_start,
                    initargs=(logging.getLogger().getEffectiveLevel(), self.log_format, os.getpid()))
                self._ready = self._executor.submit(_ready)
            except Exception as exc:  # noqa: BLE001  (reading here is always possible)
                self._give_up("could not start", exc)
                return False
        assert self._ready is not None
        try:
            self._ready.result(timeout=wait)
        except TimeoutError:
            return False
        except Exception as exc:  # noqa: BLE001
            self._give_up("could not start", exc)
            return False
        return True

    def _read_there(self, raws: Sequence[bytes]) -> Iterator[InboundMail]:
        """The child reads the batch CHUNK messages a task, at most IN_FLIGHT tasks ahead of what was asked for
        (so a fetch's worth of parsed mail is never held at once); a large message is read here, in its turn."""
        from mailbot.domain.mail.parse import parse_each

        groups: list[tuple[list[int], bool]] = []  # (indices in raws, read there?), in order
        run: list[int] = []
        for index, raw in enumerate(raws):
            if len(raw) > self.largest:
                if run:
                    groups.append((run, True))
                    run = []
                groups.append(([index], False))
                continue
            run.append(index)
            if len(run) == CHUNK:
                groups.append((run, True))
                run = []
        if run:
            groups.append((run, True))

        futures: dict[int, Future[list[InboundMail]]] = {}

        def send(group: int) -> None:
            if group < len(groups) and groups[group][1] and not self._failed and self._executor is not None:
                try:
                    futures[group] = self._executor.submit(read_mails, [raws[i] for i in groups[group][0]])
                except Exception as exc:  # noqa: BLE001  (read here instead)
                    self._give_up("could not take work", exc)

        for group in range(IN_FLIGHT):
            send(group)
        try:
            for group, (indices, _) in enumerate(groups):
                send(group + IN_FLIGHT)
                future = futures.pop(group, None)
                mails: list[InboundMail] | None = None
                if future is not None:
                    try:
                        mails = future.result()
                    except Exception as exc:  # noqa: BLE001  (these messages and the rest are read here)
                        self._give_up("failed", exc)
                    else:
                        self.read_there += len(mails)
                if mails is None:
                    yield from parse_each([raws[i] for i in indices])
                else:
                    yield from mails
        finally:
            for future in futures.values():  # intake stopped short (a failed transaction): nobody will ask
                future.cancel()

    def _give_up(self, what: str, exc: BaseException | Any) -> None:
        if not self._failed:
            log.warning("the process reading a backlog's mail %s (%s: %s): reading it in this process instead",
                        what, type(exc).__name__, exc)
        self._failed = True
