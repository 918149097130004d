"""What a fresh interpreter has loaded after one `mailbot run --once`: start-up is most of what an idle pass costs,
so tests hold it to the modules it needs (this interpreter has imported everything)."""

from __future__ import annotations


def run_once_probe(heavy: tuple[str, ...], then: str = "", shows: str = "", args: tuple[str, ...] = ()) -> str:
    """Python source that runs one pass (`mailbot run --once` and ``args``) and prints its exit code, those of
    ``heavy`` it loaded, and ``shows`` (an expression, evaluated after ``then``)."""
    extra = f", {shows}" if shows else ""
    argv = ["mailbot", "run", "--once", *args]
    return (f"import sys\nfrom mailbot import launch\nsys.argv = {argv!r}\ncode = launch.main()\n"
            f"{then}heavy = {heavy!r}\nprint(code, [m for m in heavy if m in sys.modules]{extra})\n")
