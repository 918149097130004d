"""How long `mailbot export-person` takes on a database of N cases (issue 17: fast enough for 50,000).

    .venv/bin/python bench/export_person.py [--cases 50000] [--rounds 3]

Fills a fresh SQLite database as bench/open_cases.py does, then times `mailbot export-person` for one person
(wall time of the whole command, Python start-up included) into a new folder each round.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from open_cases import bot_environment, fill  # noqa: E402  (bench/ beside this file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mailbot-export-"))
    try:
        (root / "data").mkdir()
        for name in ("staff.toml", "participants.csv"):
            shutil.copy(REPO / "data" / name, root / "data" / name)
        fill(root / "data", args.cases)
        env = bot_environment(root / "data")
        walls = []
        for n in range(args.rounds):
            began = time.monotonic()
            subprocess.run([sys.executable, "-m", "mailbot", "export-person", f"person{args.cases // 2}@example.org",
                            str(root / f"out{n}")], env=env, cwd=root, check=True, stdout=subprocess.DEVNULL)
            walls.append(time.monotonic() - began)
        print(f"export-person on {args.cases:,} cases: median {statistics.median(walls):.2f} s "
              f"({', '.join(f'{w:.2f}' for w in walls)})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
