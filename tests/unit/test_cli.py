"""The command line's own options (the commands themselves are tested from outside, in tests/integration)."""

from __future__ import annotations

import ast
import json
import mailbox
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailbot.cli import main
from tests.probes import run_once_probe

REPO = Path(__file__).resolve().parents[2]


def test_version_prints_the_installed_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"mailbot {version('mailbot')}\n"


def _mailbot_env(data_dir: Path) -> dict[str, str]:
    """This environment without its MAILBOT_ settings, on a data directory of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
    env["MAILBOT_DATA_DIR"] = str(data_dir)
    return env


def _fresh_python(probe: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """The probe run by a new interpreter (this one has imported everything), in the data directory."""
    return subprocess.run([sys.executable, "-c", probe], env=_mailbot_env(data_dir), cwd=data_dir,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def one_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose database holds one case (a complaint taken in by a local-mode pass) and one unfiled
    bounce, as a deployed bot's is: already at the newest schema (a first start migrates, with the models)."""
    data_dir = tmp_path_factory.mktemp("one-case")
    inbox = mailbox.Maildir(data_dir / "maildir")
    for sample in ("01-complaint.eml", "04-bounce.eml"):
        inbox.add((REPO / "data" / "samples" / sample).read_bytes())
    subprocess.run([sys.executable, "-m", "mailbot", "run", "--once"], env=_mailbot_env(data_dir), cwd=data_dir,
                   check=True, capture_output=True, timeout=120)
    return data_dir


@pytest.mark.parametrize(("command", "shows"), [
    (["cases"], "1MM-2026-0001  open"),
    (["cases", "--json"], '"ref": "1MM-2026-0001"'),
    (["case", "1mm-2026-0001"], "1MM-2026-0001: Nobody called me back about volunteering"),
    (["case", "1MM-2026-0001", "--json"], '"kind": "acknowledgement"'),
    (["unfiled"], "Undelivered Mail Returned to Sender"),
    (["unfiled", "--json"], '"kind": "bounce"'),
])
def test_the_case_commands_start_without_the_orm_or_the_mail_stack(one_case: Path, command: list[str],
                                                                  shows: str) -> None:
    # Start-up is most of what these commands cost: they must not pay for the ORM's table classes (sqlmodel,
    # pydantic's models), pydantic at all (the settings are read without it), the templates or the mail parser. A
    # fresh interpreter, since this one has imported everything.
    probe = ("import sys\nfrom mailbot.cli import main\n"
             f"try:\n    main({command!r})\nexcept SystemExit:\n    pass\n"
             "heavy = ('sqlmodel', 'pydantic', 'sqlalchemy.orm', 'mailbot.store.models', 'jinja2', 'mailparser',"
             " 'holidays')\n"
             "print(' '.join(m for m in heavy if m in sys.modules), file=sys.stderr)\n")
    done = _fresh_python(probe, one_case)
    assert done.returncode == 0, done.stderr
    assert shows in done.stdout
    assert done.stderr.strip() == ""


def test_the_listing_of_an_empty_database_says_so(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "mailbot", "db", "upgrade"], env=_mailbot_env(tmp_path), cwd=tmp_path,
                   check=True, capture_output=True, timeout=60)
    done = _fresh_python("from mailbot.cli import main\nmain(['cases'])\n", tmp_path)
    assert done.stdout == "no cases yet\n", done.stderr


