"""The charity's own files under the data directory, read from disk: the staff and participant directories
(re-read when they change) and the procedures. The domain parses their text (``domain.directory``,
``domain.procedures``); this module only finds, reads and decodes them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailbot.domain.directory import Directory, DirectoryError, parse_participants, parse_staff
from mailbot.domain.procedures import Procedure, ProcedureFileError, Signpost, parse_procedures, parse_signposts


class DirectoryFiles:
    """Reads the two files and re-reads them when they change on disk (checked by modification time)."""

    def __init__(self, data_dir: Path) -> None:
        self.staff_path = data_dir / "staff.toml"
        self.participants_path = data_dir / "participants.csv"
        self._stamp: tuple[float, float] | None = None
        self._directory = Directory()
        self._held = threading.local()  # .directory: what ``steady`` holds on this thread

    def _current_stamp(self) -> tuple[float, float]:
        def mtime(p: Path) -> float:
            try:  # one stat a file: intake asks for the directory several times a message
                return p.stat().st_mtime_ns
            except FileNotFoundError:
                return -1.0

        return (mtime(self.staff_path), mtime(self.participants_path))

    def load(self) -> Directory:
        """The directory, re-read if a file changed. Raises DirectoryError on a bad file."""
        stamp = self._current_stamp()
        if stamp != self._stamp:
            staff = parse_staff(self._read(self.staff_path), str(self.staff_path)) if self.staff_path.exists() else ()
            people = (parse_participants(self._read(self.participants_path), str(self.participants_path))
                      if self.participants_path.exists() else ())
            self._directory = Directory(staff, people)
            self._stamp = stamp
        return self._directory

    def get(self) -> Directory:
        """Like load(), but a bad edit while running keeps the last good directory instead of stopping intake."""
        held = getattr(self._held, "directory", None)
        if held is not None:
            return held
        try:
            return self.load()
        except DirectoryError:
            return self._directory

    @contextmanager
    def steady(self) -> Iterator[None]:
        """Within it, ``get`` on this thread answers the directory as it was on entry, without looking at the
        files again: one transaction of intake sees one directory (and asks about eight times a message)."""
        if getattr(self._held, "directory", None) is not None:
            yield
            return
        self._held.directory = self.get()
        try:
            yield
        finally:
            self._held.directory = None

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DirectoryError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


# The line that marks the shipped, fictional staff directory (data/staff.toml).
SAMPLE_MARKER = "# mailbot-sample-directory:"


def is_sample_directory(data_dir: Path) -> bool:
    """Whether the staff directory in use is still the fictional sample that ships with the code."""
    path = data_dir / "staff.toml"
    try:
        return any(line.startswith(SAMPLE_MARKER) for line in path.read_text(encoding="utf-8-sig").splitlines())
    except (OSError, UnicodeDecodeError):
        return False


def _procedures_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProcedureFileError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProcedureFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_procedures(path: Path) -> dict[str, Procedure]:
    """Every procedure in the file by key; raises ProcedureFileError on anything it cannot trust."""
    return parse_procedures(_procedures_text(path), str(path))


def load_signposts(path: Path) -> tuple[Signpost, ...]:
    """The regulators an outcome letter points to, from the file's [signposting] table."""
    return parse_signposts(_procedures_text(path), str(path))
