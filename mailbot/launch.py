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


def main() -> int:
    gc.disable()
    try:
        from mailbot.cli import main as command
    except BaseException:
        gc.enable()
        raise
    return command()
