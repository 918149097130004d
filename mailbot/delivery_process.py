"""A backlog's delivery from a child process of its own, for `run --once`.

While `run --once` takes in a backlog, intake's thread is the bot's critical path, and delivery beside it in the
same process (the event loop's passes, the SMTP worker's answers, the "sent" marks, the outbox's pages) held the
interpreter lock a fifth of the time and woke to preempt intake a few thousand times a backlog. Here the whole of
delivery runs in one child process instead: the ordinary deliverer (``services.delivery``) with its own database
connections, its own sent journal and its SMTP connections in its own event loop. Intake's process does nothing
for delivery but wake it. Measured in alternation against the in-process delivery (bench/README.md, the
twenty-sixth look): 16% more acknowledgements a second and 9% less CPU a complaint (medians of eight pairs), since
the SMTP worker's pipe, its frames and its answers are gone too.

Only one deliverer sends at a time, as before: the parent hands delivery over when intake meets a backlog (the
reader of its mail, ``mail.parse_pool``, is told a batch is large enough, and there are two CPUs), once any pass
of its own has ended, and does not deliver again in that run unless the child fails. On SQLite the child is handed
the instance lock's descriptor, so a parent killed outright leaves the lock held until the child has ended too: no
second bot can start delivering the same letters meanwhile. (On PostgreSQL each letter is claimed before it is
sent.) A SQLite database in memory is the bot's process's alone: there the bot keeps delivery.

The child reads from its stdin: a 4-byte length and a pickle of what it needs (the settings, the run's fixed time
if any, the log level and format), then one byte at a time: ``w``, intake committed (letters may be waiting),
and ``e``, intake has finished (one last pass, then the report). An end of input without ``e`` means the parent
is gone (killed): the child ends the pass under way, every 250 of it journalled and marked, and exits. A parent
whose run fails otherwise (Ctrl-C, an error) kills the child as the in-process loop's passes were cancelled: a
letter cut off on the wire is sent again by the next run, one whose 250 came is in the journal. At the
end it writes one line of JSON to its stdout: the pass's totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from mailbot.launch import child_environment

if TYPE_CHECKING:
    from mailbot.services.delivery import DeliveryReport
    from mailbot.settings import Settings

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
WAKE, END = b"w", b"e"
GO = b"g"  # to a spare (``Spare``): deliver
# A spare's name in ps and top (at most 15 bytes), before and after it is told to deliver: it shares the bot's command
# line, being a fork of it.
SPARE_NAME, DELIVERING_NAME = "mailbot-spare", "mailbot-deliver"
# How long the child may take to start and say it is ready.
START_TIMEOUT = 30.0


class DeliveryUnavailable(Exception):
    """The child process could not be started, or ended without its report."""


@dataclass(frozen=True)
class ChildSettings:
    """What the child needs to build the same deliverer as the parent's."""

    settings: Settings
    now: datetime | None
    pass_spacing: float  # runtime.PASS_SPACING
    log_level: int
    log_format: str


class Spare:
    """A delivery process forked at the start of `run --once`, before the run has a thread or a database
    connection, and kept waiting until a backlog needs it (``DeliveryProcess`` with ``spare``).

    A new interpreter took ~0.4 s to become a delivery process, most of it importing SQLAlchemy and the bot again,
    on the CPU that the reader of the mail was starting on too: a backlog's first letter waited for it. A fork of the
    bot made after its imports has them already, and was ready in ~0.04 s. Forked while the process has one thread
    and no connection, it carries no lock held by another thread and no SQLite or PostgreSQL connection (SQLite's
    own rule: a connection must not cross a fork): it opens its own, as a new interpreter would. A run that meets no
    backlog ends its spare unused (``discard``): it exits as its end of the socket closes, as it does when the bot is
    killed.
    """

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self._sock: socket.socket | None = sock

    @classmethod
    def fork(cls, settings: Settings, now: datetime | None, pass_spacing: float) -> Spare | None:
        """A spare, or None where this process cannot fork one safely (no ``fork``, or a thread already running)."""
        if not hasattr(os, "fork") or not hasattr(socket, "send_fds") or threading.active_count() != 1:
            return None
        config = ChildSettings(settings, now, pass_spacing, logging.getLogger().getEffectiveLevel(),
                               settings.log_format)
        try:
            ours, theirs = socket.socketpair()
        except OSError:
            return None
        for stream in (sys.stdout, sys.stderr):  # nothing buffered here is written twice, once by each process
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            log.info("could not fork a spare delivery process (%s); a backlog starts a new one", exc)
            ours.close()
            theirs.close()
            return None
        if pid == 0:  # the spare: it never returns into the bot's code
            code = 1
            try:
                ours.close()
                code = _spare(theirs, config)
            except BaseException:  # noqa: BLE001  (reported; the parent delivers what this process did not)
                with contextlib.suppress(BaseException):
                    log.exception("the delivery process failed")
            finally:
                with contextlib.suppress(BaseException):
                    sys.stderr.flush()
                os._exit(code)
        theirs.close()
        return cls(pid, ours)

    def take(self) -> tuple[int, socket.socket] | None:
        """The spare's process and its socket, once: from then on they are the caller's to end."""
        sock, self._sock = self._sock, None
        return None if sock is None else (self.pid, sock)

    def discard(self) -> None:
        """End the spare if nobody took it: it exits as its socket closes, and is waited for here (a few ms)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            _reap(self.pid)


def _reap(pid: int) -> int:
    """Wait for a forked child; its exit code (1 for a signal, or when it was already waited for)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 1
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 1


