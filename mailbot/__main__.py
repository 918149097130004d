import sys

from mailbot.launch import main

if __name__ == "__main__":  # not when a child process (mail.parse_pool) imports it as the parent's main module
    sys.exit(main())
