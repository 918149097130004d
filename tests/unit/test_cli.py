"""The command line's own options (the commands themselves are tested from outside, in tests/integration)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from mailbot.cli import main


def test_version_prints_the_installed_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"mailbot {version('mailbot')}\n"


def test_the_case_listing_starts_without_the_orm_or_the_mail_stack(tmp_path: Path) -> None:
    # Start-up is most of what `mailbot cases` costs: the listing must not pay for the ORM's table classes
    # (sqlmodel, pydantic's models), the templates or the mail parser. A fresh interpreter, since this one has
    # imported everything.
    probe = ("import sys\nfrom mailbot.cli import main\n"
             "try:\n    main(['cases'])\nexcept SystemExit:\n    pass\n"
             "heavy = ('sqlmodel', 'sqlalchemy.orm', 'mailbot.store.models', 'jinja2', 'mailparser', 'holidays')\n"
             "print(' '.join(m for m in heavy if m in sys.modules), file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
    env["MAILBOT_DATA_DIR"] = str(tmp_path)
    # A database already at the newest schema, as a deployed bot's is (a first start migrates, with the models).
    subprocess.run([sys.executable, "-m", "mailbot", "db", "upgrade"], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no cases yet\n"
    assert done.stderr.strip() == ""