class DeliveryProcess:
    """The parent's side. ``start`` once; ``wake`` after each commit of intake; ``finish`` when intake is done,
    for the child's totals; ``kill`` if the run ends otherwise."""

    def __init__(self, settings: Settings, now: datetime | None, pass_spacing: float, lock_fd: int | None = None,
                 python: str = sys.executable, spare: Spare | None = None) -> None:
        """``lock_fd``: the instance lock's descriptor, held by the child as long as it runs (SQLite's flock).
        ``spare``: a process forked for this at the run's start (``Spare``), told to deliver rather than a new
        interpreter started."""
        self.python = python
        self.lock_fd = lock_fd
        self.spare = spare
        self.config = ChildSettings(settings, now, pass_spacing, logging.getLogger().getEffectiveLevel(),
                                    settings.log_format)
        self.forked = False  # whether the child is a spare rather than a new interpreter
        self._pid: int | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ended: Callable[[], Awaitable[int]] | None = None  # waits for the child's exit code
        self._kill: Callable[[], None] | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    async def start(self) -> None:
        """Start the child and wait for it to say it is ready; DeliveryUnavailable if it cannot. A spare is told to
        deliver (it is sent the lock's descriptor); otherwise a new interpreter is started, and the settings,
        passwords included, go on its stdin, not its command line."""
        spare, self.spare = self.spare, None
        taken = spare.take() if spare is not None else None
        if taken is not None:
            await self._wake_spare(*taken)
        else:
            await self._spawn()
        assert self._reader is not None
        try:
            ready = await asyncio.wait_for(self._reader.readline(), START_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError):
            ready = b""
        if ready.strip() != b"ready":
            self._kill_now()
            code = await self._wait()
            raise DeliveryUnavailable(f"the delivery process did not start (exit code {code})")

    async def _spawn(self) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "mailbot.delivery_process", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=child_environment(),
                pass_fds=(self.lock_fd,) if self.lock_fd is not None else ())
        except OSError as exc:
            raise DeliveryUnavailable(f"could not start the delivery process: {exc}") from None
        assert proc.stdin is not None and proc.stdout is not None
        blob = pickle.dumps(self.config)
        proc.stdin.write(_LENGTH.pack(len(blob)) + blob)
        self._pid, self._reader, self._writer = proc.pid, proc.stdout, proc.stdin
        self._ended, self._kill = proc.wait, proc.kill

    async def _wake_spare(self, pid: int, sock: socket.socket) -> None:
        self._pid, self.forked = pid, True
        self._ended = lambda: asyncio.to_thread(_reap, pid)
        self._kill = lambda: os.kill(pid, signal.SIGKILL)
        try:
            socket.send_fds(sock, [GO], [self.lock_fd] if self.lock_fd is not None else [])
            self._reader, self._writer = await asyncio.open_unix_connection(sock=sock, limit=2**16)
        except OSError as exc:
            sock.close()
            self._kill_now()
            await self._wait()
            raise DeliveryUnavailable(f"the spare delivery process could not be woken: {exc}") from None

    def _kill_now(self) -> None:
        if self._kill is not None:
            with contextlib.suppress(ProcessLookupError):
                self._kill()

    async def _wait(self) -> int | None:
        ended, self._ended = self._ended, None
        self._pid = self._reader = None
        writer, self._writer = self._writer, None
        if writer is not None and not writer.is_closing():
            writer.close()
        return await ended() if ended is not None else None

    def wake(self) -> None:
        """Intake committed: there may be letters to send (from the event loop's thread)."""
        self._send(WAKE)

    def _send(self, byte: bytes) -> None:
        writer = self._writer
        if writer is not None and not writer.is_closing():
            try:
                writer.write(byte)
            except (ConnectionError, RuntimeError):
                pass  # the child is gone: ``finish`` says so

    async def finish(self) -> DeliveryReport:
        """Intake is done: the child makes its last pass and ends; its totals, or DeliveryUnavailable when it
        ended without them (it failed, or was killed: the letters it had not sent are still pending)."""
        from mailbot.services.delivery import DeliveryReport

        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        self._send(END)
        try:
            if self.forked:
                writer.write_eof()  # a socket: its other way still brings the report
            else:
                writer.close()
        except (ConnectionError, RuntimeError, OSError):
            pass
        out = await reader.read()
        code = await self._wait()
        try:
            totals = json.loads(out.decode().strip().splitlines()[-1])
            report = DeliveryReport(int(totals["sent"]), int(totals["deferred"]), int(totals["failed"]),
                                    [str(error) for error in totals["errors"]])
        except (ValueError, KeyError, IndexError, TypeError):
            raise DeliveryUnavailable(f"the delivery process ended without its report (exit code {code})") from None
        if code != 0:
            raise DeliveryUnavailable(f"the delivery process ended with exit code {code}")
        return report

    async def kill(self) -> None:
        """End the child at once (the run failed): what it had sent is journalled; the rest stays pending."""
        if self._ended is not None:
            self._kill_now()
            await self._wait()


