"""The scheduled work's rules as pure functions (domain.schedule), table-driven: what the deadline chase does with a
deadline at an instant, the retention cut-off, and whether the digest is due. Both the work and the look before it
(store.due_reads) decide by these."""

from __future__ import annotations

from datetime import datetime, time, timezone

import pytest

from mailbot.domain.schedule import chase_step, digest_due, retention_cutoff
from mailbot.domain.workdays import WorkingCalendar

CAL = WorkingCalendar("Europe/London")  # November is GMT: these UTC times are London's


def at(day: int, hour: int, minute: int = 0, month: int = 11, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)


# A deadline due on Wednesday 18 November at 17:30: its reminder is a working day before, Tuesday 17 at 17:30.
DUE = at(18, 17, 30)


@pytest.mark.parametrize(("now", "reminded", "started", "step"), [
    (at(17, 17, 29), None, at(16, 10), None),                  # before the reminder
    (at(17, 17, 30), None, at(16, 10), "remind"),              # the reminder's moment
    (at(17, 23, 0), None, at(16, 10), "remind"),               # a pass that ran late still reminds
    (at(17, 17, 30), at(17, 17, 30), at(16, 10), None),        # reminded already: nothing until it is due
    (at(18, 17, 29), at(17, 17, 30), at(16, 10), None),
    (at(18, 17, 30), at(17, 17, 30), at(16, 10), "overdue"),   # due: alerted, reminded or not
    (at(18, 17, 30), None, at(16, 10), "overdue"),
    (at(20, 9, 0), None, None, "overdue"),
    (at(17, 18, 0), None, at(17, 18, 0), "announced"),         # set after its reminder's time: the notification was it
    (at(17, 17, 30), None, at(17, 17, 30), "announced"),       # set at the reminder's very moment: so was it
    (at(17, 17, 0), None, None, None),                          # no stage start known: wait for the reminder
    (at(17, 17, 30), None, None, "remind"),
    (at(16, 9, 0), None, at(16, 9, 0), None),                  # set long before: reminded in its turn
])
def test_what_the_chase_does_with_a_deadline(now: datetime, reminded: datetime | None, started: datetime | None,
                                             step: str | None) -> None:
    assert chase_step(now, DUE, reminded, started, CAL) == step


def test_a_reminder_falls_on_the_working_day_before_across_a_weekend_and_a_bank_holiday() -> None:
    monday = at(30, 17, 30)  # due Monday 30 November: reminded on Friday 27
    assert chase_step(at(27, 17, 29), monday, None, at(20, 10), CAL) is None
    assert chase_step(at(27, 17, 30), monday, None, at(20, 10), CAL) == "remind"
    after_christmas = at(29, 12, 0, month=12)  # Tuesday 29 December: the 25th and 28th are bank holidays
    assert chase_step(at(24, 11, 59, month=12), after_christmas, None, at(1, 10, month=12), CAL) is None
    assert chase_step(at(24, 12, 0, month=12), after_christmas, None, at(1, 10, month=12), CAL) == "remind"


@pytest.mark.parametrize(("now", "years", "cutoff"), [
    (at(6, 10, month=12), 6, at(6, 10, month=12, year=2020)),
    (at(29, 10, month=2, year=2028), 6, at(28, 10, month=2, year=2022)),  # 29 February counts from the 28th
    (at(29, 10, month=2, year=2028), 4, at(28, 10, month=2, year=2024)),  # even into another leap year
    (at(1, 0, month=3, year=2028), 6, at(1, 0, month=3, year=2022)),
])
def test_the_retention_cutoff(now: datetime, years: int, cutoff: datetime) -> None:
    assert retention_cutoff(now, years) == cutoff


@pytest.mark.parametrize(("now", "digest_time", "due"), [
    (at(16, 7, 59), time(8, 0), False),    # Monday, before the digest time
    (at(16, 8, 0), time(8, 0), True),
    (at(16, 23, 0), time(8, 0), True),     # a bot down at 08:00 catches up later that day
    (at(21, 9, 0), time(8, 0), False),     # Saturday
    (at(25, 9, 0, month=12), time(8, 0), False),  # Christmas Day
    (at(16, 9, 0), None, False),           # MAILBOT_DIGEST_TIME=off
    (at(1, 7, 30, month=7), time(8, 0), True),   # 07:30 UTC is 08:30 in London in July (a Wednesday)
    (at(1, 6, 59, month=7), time(8, 0), False),
])
def test_whether_the_digest_is_due(now: datetime, digest_time: time | None, due: bool) -> None:
    assert digest_due(CAL, digest_time, now) is due
