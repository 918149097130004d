"""The working-day calendar the complaints procedures count in: England & Wales, office hours, closures.

Pure: the bank holidays come from the `holidays` package's tables, no network or files (or from whatever the
calendar is given instead that answers the same: ``bank_holidays`` is the source of truth either way).
Every datetime going in or out is timezone-aware; the calendar converts to its own zone
(Europe/London by default) so that counts stay right across the BST/GMT clock changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WORKING_DAYS = "working_days"
HOURS = "hours"
DAYS = "days"
# Calendar months, as the UK GDPR's "one month" for a request about personal data is counted (the ICO's guidance):
# to the same date in the month that many months on, or that month's last day where it has no such date; a date on
# a weekend or a bank holiday moves to the next working day (the organisation's own closures do not count).
MONTHS = "months"
DEADLINE_UNITS = (WORKING_DAYS, HOURS, DAYS, MONTHS)

# A closure range longer than this is almost certainly a typo in the config (a wrong year).
MAX_CLOSURE_RANGE_DAYS = 366

_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@lru_cache(maxsize=64)
def bank_holidays(year: int) -> frozenset[date]:
    """England & Wales bank holidays for one year, cached because every message asks about the same few years.

    The ENG subdivision matters: plain "GB" leaves out Easter Monday, which is a bank holiday in England.
    The package is imported here, at the first date arithmetic, not with the module: it takes ~70 ms, which a
    command that never counts a working day (`mailbot cases`, `status`) need not pay.
    """
    import holidays

    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year))


# A year's bank holidays: ``bank_holidays`` itself, or a store of what it said (``mailbot.holiday_store``).
BankHolidays = Callable[[int], frozenset[date]]


@lru_cache(maxsize=4096)
def _add_working_days(holidays: BankHolidays, closures: frozenset[date], d: date, n: int) -> date:
    """WorkingCalendar.add_working_days, remembered: a day's mail asks for the same few sums from the same date
    (each new case's three deadlines), and each sum walks the calendar a day at a time."""
    step = 1 if n >= 0 else -1
    for _ in range(abs(n)):
        d += timedelta(days=step)
        while d.weekday() >= 5 or d in holidays(d.year) or d in closures:
            d += timedelta(days=step)
    return d


@dataclass(frozen=True)
class WorkingCalendar:
    timezone: str = "Europe/London"
    closures: frozenset[date] = frozenset()
    opens: time = time(9, 0)
    closes: time = time(17, 30)
    holidays: BankHolidays = field(default=bank_holidays, compare=False)

    def __post_init__(self) -> None:
        # Fail when the calendar is built from config, not on the first message that needs it.
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        if not self.opens < self.closes:
            raise ValueError(f"the office must open before it closes (opens {self.opens}, closes {self.closes})")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, moment: datetime) -> datetime:
        """The same instant in the calendar's zone; naive datetimes are refused because their zone is a guess."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"datetime {moment.isoformat()} has no timezone; the calendar only takes aware datetimes")
        return moment.astimezone(self.zone)

    def is_working_day(self, d: date) -> bool:
        return d.weekday() < 5 and d not in self.holidays(d.year) and d not in self.closures

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after d."""
        d += timedelta(days=1)
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def previous_working_day(self, d: date) -> date:
        """The last working day strictly before d."""
        d -= timedelta(days=1)
        while not self.is_working_day(d):
            d -= timedelta(days=1)
        return d

    def ask_ahead(self, now: datetime) -> None:
        """Learn this year's and next year's bank holidays now, not at the first working day counted.

        Asked of the ``holidays`` package, a year costs ~0.13 s of CPU (its import), once per installation and
        package version when the calendar keeps the answers (``mailbot.holiday_store``). A deadline counted in
        December reaches into January, so the next year is asked too. Otherwise the first complaint after an
        installation waited for it before its acknowledgement."""
        year = self.local(now).year
        self.holidays(year)
        self.holidays(year + 1)

    def add_working_days(self, d: date, n: int) -> date:
        """The working day n working days after d (before it when n is negative); n == 0 gives d itself."""
        return _add_working_days(self.holidays, self.closures, d, n)

    def reminder_at(self, due: datetime) -> datetime:
        """When staff are reminded of a deadline: the same time of day, one working day before it."""
        local = self.local(due)
        return datetime.combine(self.previous_working_day(local.date()), local.time(), tzinfo=self.zone)

    def reminders_due_until(self, now: datetime) -> datetime:
        """The latest deadline whose reminder can be due at ``now``: any deadline after it is reminded later.

        On a working day that is the same time on the next working day (a deadline on any day up to then has
        its reminder today or earlier; one later on that day, this evening). On a day off, the whole of the
        next working day: its deadlines are reminded on the last working day, already past. Deadlines in
        between that are not yet due for a reminder (Saturday evening's, seen on Friday morning) are still
        inside; the caller checks each with ``reminder_at``. That reasoning is in local times: where the clocks
        change between the last working day and the bound, the bound is later by the change, so it holds as
        instants too, in any zone.
        """
        local = self.local(now)
        today = local.date()
        following = self.next_working_day(today)
        until = datetime.combine(following, local.time() if self.is_working_day(today) else time.max, tzinfo=self.zone)
        since = datetime.combine(self.previous_working_day(today), time(0), tzinfo=self.zone)
        offsets = [moment.utcoffset() or timedelta(0) for moment in (since, local, until)]
        return until + (max(offsets) - min(offsets))

    def counting_start(self, received: datetime) -> date:
        """The day the procedure's clock starts on: the UK date the message arrived, whatever the hour.

        "A response by the end of the following working day" read as a complainant reads it: a complaint
        sent on Friday evening or on Saturday is answered by the end of Monday, one sent on Monday at 18:00
        by the end of Tuesday. "N working days" counts the same way, from the day of arrival.
        """
        return self.local(received).date()

    def close_of_business(self, d: date) -> datetime:
        return datetime.combine(d, self.closes, tzinfo=self.zone)

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """How many working days `end` came after `start`, counted the way deadlines are.

        It is the smallest n for which end <= deadline(start, n, "working_days"), so a reply is on time
        for an n-working-day promise exactly when this is <= n. A reply at 17:30 on the day still
        counts as that day; the same reply at 17:31 counts as the next working day.
        """
        first = self.counting_start(start)
        finished = self.local(end)
        last = finished.date()
        if not (self.is_working_day(last) and finished.time() <= self.closes):
            last = self.next_working_day(last)
        count, d = 0, first
        while d < last:
            d = self.next_working_day(d)
            count += 1
        return count

    def deadline(self, received: datetime, amount: int, unit: str) -> datetime:
        """When a promise of `amount` `unit`s made about a message received at `received` falls due, in local time."""
        if unit == WORKING_DAYS:
            return self.close_of_business(self.add_working_days(self.counting_start(received), amount))
        if unit == HOURS:
            # Add in UTC: adding to a zoneinfo datetime is wall-clock arithmetic, an hour out across a clock change.
            due = (self.local(received).astimezone(UTC) + timedelta(hours=amount)).astimezone(self.zone)
            # Down to the half hour, as a person writes a time ("by 10am", not "by 10:02am"): never later.
            return due.replace(minute=due.minute - due.minute % 30, second=0, microsecond=0)
        if unit == DAYS:
            due = self.local(received).date() + timedelta(days=amount)
            return datetime.combine(due, time(23, 59, 59), tzinfo=self.zone)
        if unit == MONTHS:
            due = add_months(self.local(received).date(), amount)
            while due.weekday() >= 5 or due in self.holidays(due.year):
                due += timedelta(days=1)
            return datetime.combine(due, time(23, 59, 59), tzinfo=self.zone)
        raise ValueError(f"unknown deadline unit {unit!r} (expected one of {', '.join(DEADLINE_UNITS)})")

    def format_date(self, value: date | datetime) -> str:
        """GOV.UK style: "Monday 21 December 2026", a datetime taken in local time."""
        d = self.local(value).date() if isinstance(value, datetime) else value
        return f"{_DAY_NAMES[d.weekday()]} {d.day} {_MONTH_NAMES[d.month - 1]} {d.year}"

    def format_datetime(self, moment: datetime) -> str:
        """GOV.UK style: "5:30pm on Monday 21 December 2026" in local time."""
        local = self.local(moment)
        return f"{format_time(local.time())} on {self.format_date(local)}"


