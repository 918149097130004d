"""The working-day calendar: the dates a complainant is promised must be the dates a person would work out."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailbot.domain.workdays import WorkingCalendar, format_time, parse_closures

LONDON = ZoneInfo("Europe/London")
CALENDAR = WorkingCalendar()
CHRISTMAS_SHUTDOWN = WorkingCalendar(closures=parse_closures("2026-12-24..2027-01-01"))


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=LONDON)


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 12, 14), True),  # an ordinary Monday
        (date(2026, 12, 19), False),  # Saturday
        (date(2026, 12, 20), False),  # Sunday
        (date(2026, 1, 1), False),  # New Year's Day
        (date(2026, 4, 3), False),  # Good Friday
        (date(2026, 4, 6), False),  # Easter Monday: England only, plain "GB" misses it
        (date(2026, 5, 4), False),  # Early May bank holiday
        (date(2026, 5, 25), False),  # Spring bank holiday
        (date(2026, 8, 31), False),  # Summer bank holiday
        (date(2026, 12, 25), False),  # Christmas Day, a Friday
        (date(2026, 12, 28), False),  # Monday substitute for Boxing Day on a Saturday
        (date(2026, 12, 29), True),
        (date(2027, 1, 1), False),
        (date(2027, 3, 26), False),  # Good Friday 2027
        (date(2027, 3, 29), False),  # Easter Monday 2027
        (date(2027, 12, 27), False),  # substitute for Christmas Day on a Saturday
        (date(2027, 12, 28), False),  # substitute for Boxing Day on a Sunday
        (date(2027, 12, 29), True),
        (date(2026, 11, 30), True),  # St Andrew's Day is a Scottish holiday, not an English one
        (date(2026, 7, 13), True),  # the Northern Ireland Twelfth substitute is not an English holiday
    ],
)
def test_working_days_follow_english_bank_holidays(day: date, working: bool) -> None:
    assert CALENDAR.is_working_day(day) is working


@pytest.mark.parametrize(
    ("day", "working"),
    [(date(2026, 12, 23), True), (date(2026, 12, 24), False), (date(2026, 12, 31), False), (date(2027, 1, 4), True)],
)
def test_closure_days_are_not_working_days(day: date, working: bool) -> None:
    assert CHRISTMAS_SHUTDOWN.is_working_day(day) is working


@pytest.mark.parametrize(
    ("calendar", "day", "expected"),
    [
        (CALENDAR, date(2026, 12, 14), date(2026, 12, 15)),  # Monday -> Tuesday
        (CALENDAR, date(2026, 12, 18), date(2026, 12, 21)),  # Friday -> Monday
        (CALENDAR, date(2026, 12, 19), date(2026, 12, 21)),  # Saturday -> Monday
        (CALENDAR, date(2026, 4, 2), date(2026, 4, 7)),  # over Easter
        (CALENDAR, date(2026, 12, 24), date(2026, 12, 29)),  # over Christmas and the substitute day
        (CALENDAR, date(2026, 12, 31), date(2027, 1, 4)),  # over New Year's Day and a weekend
        (CHRISTMAS_SHUTDOWN, date(2026, 12, 23), date(2027, 1, 4)),
    ],
)
def test_next_working_day_is_strictly_after(calendar: WorkingCalendar, day: date, expected: date) -> None:
    assert calendar.next_working_day(day) == expected


@pytest.mark.parametrize(
    ("day", "n", "expected"),
    [
        (date(2026, 12, 14), 0, date(2026, 12, 14)),
        (date(2026, 12, 14), 1, date(2026, 12, 15)),
        (date(2026, 12, 14), 5, date(2026, 12, 21)),
        (date(2026, 12, 18), 14, date(2027, 1, 12)),  # skips Dec 25, Dec 28 and Jan 1
        (date(2026, 4, 1), 2, date(2026, 4, 7)),
        (date(2027, 3, 25), 1, date(2027, 3, 30)),
        (date(2026, 12, 29), -1, date(2026, 12, 24)),  # backwards, for reminders before a deadline
    ],
)
def test_add_working_days(day: date, n: int, expected: date) -> None:
    assert CALENDAR.add_working_days(day, n) == expected


@pytest.mark.parametrize(
    ("calendar", "received", "expected"),
    [
        (CALENDAR, at(2026, 12, 14, 10), date(2026, 12, 14)),  # Monday morning counts from Monday
        (CALENDAR, at(2026, 12, 14, 7), date(2026, 12, 14)),  # before opening still counts from that day
        (CALENDAR, at(2026, 12, 14, 17, 30), date(2026, 12, 14)),  # after close: still the day it arrived
        (CALENDAR, at(2026, 12, 14, 20), date(2026, 12, 14)),
        (CALENDAR, at(2026, 12, 18, 18), date(2026, 12, 18)),  # Friday evening counts from Friday
        (CALENDAR, at(2026, 12, 19, 11), date(2026, 12, 19)),  # Saturday from Saturday (next working day: Monday)
        (CALENDAR, at(2026, 4, 3, 10), date(2026, 4, 3)),  # Good Friday itself
        (CHRISTMAS_SHUTDOWN, at(2026, 12, 24, 10), date(2026, 12, 24)),
        # 16:45 UTC in June is 17:45 BST on the same day.
        (CALENDAR, datetime(2026, 6, 15, 16, 45, tzinfo=UTC), date(2026, 6, 15)),
        # 23:30 UTC on Sunday 31 May is 00:30 BST on Monday 1 June: the UK date is what counts.
        (CALENDAR, datetime(2026, 5, 31, 23, 30, tzinfo=UTC), date(2026, 6, 1)),
    ],
)
def test_counting_start(calendar: WorkingCalendar, received: datetime, expected: date) -> None:
    assert calendar.counting_start(received) == expected


@pytest.mark.parametrize(
    ("received", "amount", "expected"),
    [
        (at(2026, 12, 14, 10), 1, at(2026, 12, 15, 17, 30)),  # end of the next working day
        (at(2026, 12, 14, 20), 1, at(2026, 12, 15, 17, 30)),  # after hours: still the following working day
        (at(2026, 12, 19, 11), 1, at(2026, 12, 21, 17, 30)),  # Saturday: the end of Monday
        (at(2026, 4, 2, 18), 1, at(2026, 4, 7, 17, 30)),  # Thursday evening before Easter: the Tuesday after
        (at(2026, 12, 24, 18), 1, at(2026, 12, 29, 17, 30)),  # Christmas Eve: Tuesday 29th (Boxing Day moved)
        (at(2026, 12, 14, 10), 0, at(2026, 12, 14, 17, 30)),
        (at(2026, 12, 18, 16), 1, at(2026, 12, 21, 17, 30)),
        (at(2026, 12, 18, 18), 1, at(2026, 12, 21, 17, 30)),  # Friday 18:00: the end of Monday
        (at(2026, 12, 18, 16), 14, at(2027, 1, 12, 17, 30)),
        (at(2026, 4, 2, 10), 2, at(2026, 4, 8, 17, 30)),  # Thursday, then Tuesday and Wednesday after Easter
        # Across the spring clock change: close of business is 17:30 BST, 16:30 UTC.
        (at(2026, 3, 27, 10), 1, datetime(2026, 3, 30, 16, 30, tzinfo=UTC)),
        (at(2026, 10, 23, 10), 1, datetime(2026, 10, 26, 17, 30, tzinfo=UTC)),
    ],
)
def test_working_day_deadlines_are_close_of_business(received: datetime, amount: int, expected: datetime) -> None:
    assert CALENDAR.deadline(received, amount, "working_days") == expected


@pytest.mark.parametrize(
    ("received", "hours", "expected_local"),
    [
        (at(2026, 12, 18, 16), 24, at(2026, 12, 19, 16)),
        # Spring forward: 24 elapsed hours from Saturday noon GMT is 13:00 BST on Sunday.
        (at(2026, 3, 28, 12), 24, at(2026, 3, 29, 13)),
        # Fall back: 24 elapsed hours from Saturday noon BST is 11:00 GMT on Sunday.
        (at(2026, 10, 24, 12), 24, at(2026, 10, 25, 11)),
        (at(2026, 10, 25, 0, 30), 2, datetime(2026, 10, 25, 1, 30, fold=1, tzinfo=LONDON)),
    ],
)
def test_hours_deadlines_are_exact_elapsed_time(received: datetime, hours: int, expected_local: datetime) -> None:
    due = CALENDAR.deadline(received, hours, "hours")
    assert due.astimezone(UTC) - received.astimezone(UTC) == timedelta(hours=hours)  # on the half hour: exact
    # Compare wall clock and offset: an aware == would call 01:30 BST and 01:30 GMT the same if fold were lost.
    assert due.replace(tzinfo=None) == expected_local.replace(tzinfo=None)
    assert due.utcoffset() == expected_local.utcoffset()


@pytest.mark.parametrize(
    ("received", "expected_local"),
    [
        (at(2026, 12, 14, 10, 2), at(2026, 12, 15, 10)),  # "by 10am", not "by 10:02am"
        (at(2026, 12, 14, 10, 29, 59), at(2026, 12, 15, 10)),
        (at(2026, 12, 14, 10, 30), at(2026, 12, 15, 10, 30)),
        (at(2026, 12, 14, 10, 59), at(2026, 12, 15, 10, 30)),
    ],
)
def test_hours_deadlines_round_down_to_the_half_hour(received: datetime, expected_local: datetime) -> None:
    due = CALENDAR.deadline(received, 24, "hours")
    assert due == expected_local and due <= received + timedelta(hours=24)
    assert CALENDAR.format_datetime(due) in ("10am on Tuesday 15 December 2026", "10:30am on Tuesday 15 December 2026")


@pytest.mark.parametrize(
    ("received", "days", "expected"),
    [
        (at(2026, 12, 18, 16), 14, at(2027, 1, 1, 23, 59, 59)),  # calendar days ignore holidays
        (at(2026, 3, 20, 10), 14, at(2026, 4, 3, 23, 59, 59)),
        # 23:30 UTC on 31 May is already 1 June in London, so the 14 days count from 1 June.
        (datetime(2026, 5, 31, 23, 30, tzinfo=UTC), 14, at(2026, 6, 15, 23, 59, 59)),
    ],
)
def test_calendar_day_deadlines_end_at_local_midnight(received: datetime, days: int, expected: datetime) -> None:
    assert CALENDAR.deadline(received, days, "days") == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (at(2026, 12, 14, 10), at(2026, 12, 14, 15), 0),
        (at(2026, 12, 14, 10), at(2026, 12, 15, 17, 30), 1),  # exactly at close is still that day
        (at(2026, 12, 14, 10), at(2026, 12, 15, 17, 31), 2),
        (at(2026, 12, 14, 20), at(2026, 12, 15, 9), 1),  # after-hours mail answered next morning: 1 day
        (at(2026, 12, 18, 18), at(2026, 12, 21, 12), 1),  # Friday evening answered on Monday: 1 day
        (at(2026, 12, 18, 16), at(2027, 1, 12, 12), 14),
        (at(2026, 12, 18, 16), at(2026, 12, 19, 12), 1),  # a Saturday reply counts as the next working day
        (at(2026, 12, 14, 10), at(2026, 12, 10, 10), 0),  # an end before the start is never negative
    ],
)
def test_working_days_between(start: datetime, end: datetime, expected: int) -> None:
    assert CALENDAR.working_days_between(start, end) == expected


@pytest.mark.parametrize("received", [at(2026, 12, 14, 10), at(2026, 12, 18, 18), at(2026, 3, 27, 17, 45)])
@pytest.mark.parametrize("amount", [0, 1, 2, 7, 14])
def test_a_reply_at_the_deadline_is_on_time_and_a_second_later_is_not(received: datetime, amount: int) -> None:
    due = CALENDAR.deadline(received, amount, "working_days")
    assert CALENDAR.working_days_between(received, due) <= amount
    assert CALENDAR.working_days_between(received, due + timedelta(seconds=1)) == amount + 1


@pytest.mark.parametrize(
    ("moment", "expected_date", "expected_datetime"),
    [
        (at(2026, 12, 21, 17, 30), "Monday 21 December 2026", "5:30pm on Monday 21 December 2026"),
        (at(2027, 1, 4, 9), "Monday 4 January 2027", "9am on Monday 4 January 2027"),
        (at(2026, 6, 1, 12), "Monday 1 June 2026", "midday on Monday 1 June 2026"),
        (at(2026, 6, 1, 23, 59, 59), "Monday 1 June 2026", "11:59pm on Monday 1 June 2026"),
        # 16:30 UTC in summer is 5:30pm BST, and 23:30 UTC on 31 May is already 1 June in London.
        (datetime(2026, 6, 2, 16, 30, tzinfo=UTC), "Tuesday 2 June 2026", "5:30pm on Tuesday 2 June 2026"),
        (datetime(2026, 5, 31, 23, 30, tzinfo=UTC), "Monday 1 June 2026", "12:30am on Monday 1 June 2026"),
    ],
)
def test_gov_uk_style_dates(moment: datetime, expected_date: str, expected_datetime: str) -> None:
    assert CALENDAR.format_date(moment) == expected_date
    assert CALENDAR.format_datetime(moment) == expected_datetime


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (time(0, 0), "midnight"),
        (time(9, 5), "9:05am"),
        (time(12, 0), "midday"),
        (time(12, 30), "12:30pm"),
        (time(13), "1pm"),
    ],
)
def test_format_time(t: time, expected: str) -> None:
    assert format_time(t) == expected


def test_format_date_takes_a_plain_date() -> None:
    assert CALENDAR.format_date(date(2027, 3, 29)) == "Monday 29 March 2027"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", set()),
        ("2027-04-01", {date(2027, 4, 1)}),
        ("2026-12-30..2027-01-02", {date(2026, 12, 30), date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 2)}),
        (" 2026-12-24..2026-12-24 , 2027-04-01, ", {date(2026, 12, 24), date(2027, 4, 1)}),
    ],
)
def test_parse_closures(spec: str, expected: set[date]) -> None:
    assert parse_closures(spec) == frozenset(expected)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("24/12/2026", "'24/12/2026' is not a date in the form YYYY-MM-DD"),
        ("20261224", "is not a date in the form YYYY-MM-DD"),
        ("2026-02-30", "'2026-02-30' is not a real date"),
        ("2027-01-01..2026-12-24", "ends before it starts"),
        ("2026-12-24..", "'' is not a date"),
        ("2026-12-24..2036-12-24", "is a year wrong?"),
    ],
)
def test_parse_closures_rejects_bad_config(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_closures(spec)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: CALENDAR.deadline(at(2026, 12, 14, 10), 2, "weeks"), "unknown deadline unit 'weeks'"),
        (lambda: CALENDAR.counting_start(datetime(2026, 12, 14, 10)), "has no timezone"),
        (lambda: WorkingCalendar(timezone="Europe/Londres"), "unknown timezone 'Europe/Londres'"),
        (lambda: WorkingCalendar(opens=time(18), closes=time(9)), "must open before it closes"),
    ],
)
def test_misuse_is_refused_clearly(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("calendar", "due", "expected"),
    [
        (CALENDAR, at(2026, 12, 8, 17, 30), at(2026, 12, 7, 17, 30)),  # Tuesday's deadline: Monday, same time
        (CALENDAR, at(2026, 12, 7, 17, 30), at(2026, 12, 4, 17, 30)),  # Monday's: the Friday before
        (CALENDAR, at(2026, 12, 29, 9), at(2026, 12, 24, 9)),  # over Christmas and the Boxing Day substitute
        (CHRISTMAS_SHUTDOWN, at(2027, 1, 4, 12), at(2026, 12, 23, 12)),  # over the office's own closure too
        (CALENDAR, at(2026, 3, 30, 10), at(2026, 3, 27, 10)),  # 10am across the clock change is still 10am
    ],
)
def test_reminder_is_the_same_time_a_working_day_before(calendar: WorkingCalendar, due: datetime,
                                                        expected: datetime) -> None:
    assert calendar.reminder_at(due) == expected


@pytest.mark.parametrize(
    ("calendar", "now", "expected"),
    [
        (CALENDAR, at(2026, 12, 4, 16, 38), at(2026, 12, 7, 16, 38)),  # Friday: up to Monday at the same time
        (CALENDAR, at(2026, 12, 8, 9), at(2026, 12, 9, 9)),  # Tuesday: Wednesday
        (CALENDAR, at(2026, 12, 5, 10), datetime.combine(date(2026, 12, 7), time.max, tzinfo=LONDON)),  # Saturday
        (CALENDAR, at(2026, 12, 24, 11), at(2026, 12, 29, 11)),  # Christmas Eve: past Christmas and the substitute
        (CHRISTMAS_SHUTDOWN, at(2026, 12, 27, 11), datetime.combine(date(2027, 1, 4), time.max, tzinfo=LONDON)),
        (CALENDAR, at(2026, 3, 27, 15), at(2026, 3, 30, 16)),  # the clocks go forward on Sunday: an hour's margin
    ],
)
def test_reminders_due_until(calendar: WorkingCalendar, now: datetime, expected: datetime) -> None:
    assert calendar.reminders_due_until(now) == expected


@pytest.mark.parametrize("calendar", [CALENDAR, CHRISTMAS_SHUTDOWN, WorkingCalendar(timezone="Asia/Jerusalem")])
def test_no_reminder_due_now_is_for_a_deadline_after_the_bound(calendar: WorkingCalendar) -> None:
    """The deadline chase reads only deadlines up to reminders_due_until(now): a reminder it would miss is one
    due now for a deadline after that. Every 17 hours through a year with both clock changes, Easter and
    Christmas, against deadlines every 40 minutes over the next nine days (Jerusalem's clocks change on a
    Friday, a working day there)."""
    zone = calendar.zone
    now = datetime(2026, 1, 2, 7, 5, tzinfo=UTC)
    checked = 0
    while now.year < 2027:
        bound = calendar.reminders_due_until(now)
        assert bound > now
        due = now + timedelta(minutes=1)
        while due < now + timedelta(days=9):
            if calendar.reminder_at(due.astimezone(zone)) <= now:
                assert due <= bound, (now, due, bound)
                checked += 1
            due += timedelta(minutes=40)
        now += timedelta(hours=17)
    assert checked > 1000  # the loop met many reminders due, not none
