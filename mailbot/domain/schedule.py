"""What the scheduled work does, as pure functions of the clock: the one place each rule is written, read both by
the work itself (``services.scheduled_work``) and by the look that decides whether there is any (``services.jobs``).
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal

from mailbot.domain.workdays import WorkingCalendar

ChaseStep = Literal["overdue", "announced", "remind"]


def chase_step(now: datetime, due: datetime, reminded_at: datetime | None, stage_started_at: datetime | None,
               calendar: WorkingCalendar) -> ChaseStep | None:
    """What the deadline chase does at ``now`` with a running deadline not yet alerted as overdue.

    "overdue": it is past, and its owner and their manager are told; "announced": it was set less than a working
    day ahead, so the notification that set it was its reminder, and that is recorded (the passes until it falls due
    no longer read it); "remind": its reminder (a working day before) is due; None: nothing yet.
    """
    if now >= due:
        return "overdue"
    if reminded_at is not None:
        return None
    remind_at = calendar.reminder_at(due)
    if stage_started_at is not None and remind_at <= stage_started_at:
        return "announced"
    return "remind" if now >= remind_at else None


def retention_cutoff(now: datetime, years: int) -> datetime:
    """Cases closed before this instant are past MAILBOT_RETENTION_YEARS (29 February counts from the 28th)."""
    if now.month == 2 and now.day == 29:
        return now.replace(year=now.year - years, day=28)
    return now.replace(year=now.year - years)


def digest_due(calendar: WorkingCalendar, digest_time: time | None, now: datetime) -> bool:
    """Whether the daily digest is due at ``now``: a working day, at or after the digest time (None: no digest),
    in the organisation's time zone."""
    if digest_time is None:
        return False
    local = calendar.local(now)
    return calendar.is_working_day(local.date()) and local.time() >= digest_time
