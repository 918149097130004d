"""Whose turn it is to write to a SQLite database: first among this process's threads, then among its processes.

SQLite lets one writer in at a time, and a writer that finds the lock taken sleeps in its busy handler and polls
(1, 2, 5, 10, ... 100 ms). Intake commits every ~50 ms and begins its next transaction at once, so a writer left to
the busy handler could wait seconds for a gap it never happened to see. So writers queue before they begin:

- ``WriterTurns``: the threads of one process draw tickets and go in the order they asked.
- ``ProcessTurns``: the process whose thread has the ticket then takes the turn from other processes on the same
  database (a ``run --once`` and its delivery process; an operator's command beside the daemon) through two
  ``flock`` files beside the database. A process waiting for the turn holds the *queue* file, which the process
  that had the turn must take before it may take the turn again, so the two alternate instead of one writer
  beginning again before the other has woken.

Both wait at most ``patience`` (a turn never given back: a bug, or a process stopped in a debugger) and then let
the writer go, and SQLite's own lock decides as before.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path


class WriterTurns:
    """Writers of one process take SQLite's single writer slot in the order they asked for it.

    Each writer draws a ticket and waits for its number, so a waiting writer goes next. One that waits longer
    than ``patience`` (a turn never given back) takes its turn anyway, and SQLite's own lock decides. With
    ``across`` the holder of the ticket then queues with the other processes' writers as well.
    """

    def __init__(self, patience: float = 30.0, across: ProcessTurns | None = None) -> None:
        self._changed = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self.patience = patience
        self.across = across

    def take(self) -> int:
        """Wait for this writer's turn; returns the ticket to give back."""
        with self._changed:
            ticket = self._next_ticket
            self._next_ticket += 1
            if not self._changed.wait_for(lambda: self._serving >= ticket, self.patience):
                self._serving = ticket  # the turns before ours are taken as over
        if self.across is not None:
            try:
                self.across.take(self.patience)  # outside the condition: this process's next writers may queue
            except BaseException:
                self.give_back(ticket)  # not left held by a writer that never began
                raise
        return ticket

    @property
    def waiting(self) -> int:
        """Writers waiting for their turn."""
        with self._changed:
            return max(0, self._next_ticket - self._serving - 1)

    def give_back(self, ticket: int) -> None:
        with self._changed:
            if ticket == self._serving:  # a turn given back after it was skipped changes nothing
                if self.across is not None:
                    self.across.give_back()
                self._serving += 1
                self._changed.notify_all()


class ProcessTurns:
    """The writer's turn among the processes on one SQLite database: ``flock`` on ``<base>.writer.lock``, queued
    through ``<base>.writer-queue.lock``.

    Only one thread of a process asks at a time (``WriterTurns`` sees to that). A lock the kernel cannot give at
    once is asked for again after a pause that grows from 50 µs to 0.5 ms: ``flock`` cannot wait with a time
    limit, and SQLite's busy handler, which this replaces for our own processes, polls up to 100 ms apart.
    The locks belong to this process's own open files, which a program it starts does not inherit (they are
    opened close-on-exec), and the kernel lets go of them when the process ends, however it ends.
    """

    FIRST_PAUSE = 50e-6
    LONGEST_PAUSE = 0.5e-3

    def __init__(self, base: Path) -> None:
        self._paths = (base.with_name(base.name + ".writer-queue.lock"), base.with_name(base.name + ".writer.lock"))
        self._fds: tuple[int, int] | None = None
        self._unusable = False
        self.waited = 0  # turns this process had to wait for (what the tests look at)

    def take(self, patience: float) -> bool:
        """Take the turn, waiting up to ``patience`` seconds; False when it was not had (the writer goes anyway)."""
        fds = self._open()
        if fds is None:
            return False
        queue, turn = fds
        # Through the queue even when nobody writes: a process that has just given the turn back must not take it
        # again past one that waits for it.
        if _try(queue) and _try(turn):
            fcntl.flock(queue, fcntl.LOCK_UN)
            return True
        self.waited += 1
        deadline = time.monotonic() + patience
        queued = _wait(queue, deadline)
        try:
            return _wait(turn, deadline)
        finally:
            if queued:
                fcntl.flock(queue, fcntl.LOCK_UN)

    def give_back(self) -> None:
        if self._fds is not None:
            fcntl.flock(self._fds[1], fcntl.LOCK_UN)

    def close(self) -> None:
        fds, self._fds = self._fds, None
        for fd in fds or ():
            try:
                os.close(fd)
            except OSError:  # already closed (an interpreter shutting down): nothing is held any more
                pass

    def _open(self) -> tuple[int, int] | None:
        if self._fds is None and not self._unusable:
            try:
                queue = os.open(self._paths[0], os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:  # a database in a folder we may not write: SQLite alone decides, as before
                self._unusable = True
                return None
            try:
                turn = os.open(self._paths[1], os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                os.close(queue)
                self._unusable = True
                return None
            self._fds = (queue, turn)
        return self._fds

    def __del__(self) -> None:
        self.close()


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait(fd: int, deadline: float) -> bool:
    pause = ProcessTurns.FIRST_PAUSE
    while not _try(fd):
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, ProcessTurns.LONGEST_PAUSE)
    return True
