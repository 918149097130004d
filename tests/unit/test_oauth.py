"""MAILBOT_OAUTH_TOKEN_COMMAND: a token on the first line, or a plain reason (never the token) why there is none."""

from __future__ import annotations

import shlex
import sys

import pytest

from mailbot.mail.oauth import CommandToken, TokenError

PY = shlex.quote(sys.executable)


def test_the_first_line_is_the_token() -> None:
    assert CommandToken(f"{PY} -c 'print(\"abc.def\"); print(\"ignored\")'")() == "abc.def"


@pytest.mark.parametrize(
    "command, reason",
    [
        (f"{PY} -c 'import sys; sys.exit(\"token endpoint said 401\")'", "token endpoint said 401"),
        (f"{PY} -c 'pass'", "printed no token (exit status 0)"),
        ("/nonexistent/get-token", "could not run"),
        ("'unbalanced", "could not run"),
    ],
)
def test_no_token_is_a_plain_reason(command: str, reason: str) -> None:
    with pytest.raises(TokenError, match="MAILBOT_OAUTH_TOKEN_COMMAND") as caught:
        CommandToken(command)()
    assert reason in str(caught.value)
