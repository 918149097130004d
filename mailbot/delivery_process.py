"""A backlog's delivery from a child process of its own, for `run --once`.

While `run --once` takes in a backlog, intake's thread is the bot's critical path, and delivery beside it in the
same process (the event loop's passes, the SMTP worker's answers, the "sent" marks, the outbox's pages) held the
interpreter lock a fifth of the time and woke to preempt intake a few thousand times a backlog. Here the whole of
delivery runs in one child process instead: the ordinary deliverer (``services.delivery``) with its own database
connections, its own sent journal and its SMTP connections in its own event loop. Intake's process does nothing
for delivery but wake it. Measured in alternation against the in-process delivery (bench/README.md, the
twenty-sixth look): 16% more acknowledgements a second and 9% less CPU a complaint (medians of eight pairs), since
the SMTP worker's pipe, its frames and its answers are gone too.

Only one deliverer sends at a time, as before: when intake meets a large backlog (the reader of its mail,
``mail.parse_pool``, is told a batch is large enough, there are two CPUs, and the fetch has
MAILBOT_DELIVERY_PROCESS_AT messages or more: ``runtime.worth_a_delivery_process``) the parent starts the child and
goes on delivering while it starts; it hands delivery over between two of its own passes once the child is ready
(the child makes no pass before it is woken), and does not deliver again in that run unless the child fails. On
SQLite the child is handed the instance lock's descriptor, so a parent killed outright leaves the lock held until
the child has ended too: no second bot can start delivering the same letters meanwhile. (On PostgreSQL each
letter is claimed before it is sent.) A SQLite database in memory is the bot's process's alone: there the bot
keeps delivery.

The daemon hands a backlog's delivery over the same way, for as long as the fetch that brought it lasts, and then
delivers from its own process again (``runtime.Daemon``).

The child reads from its stdin: a 4-byte length and a pickle of what it needs (the settings, the run's fixed time
if any, the log level and format), then one byte at a time: ``w``, intake committed (letters may be waiting; the
child makes no pass before the first, as the parent may still be delivering while it starts), ``e``, intake has
finished (one last pass, then the report), and ``s``, the bot is stopping (no pass after the one under way, then
the report). An end of input without ``e`` or ``s`` means the parent is gone (killed): the child ends the pass
under way, every 250 of it journalled and marked, and exits. A parent whose run fails otherwise (Ctrl-C, an
error) kills the child as the in-process loop's passes were cancelled: a letter cut off on the wire is sent again
by the next run, one whose 250 came is in the journal. At the
end it writes one line of JSON to its stdout: the pass's totals.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import signal
import struct
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from mailbot.launch import child_environment

if TYPE_CHECKING:
    from mailbot.services.delivery import DeliveryReport
    from mailbot.settings import Settings

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
WAKE, END, STOP = b"w", b"e", b"s"
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


class DeliveryProcess:
    """The parent's side. ``start`` once; ``wake`` after each commit of intake; ``finish`` when intake is done,
    for the child's totals (``finish(last_pass=False)`` when the bot is stopping); ``kill`` if the run ends
    otherwise."""

    def __init__(self, settings: Settings, now: datetime | None, pass_spacing: float, lock_fd: int | None = None,
                 python: str = sys.executable) -> None:
        """``lock_fd``: the instance lock's descriptor, held by the child as long as it runs (SQLite's flock)."""
        self.python = python
        self.lock_fd = lock_fd
        self.config = ChildSettings(settings, now, pass_spacing, logging.getLogger().getEffectiveLevel(),
                                    settings.log_format)
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start the child and wait for it to say it is ready (the settings, passwords included, go on its stdin,
        not its command line); DeliveryUnavailable if it cannot."""
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
        try:
            ready = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError):
            ready = b""
        except BaseException:  # cancelled (no longer wanted): the child goes, not left to find its parent gone
            proc.kill()
            await proc.wait()
            raise
        if ready.strip() != b"ready":
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            raise DeliveryUnavailable(f"the delivery process did not start (exit code {proc.returncode})")
        self._proc = proc

    @property
    def ended(self) -> bool:
        """Whether the child has ended by itself (it failed, or was killed) before ``finish``."""
        return self._proc is not None and self._proc.returncode is not None

    def wake(self) -> None:
        """Intake committed: there may be letters to send (from the event loop's thread)."""
        self._send(WAKE)

    def _send(self, byte: bytes) -> None:
        proc = self._proc
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            try:
                proc.stdin.write(byte)
            except (ConnectionError, RuntimeError):
                pass  # the child is gone: ``finish`` says so

    async def finish(self, last_pass: bool = True) -> DeliveryReport:
        """Intake is done: the child makes its last pass and ends; its totals, or DeliveryUnavailable when it
        ended without them (it failed, or was killed: the letters it had not sent are still pending). With
        ``last_pass=False`` (the bot is stopping) it ends after the pass under way, if any: what is left waits
        in the outbox for the bot's next start."""
        from mailbot.services.delivery import DeliveryReport

        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        self._send(END if last_pass else STOP)
        try:
            proc.stdin.close()
        except (ConnectionError, RuntimeError):
            pass
        out = await proc.stdout.read()
        code = await proc.wait()
        self._proc = None
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
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