def add_months(d: date, months: int) -> date:
    """The same day ``months`` calendar months on; the month's last day where it is shorter (31 Jan + 1 -> 28 Feb)."""
    year, month = divmod(d.month - 1 + months, 12)
    year, month = d.year + year, month + 1
    next_first = date(year + (month == 12), month % 12 + 1, 1)
    return date(year, month, min(d.day, (next_first - timedelta(days=1)).day))


def format_time(t: time) -> str:
    """GOV.UK style times: "5:30pm", "9am", "midday", "midnight" (seconds are dropped)."""
    if (t.hour, t.minute) == (12, 0):
        return "midday"
    if (t.hour, t.minute) == (0, 0):
        return "midnight"
    hour = t.hour % 12 or 12
    suffix = "am" if t.hour < 12 else "pm"
    return f"{hour}{suffix}" if t.minute == 0 else f"{hour}:{t.minute:02d}{suffix}"


def parse_closures(spec: str) -> frozenset[date]:
    """Extra closure days from config: "2026-12-24..2027-01-01,2027-04-01" (ranges inclusive).

    Blank items are ignored so a trailing comma is harmless; anything else that is not a date or
    a range raises ValueError naming the offending item.
    """
    days: set[date] = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        first_text, is_range, last_text = item.partition("..")
        first = _closure_date(first_text.strip(), item)
        last = _closure_date(last_text.strip(), item) if is_range else first
        if last < first:
            raise ValueError(f"closure range {item!r} ends before it starts")
        span = (last - first).days + 1
        if span > MAX_CLOSURE_RANGE_DAYS:
            raise ValueError(f"closure range {item!r} is {span} days long; is a year wrong?")
        days.update(first + timedelta(days=i) for i in range(span))
    return frozenset(days)


def _closure_date(text: str, item: str) -> date:
    # fromisoformat alone would also take "20261224" and week dates; the config promises YYYY-MM-DD only.
    if not _ISO_DATE.fullmatch(text):
        raise ValueError(f"closure {item!r}: {text!r} is not a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"closure {item!r}: {text!r} is not a real date") from None
