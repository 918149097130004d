import sys

from mailbot.cli import main

# Guarded: the delivery process of `run --once` is spawned and imports this module too.
if __name__ == "__main__":
    sys.exit(main())