# ---- the child ------------------------------------------------------------------------------------


async def _child() -> int:
    from mailbot import logs
    from mailbot.bootstrap import App
    from mailbot.services.delivery import DeliveryReport

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
    try:
        app = App(config.settings, now=config.now, counted=False)
    except Exception as exc:  # noqa: BLE001  (the parent delivers instead, and says so)
        log.error("the delivery process could not start: %s: %s", type(exc).__name__, exc)
        return 1
    if not _say("ready"):
        app.engine.dispose()
        return 1  # the parent went away while this process started

    woken = asyncio.Event()
    ended = asyncio.Event()  # intake has finished ("e")
    stopped = asyncio.Event()  # the bot is stopping ("s")
    gone = asyncio.Event()  # the parent went away without saying so

    async def listen() -> None:
        while chunk := await reader.read(4096):
            if END in chunk:
                ended.set()
            if STOP in chunk:
                stopped.set()
            woken.set()
        if not (ended.is_set() or stopped.is_set()):
            gone.set()
        woken.set()

    listener = asyncio.create_task(listen())
    totals = DeliveryReport()
    app.deliverer.keep_connections()  # a backlog's passes come a quarter of a second apart
    try:
        # No pass before the first word from the parent: it starts this process in the background and goes on
        # delivering meanwhile, and says ``w`` only once its own pass has ended (one deliverer at a time).
        await woken.wait()
        while not (gone.is_set() or stopped.is_set()):
            # Cleared before the pass, as the parent's loop did: a commit during the pass starts the next.
            woken.clear()
            began = loop.time()
            last = ended.is_set()
            totals.add(await app.deliverer.deliver_due())
            if last or gone.is_set() or stopped.is_set():
                break
            await woken.wait()
            rest = config.pass_spacing - (loop.time() - began)
            if rest > 0 and not (ended.is_set() or gone.is_set() or stopped.is_set()):
                try:  # a few commits' letters to the next pass, as in the parent (runtime.PASS_SPACING)
                    await asyncio.wait_for(ended.wait(), rest)
                except asyncio.TimeoutError:
                    pass
    finally:
        listener.cancel()
        await app.deliverer.let_go()
        app.engine.dispose()
    if gone.is_set():
        log.warning("the bot that started this delivery process went away: stopped after the pass under way")
        return 1
    return 0 if _say(json.dumps({"sent": totals.sent, "deferred": totals.deferred, "failed": totals.failed,
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
    from mailbot.launch import leave_to_the_kernel, steady_malloc

    steady_malloc()
    code = asyncio.run(_child())
    leave_to_the_kernel()  # the parent's run waits for this process to end
    sys.exit(code)