# ---- the child ------------------------------------------------------------------------------------

Say = Callable[[str], Awaitable[bool]]


async def _child() -> int:
    """A new interpreter's delivery process (``python -m mailbot.delivery_process``): its settings on stdin."""
    from mailbot import logs

    # A Ctrl-C at the terminal reaches the whole process group: it is the parent's to act on (it ends this one).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    try:
        config: ChildSettings = pickle.loads(await reader.readexactly(
            _LENGTH.unpack(await reader.readexactly(_LENGTH.size))[0]))
    except asyncio.IncompleteReadError:
        return 1  # the parent went away before it said anything
    logs.configure(config.log_level, config.log_format)

    async def say(line: str) -> bool:
        return _say(line)

    return await _deliver(config, reader, say)


def _spare(sock: socket.socket, config: ChildSettings) -> int:
    """A spare's life (``Spare``): wait to be told to deliver, then deliver; 0 at once if the bot ends first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's to act on, as in ``_child``
    _name(SPARE_NAME)
    with contextlib.suppress(OSError):  # the bot's output is the bot's: this process only logs, to stderr
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
    try:
        message, fds, _, _ = socket.recv_fds(sock, 1, 1)
    except OSError:
        return 1
    if message != GO:
        return 0  # the run met no backlog (or the bot is gone)
    # ``fds``: the instance lock's descriptor, which holds it as long as this process runs.
    _name(DELIVERING_NAME)
    from mailbot import cpu_policy
    from mailbot.launch import steady_malloc

    steady_malloc()
    cpu_policy.batch_process()  # as a new interpreter started from the run's event loop would be

    async def serve() -> int:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**16)

        async def say(line: str) -> bool:
            try:
                writer.write(line.encode() + b"\n")
                await writer.drain()
            except (ConnectionError, RuntimeError):
                return False
            return True

        try:
            return await _deliver(config, reader, say)
        finally:
            writer.close()

    return asyncio.run(serve())


def _name(name: str) -> None:
    """This process's name in ps and top (Linux); nothing elsewhere."""
    with contextlib.suppress(OSError):
        with open("/proc/self/comm", "w") as comm:
            comm.write(name)


async def _deliver(config: ChildSettings, reader: asyncio.StreamReader, say: Say) -> int:
    """The delivery process's work, however it was started: the bot built from ``config``, "ready" said, then a pass
    at each wake from ``reader`` until the parent says the end (or goes away), and the totals said."""
    from mailbot.bootstrap import App
    from mailbot.services.delivery import DeliveryReport

    loop = asyncio.get_running_loop()
    try:
        app = App(config.settings, now=config.now, counted=False)
    except Exception as exc:  # noqa: BLE001  (the parent delivers instead, and says so)
        log.error("the delivery process could not start: %s: %s", type(exc).__name__, exc)
        return 1
    # What start-up built lives as long as the process: out of the collector's sight (as console.settle_memory).
    gc.freeze()
    gc.enable()
    if not await say("ready"):
        app.engine.dispose()
        return 1  # the parent went away while this process started

    woken = asyncio.Event()
    ended = asyncio.Event()  # intake has finished ("e")
    gone = asyncio.Event()  # the parent went away without saying so

    async def listen() -> None:
        while chunk := await reader.read(4096):
            if END in chunk:
                ended.set()
            woken.set()
        if not ended.is_set():
            gone.set()
        woken.set()

    listener = asyncio.create_task(listen())
    totals = DeliveryReport()
    try:
        while not gone.is_set():
            # Cleared before the pass, as the parent's loop did: a commit during the pass starts the next.
            woken.clear()
            began = loop.time()
            last = ended.is_set()
            totals.add(await app.deliverer.deliver_due())
            if last or gone.is_set():
                break
            await woken.wait()
            rest = config.pass_spacing - (loop.time() - began)
            if rest > 0 and not (ended.is_set() or gone.is_set()):
                try:  # a few commits' letters to the next pass, as in the parent (runtime.PASS_SPACING)
                    await asyncio.wait_for(ended.wait(), rest)
                except asyncio.TimeoutError:
                    pass
    finally:
        listener.cancel()
        app.engine.dispose()
    if gone.is_set():
        log.warning("the bot that started this delivery process went away: stopped after the pass under way")
        return 1
    return 0 if await say(json.dumps({"sent": totals.sent, "deferred": totals.deferred, "failed": totals.failed,
                                       "errors": totals.errors})) else 1


def _say(line: str) -> bool:
    """One line to the parent; False when it is gone (its end of the pipe closed)."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        return False
    return True


if __name__ == "__main__":
    from mailbot.launch import steady_malloc

    steady_malloc()
    sys.exit(asyncio.run(_child()))
