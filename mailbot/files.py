"""Files that hold personal data or keys: readable by the bot's own user only.

Complaints are personal data (special category, often: health, safeguarding), so the database, its
WAL and shared-memory files, the signing key and the data directory are 0600/0700, whatever the umask.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def write_private_file(path: Path, content: bytes) -> None:
    """Create ``path`` readable by its owner only, atomically: never a moment at 0644, never half written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover temporary file of another mode is made private too
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def make_private_dir(path: Path) -> None:
    """The directory, created 0700 if missing, and made 0700 if it is ours and wider.

    A directory we cannot change (a read-only mount, another owner) is left as it is, with a warning.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        log.warning("could not make %s private (0700): %s", path, exc)


def make_private_sqlite(path: Path) -> None:
    """The SQLite file exists at 0600 before SQLite opens it: SQLite gives its -wal and -shm files the
    database file's mode, so all three stay private. Existing files are tightened to 0600."""
    if not path.parent.exists():
        make_private_dir(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if candidate.exists() and candidate.stat().st_mode & 0o077:
                candidate.chmod(0o600)
        except OSError as exc:
            log.warning("could not make %s private (0600): %s", candidate, exc)
