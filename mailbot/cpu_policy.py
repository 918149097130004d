"""Which of the bot's threads the kernel runs first when the CPUs are short: intake's.

In a backlog, intake's thread is the bot's critical path: every letter waits for its transaction. On two cores,
with the machine 70-80% busy, it still spent about a fifth of its life runnable but waiting for a CPU, preempted
some 3,400 times in a 2,000-complaint backlog, mostly by the bot's other threads as they woke (the event loop for
each answer from the SMTP worker, the "sent" marks), each of which then wanted the interpreter lock that intake
held (``bench/README.md``, the twenty-fifth look).

Linux's ``SCHED_BATCH`` policy marks a thread as throughput work: it runs at once on an idle CPU and has the same
share of a busy one as before, but waking up it does not preempt the thread already running. So while intake
runs, the loop's thread is a batch thread (``batch``), with what it starts (the SMTP worker or a backlog's
delivery process, the executor's threads, the marks' thread), and intake's thread is not (``intake``): intake was
then preempted a quarter to a third as often, and took 9-10% more complaints a second (19 alternating pairs). The
child that reads a backlog's mail (``mail.parse_pool``) is started from intake's thread and stays ordinary, as intake waits for it: made a batch
process too, the gain was gone (eight pairs, median 1.00).

Threads and processes inherit the policy of the thread that starts them. Nothing changes where the kernel has no
such policy or refuses it, or where an operator chose a policy of their own (``chrt``, the whole bot as a batch
process included): only a thread found ``SCHED_OTHER`` becomes a batch thread, and only while one of ours is
does a thread found ``SCHED_BATCH`` become ``SCHED_OTHER`` for intake; each is put back as it was when its block
ends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

_OTHER = getattr(os, "SCHED_OTHER", None)
_BATCH = getattr(os, "SCHED_BATCH", None)

# How many of our batch blocks are open, in any thread: intake's thread is only made ordinary again where it
# inherited the batch policy from one of them, never where the operator started the bot as a batch process.
_ours = 0
_ours_lock = threading.Lock()


def _switch(from_policy: int | None, to_policy: int | None) -> bool:
    """The calling thread from one policy to the other, if it has the first now; whether it was switched."""
    if from_policy is None or to_policy is None:
        return False
    try:
        if os.sched_getscheduler(0) != from_policy:
            return False
        os.sched_setscheduler(0, to_policy, os.sched_param(0))
    except (OSError, AttributeError):  # a kernel or a sandbox without it: the thread runs as it did
        return False
    return True


@contextmanager
def _as(from_policy: int | None, to_policy: int | None) -> Iterator[bool]:
    """The calling thread switched for the block (``_switch``); gives whether it was."""
    switched = _switch(from_policy, to_policy)
    try:
        yield switched
    finally:
        if switched:
            _switch(to_policy, from_policy)


@contextmanager
def batch() -> Iterator[None]:
    """The calling thread, and what it starts meanwhile, as a batch thread for the block: it yields to intake."""
    global _ours
    with _as(_OTHER, _BATCH) as switched:
        if switched:
            with _ours_lock:
                _ours += 1
        try:
            yield
        finally:
            if switched:
                with _ours_lock:
                    _ours -= 1


def intake() -> AbstractContextManager[bool]:
    """The calling thread as an ordinary one for the block, where it inherited the batch policy from ``batch``:
    intake's."""
    return _as(_BATCH if _ours else None, _OTHER)
