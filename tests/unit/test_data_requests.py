"""Recognising a request about one's own personal data in a new message (domain.data_requests), and its clock."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from mailbot.domain import data_requests
from mailbot.domain.workdays import WorkingCalendar, add_months


@pytest.mark.parametrize("subject, text, kind", [
    ("Subject access request", "Under the UK GDPR I am making a subject access request.", "access"),
    ("SAR", "Please treat this as a SAR.", "access"),
    ("My data", "Could you send me a copy of my personal data please?", "access"),
    ("Question", "I would like all the information you hold about me.", "access"),
    ("Question", "What personal data do you hold on me? I want to know.", "access"),
    ("Question", "I'd like copies of my records from when I was a mentee.", "access"),
    ("Right to be forgotten", "I want you to forget me.", "erasure"),
    ("Please delete", "Please delete my details from your systems.", "erasure"),
    ("Leaving", "I want all my data erased now that I have left the programme.", "erasure"),
    ("Data", "Erase the personal data you hold about me, under Article 17.", "erasure"),
    # Both: erasure is the request that matters (a copy first can be given in the same answer).
    ("Data", "Send me a copy of my data and then delete my data.", "erasure"),
    # Complaints about data protection are complaints, not requests.
    ("Data breach", "You shared my details with my school without asking.", None),
    ("Complaint", "My mentor posted my information on social media.", None),
    ("Records", "Please don't delete my records until the complaint is finished.", None),
    ("Missed session", "Nobody called me back about the session on Tuesday.", None),
    ("Subject", "The subject of access to the building was never explained.", None),
])
def test_a_request_is_recognised_by_its_words(subject: str, text: str, kind: str | None) -> None:
    assert data_requests.recognise(subject, text) == kind


@pytest.mark.parametrize("start, months, expected", [
    (date(2026, 9, 3), 1, date(2026, 10, 3)),
    (date(2026, 1, 31), 1, date(2026, 2, 28)),   # no 31 February: the month's last day
    (date(2028, 1, 31), 1, date(2028, 2, 29)),   # a leap year
    (date(2026, 11, 30), 3, date(2027, 2, 28)),  # the law's longest: one month and two more
    (date(2026, 12, 15), 1, date(2027, 1, 15)),
])
def test_calendar_months_are_counted_to_the_corresponding_date(start: date, months: int, expected: date) -> None:
    assert add_months(start, months) == expected


@pytest.mark.parametrize("received, due", [
    (datetime(2026, 9, 3, 15, 0, tzinfo=timezone.utc), "2026-10-05"),   # 3 Oct 2026 is a Saturday: Monday 5th
    (datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc), "2026-12-29"),  # Christmas, Saturday, Boxing Day's Monday
    (datetime(2026, 3, 31, 23, 30, tzinfo=timezone.utc), "2026-05-01"),  # 00:30 BST on 1 April: due 1 May
])
def test_the_one_month_clock_moves_off_weekends_and_bank_holidays(received: datetime, due: str) -> None:
    deadline = WorkingCalendar("Europe/London").deadline(received, 1, "months")
    assert (deadline.date().isoformat(), deadline.strftime("%H:%M")) == (due, "23:59")
