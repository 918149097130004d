"""Writers in different processes on one SQLite database take turns: one that waits goes before the writer it
waited for begins again (a ``run --once`` and its delivery process; an operator's command beside the daemon)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailbot.store.db import make_engine, reading, upgrade, writer_turns
from mailbot.store.turns import ProcessTurns, WriterTurns

# A writer in a process of its own: it takes the turn, says so, and gives it back at once or, told to hold it,
# when told (or never).
WRITER = """
import sys
from pathlib import Path
from mailbot.store.turns import ProcessTurns
turns = ProcessTurns(Path(sys.argv[1]))
print("had" if turns.take(30) else "not had", flush=True)
with open(sys.argv[2], "a") as log:
    log.write("other\\n")
if sys.argv[3:] == ["hold"]:
    sys.stdin.readline()
turns.give_back()
"""

# A writer through the engine, as the bot writes: it inserts one row and commits.
ENGINE_WRITER = """
import sys
from mailbot.store.db import make_engine
engine = make_engine(sys.argv[1])
with engine.begin() as conn:
    conn.exec_driver_sql("INSERT INTO refsequence (year, last_seq) VALUES (1, 1)")
"""


@contextlib.contextmanager
def _started(code: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """The code run by a new interpreter; killed, if still running, when the block ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
    with subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, env=env) as process:
        try:
            yield process
        finally:
            process.kill()


def _queued(base: Path, process: subprocess.Popen[str], seconds: float = 30) -> bool:
    """Whether another process holds the queue (it waits for the turn), looked at until ``seconds`` pass."""
    fd = os.open(base.with_name(base.name + ".writer-queue.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and process.poll() is None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fd, fcntl.LOCK_UN)
            time.sleep(0.002)
        return False
    finally:
        os.close(fd)


def test_a_process_waiting_for_the_turn_goes_before_the_holder_takes_it_again(tmp_path: Path) -> None:
    base, log = tmp_path / "db.sqlite", tmp_path / "log"
    turns = ProcessTurns(base)
    assert turns.take(30)
    with _started(WRITER, str(base), str(log)) as other:
        assert _queued(base, other)
        turns.give_back()
        # The holder asks again at once, microseconds after giving the turn back: the other, woken by its next
        # look at the lock, would lose that race every time without the queue.
        assert turns.take(30)
        with log.open("a") as f:
            f.write("holder again\n")
        assert other.wait(30) == 0
        assert other.stdout.read() == "had\n"  # type: ignore[union-attr]
    turns.give_back()
    turns.close()
    assert log.read_text().splitlines() == ["other", "holder again"]
    assert turns.waited == 1


def test_a_turn_never_given_back_is_waited_for_only_as_long_as_the_patience_and_ends_with_its_process(
        tmp_path: Path) -> None:
    base, log = tmp_path / "db.sqlite", tmp_path / "log"
    turns = ProcessTurns(base)
    with _started(WRITER, str(base), str(log), "hold") as holder:
        assert holder.stdout.readline() == "had\n"  # type: ignore[union-attr]
        started = time.monotonic()
        assert not turns.take(0.3)  # the writer goes anyway, and SQLite's own lock decides
        assert time.monotonic() - started >= 0.3
        holder.kill()  # killed holding the turn: the kernel lets go of the lock with the process
        holder.wait()
        assert turns.take(30)
    # And this process's turn, in its turn, keeps the next one waiting until it is given back.
    with _started(WRITER, str(base), str(log)) as again:
        assert _queued(base, again)
        turns.give_back()
        assert again.wait(30) == 0
        assert again.stdout.read() == "had\n"  # type: ignore[union-attr]
    turns.close()


def test_a_write_from_another_process_goes_before_the_bots_next_transaction(tmp_path: Path) -> None:
    # As a delivery process's "sent" marks met intake: intake commits and begins again at once, and SQLite's busy
    # handler, which the other process slept in, looked too late to see the gap (pauses of up to 2.65 s in an
    # 8,000-complaint backlog).
    base = tmp_path / "db.sqlite"
    url = f"sqlite:///{base}"
    engine = make_engine(url)
    upgrade(engine)
    with contextlib.ExitStack() as stack, engine.connect() as conn:
        with conn.begin():
            conn.exec_driver_sql("INSERT INTO refsequence (year, last_seq) VALUES (0, 1)")
            other = stack.enter_context(_started(ENGINE_WRITER, url))
            assert _queued(base, other)
        with conn.begin():  # at once, as intake's next transaction
            conn.exec_driver_sql("INSERT INTO refsequence (year, last_seq) VALUES (2, 1)")
        assert other.wait(30) == 0
    with reading(engine) as conn:
        assert conn.exec_driver_sql("SELECT year FROM refsequence ORDER BY rowid").scalars().all() == [0, 1, 2]
    turns = writer_turns(engine)
    assert turns is not None and turns.across is not None and turns.across.waited == 1
    engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_a_database_in_memory_has_no_other_process_to_queue_with(url: str) -> None:
    turns = writer_turns(make_engine(url))
    assert turns is not None and turns.across is None


def test_a_database_in_a_folder_the_bot_may_not_write_still_takes_writes(tmp_path: Path) -> None:
    # The queue's files cannot be made there; SQLite's own lock decides, as it did before the queue.
    folder = tmp_path / "ro"
    folder.mkdir()
    turns = ProcessTurns(folder / "db.sqlite")
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root writes anywhere: make the name itself unusable instead
            (folder / "db.sqlite.writer-queue.lock").mkdir()
        assert not turns.take(30)
        turns.give_back()
    finally:
        folder.chmod(0o700)


def test_a_writer_whose_wait_for_the_other_processes_fails_gives_its_threads_turn_back(tmp_path: Path) -> None:
    class Failing(ProcessTurns):
        def take(self, patience: float) -> bool:
            raise OSError("no locks left")

    turns = WriterTurns(patience=30, across=Failing(tmp_path / "db.sqlite"))
    with pytest.raises(OSError):
        turns.take()
    turns.across = None
    started = time.monotonic()
    turns.give_back(turns.take())  # at once, not after the 30 s patience
    assert time.monotonic() - started < 5
