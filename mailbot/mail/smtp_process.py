"""SMTP delivery from a child process, for `run --once` on a backlog.

The bot's intake and its delivery share one interpreter lock, so while a backlog is taken in, the
SMTP protocol work (aiosmtplib's parsing and writing, a few hundred microseconds a letter) competes
with intake for one core. This transport hands each letter to a child process that runs the ordinary
``SmtpTransport`` over its own connections, so that work runs on the other core. The parent keeps
everything that touches the database: it reads the outbox, and it records each letter as sent (or
deferred, or failed) when the child reports the server's answer, exactly as with ``SmtpTransport``.

Frames on the child's stdin and stdout: a 4-byte length and a JSON header, then a 4-byte length and
a body (the letter's bytes in a request, empty otherwise). The first frame to the child carries the
settings, the first from it says it is ready; after that each request gets one answer, by id.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mailbot.launch import child_environment
from mailbot.services.transport import PermanentFailure, TemporaryFailure

_LENGTH = struct.Struct(">I")
# How long the child may take to start and say it is ready.
START_TIMEOUT = 15.0


class WorkerUnavailable(Exception):
    """The child process could not be started."""


def _frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return _LENGTH.pack(len(head)) + head + _LENGTH.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes] | None:
    try:
        head = await reader.readexactly(_LENGTH.unpack(await reader.readexactly(4))[0])
        body = await reader.readexactly(_LENGTH.unpack(await reader.readexactly(4))[0])
    except asyncio.IncompleteReadError:
        return None
    return json.loads(head), body


class SmtpProcess:
    """The parent's side: one child process with ``connections`` SMTP connections, many letters in flight.

    It is the ``Transport`` of every delivery worker at once (``close`` is theirs and does nothing);
    ``stop``, called once every letter is answered, lets the child say QUIT and exit. A child that dies
    fails its letters in hand as temporary failures (retried later, like a dropped connection) and is
    started afresh for the next.
    """

    # The child journals each 250 itself (store.sent_journal), so the deliverer does not.
    journals_sent = True

    def __init__(self, host: str, port: int, security: str, user: str | None = None, password: str | None = None,
                 connections: int = 8, python: str = sys.executable, journal: Path | None = None,
                 token: dict[str, Any] | None = None) -> None:
        self.python = python
        self.connections = connections
        self.config = {"host": host, "port": port, "security": security, "user": user, "password": password,
                       "connections": connections, "journal": str(journal) if journal else None,
                       "token": token}
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._reader_task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and self._reader_task is not None \
            and not self._reader_task.done()

    async def start(self) -> None:
        """Start the child (the settings, password included, go on its stdin, not its command line)."""
        async with self._starting:
            if self.running:
                return
            await self._reap()
            proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "mailbot.mail.smtp_process", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=child_environment())
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(_frame(self.config))
            try:
                ready = await asyncio.wait_for(_read_frame(proc.stdout), START_TIMEOUT)
            except asyncio.TimeoutError:
                ready = None
            if ready is None or not ready[0].get("ready"):
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
                raise WorkerUnavailable(f"the SMTP worker process did not start (exit code {proc.returncode})")
            self._proc = proc
            self._reader_task = asyncio.create_task(self._read_answers(proc))

    async def _read_answers(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while (frame := await _read_frame(proc.stdout)) is not None:
            header, _ = frame
            future = self._pending.pop(header["id"], None)
            if future is not None and not future.done():
                future.set_result(header)
        # The child is gone: nothing in hand will be answered.
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(TemporaryFailure("the SMTP worker process stopped before the server answered"))

    async def send(self, raw: bytes, mail_from: str, recipients: list[str],
                   mark: tuple[int, int] | None = None) -> str | None:
        """``mark`` (letter id, tries) is what the child journals when the server says 250."""
        if not self.running:
            try:
                await self.start()
            except (OSError, WorkerUnavailable) as exc:
                raise TemporaryFailure(str(exc)) from None
        assert self._proc is not None and self._proc.stdin is not None
        self._next += 1
        request = self._next
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request] = future
        try:
            self._proc.stdin.write(_frame({"id": request, "from": mail_from, "to": recipients, "mark": mark}, raw))
            await self._proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:  # the pipe closed under us
            self._pending.pop(request, None)
            raise TemporaryFailure(f"the SMTP worker process stopped: {exc}") from None
        answer = await future
        if "permanent" in answer:
            raise PermanentFailure(answer["permanent"])
        if "temporary" in answer:
            raise TemporaryFailure(answer["temporary"])
        return answer.get("note")

    async def close(self) -> None:
        """A delivery worker is done with it; the child keeps serving the others until ``stop``."""

    async def stop(self) -> None:
        """End the child: it says QUIT on its connections and exits (call it once every letter is answered;
        letters still in hand would be dropped, as after a crash)."""
        if self._proc is not None and self._proc.stdin is not None and self._proc.returncode is None:
            self._proc.stdin.close()
        await self._reap()

    async def _reap(self) -> None:
        if self._proc is not None:
            await self._proc.wait()
        if self._reader_task is not None:
            await self._reader_task
        self._proc, self._reader_task = None, None


# ---- the child ------------------------------------------------------------------------------------


async def _child() -> None:
    from mailbot.mail.oauth import TokenSpec, token_source
    from mailbot.mail.smtp import SmtpTransport
    from mailbot.store.sent_journal import SentJournal

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    w_transport, w_protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout.buffer)
    writer = asyncio.StreamWriter(w_transport, w_protocol, reader, loop)
    first = await _read_frame(reader)
    if first is None:
        return
    config = first[0]
    free: asyncio.Queue[SmtpTransport] = asyncio.Queue()
    # One token source for all the connections: a refused token is forgotten once, for all of them.
    token = token_source(TokenSpec.from_dict(config["token"])) if config.get("token") else None
    transports = [SmtpTransport(config["host"], config["port"], config["security"], config["user"],
                                config["password"], token=token) for _ in range(int(config["connections"]))]
    for transport in transports:
        free.put_nowait(transport)
    journal = SentJournal(Path(config["journal"])) if config.get("journal") else None
    writer.write(_frame({"ready": True}))

    sending: set[asyncio.Task[None]] = set()

    async def one(header: dict[str, Any], raw: bytes) -> None:
        transport = await free.get()
        task = asyncio.current_task()
        assert task is not None
        sending.add(task)
        answer: dict[str, Any] = {"id": header["id"]}
        try:
            answer["note"] = await transport.send(raw, header["from"], header["to"])
            if journal is not None and header.get("mark"):
                letter_id, tries = header["mark"]
                journal.record(letter_id, datetime.now(timezone.utc), tries, answer["note"])
        except PermanentFailure as exc:
            answer["permanent"] = str(exc)
        except TemporaryFailure as exc:
            answer["temporary"] = str(exc)
        except Exception as exc:  # noqa: BLE001  (reported to the parent, which retries later)
            answer["temporary"] = f"{type(exc).__name__}: {exc}"
        finally:
            free.put_nowait(transport)
        writer.write(_frame(answer))

    tasks: set[asyncio.Task[None]] = set()
    while (frame := await _read_frame(reader)) is not None:
        task = asyncio.create_task(one(*frame))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        # The parent stops us only when every letter it handed over is answered, so letters still in hand
        # mean it went away (a crash). A letter not yet begun is dropped: it is still pending, and the next
        # start sends it. A letter already on its way is finished and, with a journal, its 250 recorded, so
        # the next start does not send it again; cutting it off would not unsend it (a server that has the
        # whole message may deliver it anyway) but would lose our record of it.
        waiting = [task for task in tasks if task not in sending]
        for task in waiting:
            task.cancel()
        in_hand = [task for task in tasks if task in sending]
        if journal is None:
            for task in in_hand:
                task.cancel()
        await asyncio.wait(in_hand or [asyncio.sleep(0)], timeout=60)
        await asyncio.gather(*tasks, return_exceptions=True)
        if journal is not None:
            journal.close()
        return
    await writer.drain()
    for transport in transports:
        await transport.close()
    if journal is not None:
        journal.close()


if __name__ == "__main__":
    from mailbot.launch import leave_to_the_kernel, steady_malloc

    steady_malloc()
    asyncio.run(_child())
    leave_to_the_kernel()  # the bot's run waits for this process to end
