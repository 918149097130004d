"""The command line's own options (the commands themselves are tested from outside, in tests/integration)."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from mailbot.cli import main


def test_version_prints_the_installed_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"mailbot {version('mailbot')}\n"
