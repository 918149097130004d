"""`mailbot backup DIR`: everything a restore needs, consistent while the bot runs.

The SQLite database through SQLite's online backup API (a consistent copy even mid-write), the signing key (the
signed reply addresses in staff's mail keep working after a restore) and the charity's own files (the staff and
participant directories, the procedures when edited). Everything is written readable by its owner only.
PostgreSQL has its own tool for this: the README gives the `pg_dump` recipe.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailbot.files import make_private_dir, write_private_file
from mailbot.store.sqlite_file import database_file

# The data dir's files a restore needs beside the database (each copied when present).
DATA_FILES = ("secret.key", "staff.toml", "participants.csv", "procedures.toml")


class BackupRefused(Exception):
    """A backup this command cannot make; the message says what to do instead."""


def backup(database_url: str, data_dir: Path, target: Path) -> list[Path]:
    """Write the backup into ``target`` (created 0700); returns the files written."""
    source = database_file(database_url)
    if source is None:
        raise BackupRefused("mailbot backup copies a SQLite database; for PostgreSQL use pg_dump (README, Backups)")
    if not source.exists():
        raise BackupRefused(f"there is no database at {source} to back up")
    make_private_dir(target)
    written = [_copy_database(source, target / "mailbot.db")]
    for name in DATA_FILES:
        path = data_dir / name
        if path.is_file():
            write_private_file(target / name, path.read_bytes())
            written.append(target / name)
    return written


def _copy_database(source: Path, destination: Path) -> Path:
    partial = destination.with_name(f".{destination.name}.partial")
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600)
    src = sqlite3.connect(source)  # only read: the backup API copies pages under SQLite's own locking
    dst = sqlite3.connect(partial)
    try:
        with dst:
            src.backup(dst)
    finally:
        dst.close()
        src.close()
    partial.chmod(0o600)
    partial.replace(destination)
    return destination
