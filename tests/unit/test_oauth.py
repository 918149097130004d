"""MAILBOT_OAUTH_TOKEN_COMMAND: a token on the first line, or a plain reason (never the token) why there is none."""

from __future__ import annotations

import shlex
import sys

import pytest

from mailbot.mail.oauth import CommandToken, TokenError, TokenSpec


def command(line: str) -> CommandToken:
    return CommandToken(TokenSpec(kind="command", command=line))

PY = shlex.quote(sys.executable)


def test_the_first_line_is_the_token() -> None:
    assert command(f"{PY} -c 'print(\"abc.def\"); print(\"ignored\")'")() == "abc.def"


@pytest.mark.parametrize(
    "line, reason",
    [
        (f"{PY} -c 'import sys; sys.exit(\"token endpoint said 401\")'", "token endpoint said 401"),
        (f"{PY} -c 'pass'", "printed no token (exit status 0)"),
        ("/nonexistent/get-token", "could not run"),
        ("'unbalanced", "could not run"),
    ],
)
def test_no_token_is_a_plain_reason(line: str, reason: str) -> None:
    with pytest.raises(TokenError, match="MAILBOT_OAUTH_TOKEN_COMMAND") as caught:
        command(line)()
    assert reason in str(caught.value)