def test_db_upgrade_keeps_the_bank_holidays_so_the_first_complaint_does_not_import_the_package(
        tmp_path: Path) -> None:
    # Learning a year's bank holidays imports the holidays package (~0.13 s): deploy-time work, which the first
    # complaint after an installation used to do before its acknowledgement.
    def years() -> list[str]:
        year = datetime.now(ZoneInfo("Europe/London")).year
        return [str(year), str(year + 1)]

    before = years()
    subprocess.run([sys.executable, "-m", "mailbot", "db", "upgrade"], env=_mailbot_env(tmp_path), cwd=tmp_path,
                   check=True, capture_output=True, timeout=60)
    kept = sorted(json.loads((tmp_path / "bank-holidays.json").read_text())["years"])
    assert kept in (before, years())  # (the year may turn during the test)

    inbox = mailbox.Maildir(tmp_path / "maildir")
    inbox.add((REPO / "data" / "samples" / "01-complaint.eml").read_bytes())
    probe = ("import sys\nfrom mailbot.cli import main\n"
             "try:\n    main(['run', '--once'])\nexcept SystemExit:\n    pass\n"
             "print('holidays' in sys.modules, file=sys.stderr)\n")
    done = _fresh_python(probe, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False"
    assert "1MM-" in subprocess.run([sys.executable, "-m", "mailbot", "cases"], env=_mailbot_env(tmp_path),
                                    cwd=tmp_path, capture_output=True, text=True, timeout=60).stdout


def test_db_upgrade_with_wrong_closures_still_upgrades_and_leaves_the_error_to_the_start(tmp_path: Path) -> None:
    env = {**_mailbot_env(tmp_path), "MAILBOT_CLOSURES": "not a date"}
    done = subprocess.run([sys.executable, "-m", "mailbot", "db", "upgrade"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "is up to date" in done.stdout, done.stderr
    assert not (tmp_path / "bank-holidays.json").exists()
    started = subprocess.run([sys.executable, "-m", "mailbot", "run", "--once"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode != 0 and "MAILBOT_CLOSURES" in started.stdout + started.stderr


def test_a_single_pass_with_no_mail_imports_no_web_stack_and_compiles_no_category_words(tmp_path: Path) -> None:
    # Only the daemon serves /metrics; a `run --once` has nobody to count for, so it pays neither for importing
    # prometheus-client nor for counting each letter (the daemon's counters: tests/integration/test_operator_view).
    # The category words' patterns (10-15 ms to compile) wait for the first message, and multiprocessing (~9 ms)
    # for a backlog to read in a child process (mail.parse_pool).
    probe = run_once_probe(("prometheus_client", "mailbot.web.metrics", "starlette", "uvicorn", "multiprocessing",
                            "concurrent.futures.process"), then="from mailbot.domain import categories\n",
                           shows="categories._patterns.cache_info().currsize")
    done = _fresh_python(probe, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 [] 0"


def test_a_pass_with_no_mail_and_nothing_due_loads_no_orm_parser_templates_or_staff_grammar(
        one_case: Path, tmp_path: Path) -> None:
    # Most `run --once` passes (from cron, every few minutes) find nothing: no mail, no deadline to remind, no
    # letter to send. The scheduled work asks the database without the ORM first (store.due_reads), the outbox and
    # the mailbox's cursor are read in Core, and the case machinery is built only when asked for (bootstrap.App).
    # On a copy of a database holding an open case, at the moment the case was opened (on the wall clock a reminder
    # could fall due between the fixture and this test), when none of its deadlines needs anything.
    data_dir = tmp_path / "data"
    shutil.copytree(one_case, data_dir)
    with sqlite3.connect(data_dir / "mailbot.db") as db:
        [(opened,)] = db.execute('SELECT opened_at FROM "case"').fetchall()
    probe = run_once_probe(("sqlmodel", "pydantic", "sqlalchemy.orm", "mailbot.store.models", "jinja2", "mailparser",
                            "mailbot.domain.mail.parse", "mailbot.domain.commands", "mailbot.domain.chain",
                            "mailbot.services.ingest", "mailbot.services.correspondence", "mailbot.services.digest"),
                           args=("--now", f"{opened.replace(' ', 'T')}+00:00"))
    done = _fresh_python(probe, data_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [
        "fetched 0 message(s); scheduled work queued 0 letter(s); sent 0, deferred 0, failed 0", "0 []"]
    assert "audit trail head on" in done.stderr  # the pass still logs the chain's head, as every start does


@pytest.mark.parametrize("command, switched_on_by", [(["run", "--once"], "settle_memory"), (["cases"], "_dispatch")])
def test_the_garbage_collector_is_off_while_a_command_starts_and_on_for_its_work(
        tmp_path: Path, command: list[str], switched_on_by: str) -> None:
    # Off while the libraries load (~50 ms of an idle `run --once` was the collector walking them again and
    # again); a daemon left with it off would never free a reference cycle.
    probe = (
        "import gc, sys\nfrom mailbot import cli, console, launch\nstates = []\n"
        "def watch(owner, name):\n"
        "    real = getattr(owner, name)\n"
        "    def spy(*args, **kwargs):\n"
        "        states.append((name, gc.isenabled()))\n"
        "        return real(*args, **kwargs)\n"
        "    setattr(owner, name, spy)\n"
        "watch(cli, '_dispatch')\nwatch(console, 'settle_memory')\n"
        f"sys.argv = ['mailbot', *{command!r}]\n"
        "code = launch.main()\n"
        "print(repr((code, states, gc.isenabled(), gc.get_freeze_count())))\n")
    done = _fresh_python(probe, tmp_path)
    assert done.returncode == 0, done.stderr
    code, states, on_at_the_end, frozen = ast.literal_eval(done.stdout.splitlines()[-1])
    assert code == 0
    assert states[0] == ("_dispatch", False)  # started with the collector off
    if switched_on_by == "settle_memory":
        assert states[1] == ("settle_memory", False)  # and still off until `run` has built the bot
    assert on_at_the_end  # on for the work
    # and the libraries kept out of its way (switched on over them, its first collections walked them all: 60 ms
    # of a 0.34 s `mailbot cases`); about 40,000 objects with SQLAlchemy's
    assert frozen > 20_000


def test_a_pass_that_took_mail_in_ends_with_its_work_on_disk_and_its_objects_left_to_the_kernel(
        tmp_path: Path) -> None:
    # Its end: the interpreter's teardown would walk every cycle among the objects the pass loaded (the ORM, the
    # pipeline), 0.12-0.20 s after a backlog (bench/README.md). They are frozen for it instead; what the teardown
    # would still do that matters must not be lost with it: the database folded and closed, the pass's report
    # printed, the letter kept, the exit handlers run.
    inbox = mailbox.Maildir(tmp_path / "maildir")
    inbox.add((REPO / "data" / "samples" / "01-complaint.eml").read_bytes())
    probe = ("import atexit, gc, os, sys\nfrom mailbot import console, launch\nsettled = []\n"
             "real = console.settle_memory\n"
             "def spy():\n    real()\n    settled.append(gc.get_freeze_count())\n"
             "console.settle_memory = spy\n"
             "atexit.register(lambda: print('exit handlers ran', flush=True))\n"
             "sys.argv = ['mailbot', 'run', '--once']\ncode = launch.main()\n"
             "print(repr((code, settled[0], gc.get_freeze_count(), os.path.exists('mailbot.db-wal'))))\n")
    done = _fresh_python(probe, tmp_path)
    assert done.returncode == 0, done.stderr
    code, frozen_at_start, frozen_at_the_end, wal_left = ast.literal_eval(done.stdout.splitlines()[-2])
    assert code == 0 and not wal_left
    # the pipeline the complaint needed (the ORM's classes, the parser, the templates): tens of thousands more
    assert frozen_at_the_end > frozen_at_start + 20_000
    assert done.stdout.splitlines()[-1] == "exit handlers ran"
    assert "fetched 1 message(s)" in done.stdout + done.stderr
    with sqlite3.connect(tmp_path / "mailbot.db") as db:
        assert db.execute("SELECT count(*) FROM message WHERE direction = 'out'").fetchone()[0] >= 1


@pytest.mark.parametrize("value", [
    [], {}, None, "plain", 3, [[]], [{}], [1], [1, 2, 3], [[1, [2, []]], {"a": []}],
    [{"ref": "1MM-2026-0001", "deadlines": {"first_response": "2026-12-07T17:30:00+00:00"}, "restriction": None,
      "options": ["no-phone", "one-contact"], "subject": "Line one\nline two \u2014 \u00e9t\u00e9 \"quoted\""}],
    {"messages": [{"at": None, "to": "a@example.org, b@example.org"}], "events": []},
])
def test_json_goes_out_as_json_dump_writes_it(value: object, capsys: pytest.CaptureFixture[str]) -> None:
    # `--json` is a public contract: a list written one element at a time must come out as json.dump writes it.
    from mailbot.console import print_json

    print_json(value)
    assert capsys.readouterr().out == json.dumps(value, indent=2, ensure_ascii=False) + "\n"
