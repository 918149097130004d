"""The peak RSS of a command, as `bench/run.py` and `bench/open_cases.py` report it.

Linux carries the peak of the process that forks over into the program the child execs, so a command started
straight from a benchmark (hundreds of MB after filling a database) would report the benchmark's own peak. A small
Python in between, which forks and runs the command, brings that floor down to its own ~10 MB. No GNU time needed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

# Forks and runs its arguments, then prints the child's peak RSS (KiB) and exits with the child's status.
_HELPER = ("import os, sys\n"
           "pid = os.fork()\n"
           "if pid == 0:\n"
           "    os.execv(sys.argv[1], sys.argv[1:])\n"
           "_, status, usage = os.wait4(pid, 0)\n"
           "print(usage.ru_maxrss)\n"
           "sys.exit(os.waitstatus_to_exitcode(status))\n")


def peak_rss_mb(argv: Sequence[str], **run: Any) -> float:
    """Run ``argv`` (its first item a path to the program) to the end and give its peak RSS in MB. It must exit
    with 0 (``subprocess.CalledProcessError`` otherwise); its output goes to /dev/null, its errors as ``run``
    says (``stderr=``), with ``env`` and ``cwd`` as ``subprocess.run`` takes them."""
    done = subprocess.run([sys.executable, "-c", _HELPER, *argv], check=True, stdout=subprocess.PIPE, text=True,
                          **run)
    return round(int(done.stdout.split()[-1]) / 1024, 1)
