"""The bank holidays kept in the data directory: the holidays package's answers, asked once per installed version."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailbot.domain.workdays import WorkingCalendar, bank_holidays
from mailbot.holiday_store import FILE_NAME, StoredBankHolidays, package_version

REPO = Path(__file__).resolve().parents[2]


class Source:
    """The holidays package's answers, counted."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def __call__(self, year: int) -> frozenset[date]:
        self.asked.append(year)
        return bank_holidays(year)


def test_the_first_answer_is_kept_and_the_next_process_reads_it(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    source = Source()
    store = StoredBankHolidays(path, source, "0.109")
    assert store(2026) == bank_holidays(2026) and date(2026, 4, 6) in store(2026)  # Easter Monday, England
    assert source.asked == [2026]
    stored = json.loads(path.read_text())
    assert stored["holidays"] == "0.109" and "2026-12-28" in stored["years"]["2026"]

    again = Source()
    later = StoredBankHolidays(path, again, "0.109")
    assert later(2026) == bank_holidays(2026) and again.asked == []
    assert later(2027) == bank_holidays(2027) and again.asked == [2027]
    assert sorted(json.loads(path.read_text())["years"]) == ["2026", "2027"]


def test_another_version_of_the_package_is_asked_again(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    StoredBankHolidays(path, Source(), "0.108")(2026)
    source = Source()
    assert StoredBankHolidays(path, source, "0.109")(2026) == bank_holidays(2026)
    assert source.asked == [2026] and json.loads(path.read_text())["holidays"] == "0.109"


@pytest.mark.parametrize("text", ["{not json", '{"holidays": "0.109", "years": {"2026": ["26 December"]}}',
                                  '{"holidays": "0.109", "years": ["2026"]}', "[]"])
def test_a_damaged_file_is_replaced_with_the_package_answer(tmp_path: Path, text: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / FILE_NAME
    path.write_text(text)
    source = Source()
    assert StoredBankHolidays(path, source, "0.109")(2026) == bank_holidays(2026)
    assert source.asked == [2026]
    assert json.loads(path.read_text())["years"]["2026"][0] == "2026-01-01"
    assert "not a list of bank holidays" in caplog.text


def test_a_place_it_cannot_write_costs_only_the_saving(tmp_path: Path) -> None:
    path = tmp_path / "missing-folder" / FILE_NAME
    source = Source()
    store = StoredBankHolidays(path, source, "0.109")
    assert store(2026) == bank_holidays(2026) and store(2026) == bank_holidays(2026)
    assert source.asked == [2026] and not path.parent.exists()


def test_the_calendar_counts_the_same_with_the_store(tmp_path: Path) -> None:
    stored = WorkingCalendar(holidays=StoredBankHolidays(tmp_path / FILE_NAME, Source(), "0.109"))
    plain = WorkingCalendar()
    for start, n in ((date(2026, 12, 23), 3), (date(2027, 3, 25), 1), (date(2026, 5, 1), 2), (date(2027, 1, 4), -3)):
        assert stored.add_working_days(start, n) == plain.add_working_days(start, n)
    assert stored.add_working_days(date(2026, 12, 23), 3) == date(2026, 12, 30)  # past Christmas and the 28th
    assert [stored.is_working_day(date(2026, 12, d)) for d in (24, 25, 28, 29)] == [True, False, False, True]


def test_a_stored_year_does_not_import_the_holidays_package(tmp_path: Path) -> None:
    """The saving itself: the package (all its countries) is not loaded to learn a year it has already said."""
    path = tmp_path / FILE_NAME
    StoredBankHolidays(path)(2026)
    assert json.loads(path.read_text())["holidays"] == package_version() != ""
    script = ("import sys; from datetime import date; from pathlib import Path;"
              "from mailbot.holiday_store import StoredBankHolidays;"
              f"days = StoredBankHolidays(Path({str(path)!r}))(2026);"
              "print(date(2026, 12, 28) in days, 'holidays' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


@pytest.mark.parametrize(("now", "years"), [
    (datetime(2026, 12, 7, 9, tzinfo=UTC), [2026, 2027]),  # December's deadlines reach into January
    (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), [2026, 2027]),  # still 2026 in London (GMT)
    (datetime(2027, 6, 30, 12, tzinfo=UTC), [2027, 2028]),  # any day of the year: that year and the next
    (datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))), [2027, 2028]),  # 04:30 on 1 January
])
def test_asking_ahead_keeps_this_year_and_the_next_so_no_complaint_waits_for_the_package(
        tmp_path: Path, now: datetime, years: list[int]) -> None:
    path = tmp_path / FILE_NAME
    source = Source()
    WorkingCalendar(holidays=StoredBankHolidays(path, source, "0.109")).ask_ahead(now)
    assert source.asked == years
    assert sorted(json.loads(path.read_text())["years"]) == [str(y) for y in years]

    # The next process reads them: neither asking ahead again nor counting a December deadline asks the package.
    again = Source()
    calendar = WorkingCalendar(holidays=StoredBankHolidays(path, again, "0.109"))
    calendar.ask_ahead(now)
    calendar.add_working_days(date(years[0], 12, 23), 5)
    assert again.asked == []
