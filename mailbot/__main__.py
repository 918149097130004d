import sys

from mailbot.launch import main

sys.exit(main())
