"""The annual report's pure rules (domain.report): nearest-rank percentiles, months, promises kept, and counts."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from mailbot.domain import report
from mailbot.domain.report import CaseFacts, DeadlineFact, EventFact
from mailbot.domain.workdays import WorkingCalendar

CAL = WorkingCalendar("Europe/London")
UTC = timezone.utc


@pytest.mark.parametrize("values, percent, expected", [
    ([], 50, None),
    ([7], 50, 7), ([7], 90, 7),
    ([3, 1, 2], 50, 2), ([3, 1, 2], 90, 3),
    ([1, 2, 3, 4], 50, 2), ([1, 2, 3, 4], 90, 4),
    (list(range(1, 11)), 90, 9), (list(range(1, 11)), 91, 10), (list(range(1, 21)), 50, 10),
])
def test_percentiles_are_by_nearest_rank(values: list[int], percent: float, expected: int | None) -> None:
    assert report.nearest_rank(values, percent) == expected


def test_every_month_of_the_period_is_listed_across_a_year_end() -> None:
    assert report.months(date(2025, 11, 20), date(2026, 2, 1)) == [(2025, 11), (2025, 12), (2026, 1), (2026, 2)]


def case(ref: str, opened: datetime, **kw: object) -> CaseFacts:
    base: dict = dict(channel="email", procedure="mentor", category="mentor_behaviour", status="resolved",
                      outcome="upheld", stage=1, closed_at=None)
    base.update(kw)
    return CaseFacts(ref=ref, opened_at=opened, **base)


def test_a_promise_answered_after_its_deadline_is_late_and_one_not_yet_due_is_pending() -> None:
    opened = datetime(2025, 2, 3, 10, tzinfo=UTC)  # a Monday
    due = datetime(2025, 2, 4, 17, 30, tzinfo=UTC)
    cases = [case("1MM-2025-0001", opened, deadlines=(DeadlineFact("first_response", 1, due, due),)),
             case("1MM-2025-0002", opened, deadlines=(DeadlineFact("first_response", 1, due,
                                                                   datetime(2025, 2, 4, 17, 31, tzinfo=UTC)),)),
             case("1MM-2025-0003", opened, deadlines=(DeadlineFact("first_response", 1, due, None),))]
    before = report.figures(cases, CAL, date(2025, 1, 1), date(2025, 12, 31), datetime(2025, 2, 4, 12, tzinfo=UTC))
    after = report.figures(cases, CAL, date(2025, 1, 1), date(2025, 12, 31), datetime(2025, 2, 5, 9, tzinfo=UTC))
    first_before, first_after = before["responses"][0], after["responses"][0]
    assert (first_before["on_time"], first_before["late"], first_before["pending"]) == (1, 1, 1)
    assert (first_after["on_time"], first_after["late"], first_after["pending"]) == (1, 2, 0)
    # 17:30 is still the day; 17:31 counts as the next working day.
    assert sorted([first_after["median_working_days"], first_after["p90_working_days"]]) == [1, 2]


def test_mentor_actions_and_restrictions_are_counted_over_the_periods_cases() -> None:
    opened = datetime(2025, 5, 1, 10, tzinfo=UTC)
    at = datetime(2025, 5, 2, 10, tzinfo=UTC)
    cases = [case("1MM-2025-0001", opened, mentor_actions=("informal-warning", "formal-warning"),
                  events=(EventFact("restriction_warned", at, {}), EventFact("restriction_imposed", at, {}))),
             case("1MM-2025-0002", opened, channel="post", mentor_actions=("informal-warning",))]
    data = report.figures(cases, CAL, date(2025, 1, 1), date(2025, 12, 31), at)
    assert data["mentor_actions"] == [{"key": "formal-warning", "count": 1}, {"key": "informal-warning", "count": 2}]
    assert {r["key"]: r["count"] for r in data["restrictions"]}["Restrictions imposed"] == 1
    assert data["restricted_cases"] == 1 and data["on_behalf"] == 1
    row = report.csv_row(cases[0], CAL, at)
    assert row["mentor_actions"] == "informal-warning;formal-warning" and row["restricted"] == "yes"
    assert set(row) == set(report.CSV_FIELDS)
