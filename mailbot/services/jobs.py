"""Scheduled work as plain functions of the clock: deadline reminders, overdue alerts, restriction reviews and expiry,
retention, the daily digest, and the audit chain's head to the log.

Most passes have nothing to do. So each first asks the database, with SQLAlchemy Core on a reading connection
(``store.due_reads``), whether any job has something due, and whether a digest is still to go today; only then is
the work built (``services.scheduled_work``, ``services.digest``: the ORM, the letters, the case machinery) and run.
The look and the work choose their rows with the same filters and the same per-deadline rule
(``domain.schedule``), and the work reads again in its own transaction, so the look can only make a pass
cheaper, never skip something. ``mailbot run --once --now ...`` calls ``run_due`` directly.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Callable

from sqlalchemy.engine import Engine

from mailbot.domain.directory import DirectorySource
from mailbot.domain.procedures import OPEN_STATUSES
from mailbot.domain.recipients import digest_recipients
from mailbot.domain.schedule import digest_due
from mailbot.domain.workdays import WorkingCalendar
from mailbot.store import due_reads
from mailbot.store.audit_head import head_line
from mailbot.store.db import reading

if TYPE_CHECKING:
    from mailbot.services.digest import Digest
    from mailbot.services.scheduled_work import ScheduledWork

log = logging.getLogger(__name__)


class Jobs:
    """``work`` and ``digest`` build the scheduled work and the digest, the first time either has something due."""

    def __init__(self, engine: Engine, work: Callable[[], ScheduledWork], calendar: WorkingCalendar,
                 directory: DirectorySource, digest: Callable[[], Digest] | None = None,
                 digest_time: time | None = None, retention_years: int = 6) -> None:
        # No clock of its own: every job is given the instant it runs at (``now``), from the one clock.
        self.engine = engine
        self.work = work
        self.calendar = calendar
        self.directory = directory
        self.digest = digest
        self.digest_time = digest_time
        self.retention_years = retention_years
        self._head_logged_on: date | None = None

    def run_due(self, now: datetime) -> int:
        """Run everything due at ``now``; returns how many letters were queued."""
        staff = frozenset(member.email for member in self.directory.get().staff)
        with reading(self.engine) as conn:
            due = due_reads.work_due(conn, now, self.calendar, OPEN_STATUSES, staff, self.retention_years)
        queued = self.work().run(now) if due is not None else 0
        self.log_audit_head(now)
        if self.digest is not None and self.digests_to_send(now):
            # The digest commits per recipient, after the deadline work, so it reports what just happened.
            queued += self.digest().run_due(now)
        return queued

    def digests_to_send(self, now: datetime) -> bool:
        """Whether the digest is due now and someone's is not yet recorded for today (it goes once a day)."""
        if not digest_due(self.calendar, self.digest_time, now):
            return False
        recipients = {r.email for r in digest_recipients(self.directory.get())}
        with reading(self.engine) as conn:
            return bool(recipients - due_reads.digests_recorded(conn, self.calendar.local(now).date().isoformat()))

    def log_audit_head(self, now: datetime) -> bool:
        """Once a day (and at start), the audit chain's head to the log: a copy outside the database, so a rewrite
        of the whole chain is caught (`mailbot audit verify --expect`)."""
        today = self.calendar.local(now).date()
        if self._head_logged_on == today:
            return False
        with reading(self.engine) as conn:
            log.info("%s (keep it: `mailbot audit verify --expect PLACE:HASH` checks the chain still passes "
                     "through it)", head_line(conn, now))
        self._head_logged_on = today
        return True
