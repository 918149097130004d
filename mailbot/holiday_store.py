"""England & Wales bank holidays as the `holidays` package gave them, kept in the data directory.

The package is the source of truth (``domain.workdays.bank_holidays``), but importing it loads every one of its
~250 countries: about 40 ms, a tenth of a `mailbot run --once` that finds nothing to do, to learn this year's eight
dates. So what it answered is written to ``bank-holidays.json`` with the package's version, and read from there
while that version is installed. A newer package (a new one-off bank holiday arrives that way) is asked again. A
file that cannot be read or written is no error: the package answers, as it would without this store.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mailbot.domain.workdays import BankHolidays, bank_holidays
from mailbot.files import write_private_file

log = logging.getLogger(__name__)

FILE_NAME = "bank-holidays.json"


def package_version() -> str:
    try:
        return version("holidays")
    except PackageNotFoundError:
        return ""


class StoredBankHolidays:
    """A ``BankHolidays`` for the calendar: ``source``'s answers, remembered in ``path`` under ``source_version``."""

    def __init__(self, path: Path, source: BankHolidays = bank_holidays, source_version: str | None = None) -> None:
        self.path = path
        self.source = source
        self.source_version = package_version() if source_version is None else source_version
        self._years: dict[int, frozenset[date]] | None = None
        self._lock = threading.Lock()  # intake and the scheduled work ask from their own threads

    def __call__(self, year: int) -> frozenset[date]:
        with self._lock:
            if self._years is None:
                self._years = self._read()
            days = self._years.get(year)
            if days is None:
                days = self._years[year] = self.source(year)
                self._write(self._years)
            return days

    def _read(self) -> dict[int, frozenset[date]]:
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
            if not self.source_version or stored.get("holidays") != self.source_version:
                return {}
            return {int(year): frozenset(date.fromisoformat(day) for day in days)
                    for year, days in stored["years"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("%s: not a list of bank holidays (%s); asking the holidays package again", self.path, exc)
            return {}

    def _write(self, years: dict[int, frozenset[date]]) -> None:
        if not self.source_version:
            return
        text = json.dumps({"holidays": self.source_version,
                           "years": {str(y): sorted(d.isoformat() for d in days) for y, days in sorted(years.items())}},
                          indent=1)
        try:
            write_private_file(self.path, (text + "\n").encode("utf-8"))  # whole or not at all, like the key
        except OSError as exc:
            log.info("could not keep the bank holidays in %s (%s); the holidays package answers instead",
                     self.path, exc)
