"""Access tokens for signing in to IMAP and SMTP with XOAUTH2 (MAILBOT_AUTH).

``command``: MAILBOT_OAUTH_TOKEN_COMMAND prints an access token on its first line; it runs afresh for every
connection, so a token the provider rotated or renewed is always the one used. The token is never logged.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

# How long a token command may take before the sign-in counts as failed.
TOKEN_COMMAND_SECONDS = 30.0


class TokenError(Exception):
    """No access token could be had: the sign-in fails with this reason (the token itself is never in it)."""


@dataclass(frozen=True)
class CommandToken:
    """A token from MAILBOT_OAUTH_TOKEN_COMMAND (a shell-free command line, split as a shell would)."""

    command: str

    def __call__(self) -> str:
        try:
            done = subprocess.run(shlex.split(self.command), capture_output=True, text=True,
                                  timeout=TOKEN_COMMAND_SECONDS, check=False)
        except (OSError, ValueError) as exc:
            raise TokenError(f"MAILBOT_OAUTH_TOKEN_COMMAND could not run: {exc}") from None
        except subprocess.TimeoutExpired:
            raise TokenError(f"MAILBOT_OAUTH_TOKEN_COMMAND gave no token within {TOKEN_COMMAND_SECONDS:.0f} s") \
                from None
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines or not lines[0].strip():
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:300]
            raise TokenError(f"MAILBOT_OAUTH_TOKEN_COMMAND printed no token ({why})")
        return lines[0].strip()
