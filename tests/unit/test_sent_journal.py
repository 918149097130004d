"""store.sent_journal: a 250 recorded in the journal is never sent again, even if the database never heard of it."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text

from mailbot.store.db import open_database
from mailbot.store.sent_journal import SentJournal

WHEN = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


def outbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = open_database(f"sqlite:///{tmp_path / 'j.db'}")
    with engine.begin() as conn:
        for n in (1, 2, 3):
            conn.execute(text("INSERT INTO message (id, direction, message_id, subject, from_addr, to_addrs, kind, at, "
                              "raw, delivery, attempts, automatic) VALUES (:id, 'out', :mid, '', '', 'a@b.c', "
                              "'acknowledgement', :at, x'00', :state, 0, 1)"),
                         {"id": n, "mid": f"m{n}", "at": WHEN.replace(tzinfo=None),
                          "state": "failed" if n == 3 else "pending"})
    return engine


def states(engine) -> dict[int, str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, delivery FROM message")).all())


def test_fold_marks_journalled_letters_sent_and_empties_the_journal(tmp_path: Path) -> None:
    engine = outbox(tmp_path)
    journal = SentJournal(tmp_path / "sent.journal")
    journal.record(1, WHEN, 1, None)
    journal.record(3, WHEN, 1, None)  # already failed in the database: left as it is
    journal.close()
    assert SentJournal(tmp_path / "sent.journal").fold(engine) == 1
    assert states(engine) == {1: "sent", 2: "pending", 3: "failed"}
    assert (tmp_path / "sent.journal").read_bytes() == b""
    engine.dispose()


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    engine = outbox(tmp_path)
    path = tmp_path / "sent.journal"
    journal = SentJournal(path)
    journal.record(2, WHEN, 1, "partly refused: x")
    journal.close()
    with open(path, "ab") as raw:
        raw.write(b'[1,"2026-11-')  # the process died mid-write
    entries = SentJournal(path).entries()
    assert [e["letter_id"] for e in entries] == [2] and entries[0]["note"] == "partly refused: x"
    SentJournal(path).fold(engine)
    assert states(engine) == {1: "pending", 2: "sent", 3: "failed"}
    engine.dispose()


def test_the_journal_is_private(tmp_path: Path) -> None:
    journal = SentJournal(tmp_path / "sent.journal")
    journal.record(1, WHEN, 1, None)
    journal.close()
    assert (tmp_path / "sent.journal").stat().st_mode & 0o777 == 0o600


def test_lines_are_in_the_file_at_once_and_synced_together_by_the_journals_own_thread(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """A burst of 250s costs one or two syncs, not one each, and the sending loop never waits for them:
    each line is in the file (a killed bot keeps it) the moment ``record`` returns."""
    import os
    import threading
    import time

    synced_sizes: list[int] = []
    sync_threads: set[str] = set()
    real = os.fdatasync

    def slow_sync(fd: int) -> None:  # a disk under load: each sync takes a while
        sync_threads.add(threading.current_thread().name)
        size = os.fstat(fd).st_size
        time.sleep(0.05)
        real(fd)
        synced_sizes.append(size)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    path = tmp_path / "sent.journal"
    journal = SentJournal(path)
    for n in range(1, 51):
        journal.record(n, WHEN, 1, None)
        assert path.read_bytes().count(b"\n") == n
    journal.close()
    assert [e["letter_id"] for e in SentJournal(path).entries()] == list(range(1, 51))
    assert 1 <= len(synced_sizes) <= 3
    assert synced_sizes[-1] == path.stat().st_size  # close waited for the last line's sync
    assert threading.current_thread().name not in sync_threads
    journal.record(51, WHEN, 1, None)  # a new pass opens the journal again, with its own sync thread
    journal.wait_synced()
    assert synced_sizes[-1] == path.stat().st_size
    journal.close()


def test_lines_a_few_milliseconds_apart_share_one_sync_and_a_waiter_does_not_wait_out_the_gathering(
        tmp_path: Path, monkeypatch) -> None:
    """On a quick disk the thread would sync each line of a backlog on its own (a line every millisecond or
    two): it gathers for SYNC_GATHER after the first, so the lines that come meanwhile share its sync. Here the
    gathering is long enough to see: three lines 50 ms apart are one sync; asking for the sync (a closing pass)
    cuts the gathering short; a lone line is still synced when the gathering ends, with nobody asking."""
    import os
    import time

    from mailbot.store import sent_journal

    monkeypatch.setattr(sent_journal, "SYNC_GATHER", 1.0)
    synced_sizes: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        synced_sizes.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    path = tmp_path / "sent.journal"
    journal = SentJournal(path)
    began = time.monotonic()
    for n in (1, 2, 3):
        journal.record(n, WHEN, 1, None)
        time.sleep(0.05)
    journal.wait_synced()
    assert time.monotonic() - began < 0.8  # not the whole second after the first line
    assert synced_sizes == [path.stat().st_size]
    journal.record(4, WHEN, 1, None)
    deadline = time.monotonic() + 5
    while len(synced_sizes) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert synced_sizes[1:] == [path.stat().st_size]
    journal.close()
    assert [e["letter_id"] for e in SentJournal(path).entries()] == [1, 2, 3, 4]


def test_with_the_journal_behind_them_sent_marks_gather_into_one_commit_and_close_does_not_wait(
        tmp_path: Path) -> None:
    import time

    from sqlalchemy import event

    from mailbot.store.outbox import SentMarks

    engine = outbox(tmp_path)
    commits: list[float] = []
    event.listen(engine, "commit", lambda _conn: commits.append(time.monotonic()))
    marks = SentMarks(engine, gather=0.5)
    began = time.monotonic()
    marks.put(1, WHEN, 1, None)
    time.sleep(0.1)  # well inside the window: the second mark joins the first one's commit
    marks.put(2, WHEN, 1, None)
    marks.close()  # the window is cut short: everything queued is committed, and close returns
    assert time.monotonic() - began < 0.45
    assert states(engine) == {1: "sent", 2: "sent", 3: "failed"}
    assert len(commits) == 1
    engine.dispose()


def test_without_gathering_each_mark_is_committed_as_soon_as_it_can_be(tmp_path: Path) -> None:
    import time

    from sqlalchemy import event

    from mailbot.store.outbox import SentMarks

    engine = outbox(tmp_path)
    commits: list[float] = []
    event.listen(engine, "commit", lambda _conn: commits.append(time.monotonic()))
    marks = SentMarks(engine)
    marks.put(1, WHEN, 1, None)
    time.sleep(0.3)
    assert states(engine)[1] == "sent"  # no journal to lean on: it did not wait for company
    marks.put(2, WHEN, 1, None)
    marks.close()
    assert states(engine) == {1: "sent", 2: "sent", 3: "failed"} and len(commits) == 2
    engine.dispose()
