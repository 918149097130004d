"""The `mailbot` command's entry point (and ``python -m mailbot``'s): the cyclic garbage collector is held off
while the libraries and the bot load.

Start-up builds ~100,000 objects that live as long as the process (modules, SQLAlchemy's and pydantic's
classes, the ORM's mappings). While they were being built the collector ran ~200 times, walking them again and
again: about 50 ms of a `mailbot run --once` that finds nothing to do, a tenth of it. It is switched back on
as soon as start-up is over: ``console.settle_memory`` for ``run`` (which first moves every start-up object out
of the collector's sight for good), and before the work of every other command (``cli``).
"""

from __future__ import annotations

import gc

# glibc's mallopt parameter number for the mmap threshold (malloc.h).
_M_MMAP_THRESHOLD = -3


def steady_malloc() -> None:
    """Keep glibc's malloc from holding on to the memory of large messages after they are gone (``run`` and its
    SMTP worker call this).

    A block of 128 KB or more is mapped on its own and given back when freed, until the first such block is
    freed: glibc then raises that threshold to the block's size, so later messages of up to that size are
    carved from the heaps of the threads that handle them, and their memory is kept there, in pieces. Forty
    complaints of 7 MB (phone videos) took the bot to 415 MB, and it grew with the backlog; with the threshold
    held at its default, 315 MB, and no more at eighty. Nothing changes for mail of ordinary size. Where the C
    library has no mallopt (not glibc), nothing is done.
    """
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass


def child_environment() -> dict[str, str]:
    """The environment for a child process of the bot (the SMTP worker, a backlog's delivery process): this very
    copy of mailbot first on its path, however the parent found it."""
    import os

    here = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])}


def leave_to_the_kernel() -> None:
    """Called as a process of the bot ends, once its work is done: the interpreter's teardown is left to free only
    what is not tied up in reference cycles, and the kernel takes back the rest with the process.

    Tearing down, the interpreter clears every module and then collects every cycle among their objects, one by
    one: 0.12-0.20 s with SQLAlchemy, the ORM and the pipeline loaded (a 2,000-complaint backlog's run ended that
    much after its last letter), against ~0.01 s with them frozen (``gc.freeze``: the collector no longer looks at
    them). Nothing the teardown would still do matters outside the process: what must be written has been (the
    database's transactions committed and its connections closed by ``engine.dispose``, files closed where they
    were written), and the exit handlers still run after this (logging's flush, the thread pools' joins)."""
    gc.freeze()


def main() -> int:
    gc.disable()
    try:
        from mailbot.cli import main as command
    except BaseException:
        gc.enable()
        raise
    code = command()
    leave_to_the_kernel()
    return code
