import sys

from mailbot.cli import main

sys.exit(main())
