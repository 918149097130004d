"""The "sent" journal: the server's 250 recorded durably within a fraction of a millisecond.

SMTP cannot make the server's 250 and our own record of it one atomic step, so the goal is physical:
a letter goes out again only if the bot dies in the instant between the two. The database cannot give
that instant on SQLite: the "sent" mark waits for the writer's lock, which intake holds for up to
~50 ms at a time, and a bot killed at random while letters flowed sent a third of its complainants two
acknowledgements (some letters up to 7 times, the same oldest letters falling in the window again).

So each 250 is first appended to this file, then marked in the database as before. The append is
done before ``record`` returns, so a bot killed after it (the kernel has the line) never sends that
letter again; a thread of the journal's own then syncs it to disk (fdatasync), one sync for every line
written meanwhile, so a crash of the whole machine loses at most the lines of the last few milliseconds.
The sync is not done in line because the sending loop stood still for it: on a disk whose sync takes
3 ms (network storage; measured with strace delaying each fdatasync), a backlog went at 99-100 complaints
a second with the sync in line and at 224-226 with it here. On a fast local disk it makes no difference.

The thread gathers for ``SYNC_GATHER`` after the first line it has to sync, and ``record`` wakes it only when
it is idle. Syncing each line as it came (a backlog's letters come every millisecond or two) cost the SMTP
child about 100 us of CPU a letter, a fifth of its work, in syncs and in waking the thread for every line.
SQLite's own commits (``synchronous=NORMAL``) are not synced at every commit either: after a power cut the
database can lose more than those milliseconds, and the letters with them.

At the start of every delivery pass the journal is folded into the database (letters still pending
there are marked sent) and emptied, so a bot that died with marks in the journal but not yet in the
database never sends those letters again.

Where an SMTP child process sends (mail.smtp_process), the child itself appends each 250 the moment
it reads it: its event loop does nothing else, so the instant is not stretched by the parent's intake
holding the interpreter lock (measured: the parent's loop lagged up to 13 ms behind a 250 in a backlog).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

# How long the sync thread waits for more lines before it syncs (see above).
SYNC_GATHER = 0.005


class SentJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None  # open during a delivery pass only
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._written = self._synced = 0  # lines appended / lines known to be on disk
        self._syncer: threading.Thread | None = None
        self._stopping = False
        self._idle = False  # the sync thread is waiting for a line (``record`` wakes it only then)
        self._hurry = 0  # callers waiting for the sync: the thread stops gathering
        self._refused = 0  # lines the disk would not take since the journal was last closed

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        return self._fd

    def record(self, letter_id: int, sent_when: datetime, tries: int, note: str | None) -> None:
        """Append one 250 before returning; the journal's sync thread puts it on disk moments later.

        A disk that refuses the line (full, read-only) is said in the log, once a pass, and the letter is sent
        all the same: the server has it, and the database's mark follows. Only the safeguard against a crash
        in the moment before that mark is missing; raising here made the letter a failure to send again.
        """
        line = json.dumps([letter_id, sent_when.isoformat(), tries, note], separators=(",", ":")) + "\n"
        try:
            with self._changed:
                fd = self._open()
                os.write(fd, line.encode("utf-8"))
                self._written += 1
                if self._syncer is None:
                    self._syncer = threading.Thread(target=self._sync, name="sent-journal-sync", daemon=True)
                    self._syncer.start()
                if self._idle:
                    self._changed.notify_all()
        except OSError as exc:
            self._refused += 1
            if self._refused == 1:
                log.error("could not write the sent journal %s (%s): the letters are sent and marked in the "
                          "database as usual, but a bot stopped in the moment between could send them again",
                          self.path, exc)

    def wait_synced(self) -> None:
        """Return once every line recorded so far is on disk."""
        with self._changed:
            self._wait_synced()

    def _wait_synced(self) -> None:
        """With the lock held: the sync thread stops gathering, and this returns once it has synced."""
        self._hurry += 1
        self._changed.notify_all()
        try:
            self._changed.wait_for(lambda: self._synced == self._written)
        finally:
            self._hurry -= 1

    def _sync(self) -> None:
        """One fdatasync for all the lines written since the last one, until ``close``."""
        while True:
            with self._changed:
                self._idle = True
                self._changed.wait_for(lambda: self._written > self._synced or self._stopping)
                self._idle = False
                if self._written == self._synced:
                    return
                # The lines of the next few milliseconds go to disk with this one, in the same sync.
                self._changed.wait_for(lambda: self._hurry or self._stopping, timeout=SYNC_GATHER)
                target, fd = self._written, self._fd
            try:
                os.fdatasync(fd)  # type: ignore[arg-type]  (open while lines wait: close waits for them)
            except OSError:
                log.exception("could not sync the sent journal %s to disk", self.path)
            with self._changed:
                self._synced = target
                self._changed.notify_all()

    def entries(self) -> list[dict[str, object]]:
        """Every complete entry (a line cut short by a crash was never a 250 we acted on: it is skipped)."""
        if not self.path.exists():
            return []
        with self._lock, open(self.path, "rb") as journal:
            data = journal.read()
        marks = []
        for line in data.split(b"\n"):
            try:
                letter_id, when, tries, note = json.loads(line)
            except (ValueError, TypeError):
                continue
            marks.append({"letter_id": int(letter_id), "sent_when": datetime.fromisoformat(when),
                          "tries": int(tries), "note": note})
        return marks

    def fold(self, engine: Engine) -> int:
        """Mark every journalled letter that the database still has as pending as sent, then empty the
        journal; returns how many letters that saved from being sent again."""
        marks = self.entries()
        if not marks:
            return 0
        # Imported here: the SMTP child process writes this journal and must not load the database stack.
        from sqlalchemy import bindparam, select, update

        from mailbot.store.db import chunks, to_db
        from mailbot.store.light_tables import MESSAGES

        for mark in marks:
            mark["sent_when"] = to_db(mark["sent_when"])  # type: ignore[arg-type]  (an aware time, as written)
        t = MESSAGES
        mark_sent = update(t).where(t.c.id == bindparam("letter_id"), t.c.delivery == "pending").values(
            delivery="sent", sent_at=bindparam("sent_when"), attempts=bindparam("tries"), last_error=bindparam("note"))
        with engine.begin() as conn:
            # Normally every one of them is marked sent already (the pass that sent them committed its marks):
            # one query says so, instead of an UPDATE per letter of the last pass.
            pending: set[int] = set()
            for ids in chunks({mark["letter_id"] for mark in marks}):  # type: ignore[misc]
                pending.update(conn.execute(select(t.c.id).where(t.c.id.in_(ids), t.c.delivery == "pending"))
                               .scalars())
            saving = [mark for mark in marks if mark["letter_id"] in pending]
            if saving:
                conn.execute(mark_sent, saving)
        saved = len({mark["letter_id"] for mark in saving})
        with self._lock:
            os.ftruncate(self._open(), 0)
        if saved:
            log.warning("%d letter(s) sent before the last stop were not yet marked sent; marked them now", saved)
        return saved

    def close(self) -> None:
        """Sync what was recorded and close the file until the next pass (the bot creates many deliverers in
        tests and tools)."""
        with self._changed:
            self._wait_synced()
            self._stopping = True
            self._changed.notify_all()
            syncer, self._syncer = self._syncer, None
        if syncer is not None:
            syncer.join()
        if self._refused > 1:
            log.error("the sent journal %s could not take %d letters' lines in this pass", self.path, self._refused)
        self._refused = 0
        with self._changed:
            self._stopping = False
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
