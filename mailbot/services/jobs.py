"""Scheduled work as plain functions of the clock: deadline reminders, overdue alerts, restriction reviews and expiry.

Each job is idempotent (it records what it sent on the row it acted on, in the same transaction
as the letter), so running it twice, or after a restart, never sends anything twice;
``mailbot run --once --now ...`` calls it directly.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Callable

from sqlalchemy.engine import Engine
from sqlmodel import Session

from mailbot.domain.directory import DirectorySource, manager_of
from mailbot.domain.procedures import OPEN_STATUSES
from mailbot.domain.workdays import WorkingCalendar, digest_due
from mailbot.store import audit, erasure, repo
from mailbot.store.db import from_db, reading, to_db
from mailbot.store.db import session as new_session
from mailbot.store.models import Event

if TYPE_CHECKING:
    from mailbot.services.correspondence import Correspondence
    from mailbot.services.digest import Digest
    from mailbot.services.lifecycle import CaseLifecycle

log = logging.getLogger(__name__)


class Jobs:
    """``lifecycle``, ``letters`` and ``digest`` are given as callables that build them: a pass with nothing due
    (most of them) needs neither the letters nor the case machinery, and does not load them."""

    def __init__(self, engine: Engine, lifecycle: Callable[[], CaseLifecycle], letters: Callable[[], Correspondence],
                 calendar: WorkingCalendar, directory: DirectorySource, digest: Callable[[], Digest] | None = None,
                 digest_time: time | None = None, retention_years: int = 6) -> None:
        # No clock of its own: every job is given the instant it runs at (``now``), from the one clock.
        self.engine = engine
        # For a case whose owner has left: it moves to the complaints team before anyone is chased.
        self._lifecycle = lifecycle
        self._letters = letters
        self.calendar = calendar
        self.directory = directory
        self._digest = digest
        self.digest_time = digest_time
        self.retention_years = retention_years
        self._head_logged_on: date | None = None

    @property
    def lifecycle(self) -> CaseLifecycle:
        return self._lifecycle()

    @property
    def letters(self) -> Correspondence:
        return self._letters()

    def run_due(self, now: datetime) -> int:
        """Run everything due at ``now``; returns how many letters were queued."""
        with new_session(self.engine) as session:
            queued = self.chase_deadlines(session, now)
            queued += self.restriction_reviews(session, now)
            queued += self.restriction_expiry(session, now)
            anonymised = self.retention(session, now)
            session.commit()
        if anonymised:
            erasure.scrub_after_retention(self.engine)
        self.log_audit_head(now)
        if self._digest is not None and digest_due(self.calendar, self.digest_time, now):
            # The digest commits per recipient, after the deadline work, so it reports what just happened.
            queued += self._digest().run_due(now)
        return queued

    def log_audit_head(self, now: datetime) -> bool:
        """Once a day (and at start), the audit chain's head to the log: a copy outside the database, so a rewrite
        of the whole chain is caught (`mailbot audit verify --expect`)."""
        today = self.calendar.local(now).date()
        if self._head_logged_on == today:
            return False
        with reading(self.engine) as conn:
            log.info("%s (keep it: `mailbot audit verify --expect PLACE:HASH` checks the chain still passes "
                     "through it)", audit.head_line(conn, now))
        self._head_logged_on = today
        return True

    def retention(self, session: Session, now: datetime) -> int:
        """Cases closed more than MAILBOT_RETENTION_YEARS ago lose their personal data (figures kept); a case on
        #hold is skipped. A hundred a pass, so a first run on an old database does not hold the writer long."""
        cutoff = now.replace(year=now.year - self.retention_years) if not (now.month == 2 and now.day == 29) \
            else now.replace(year=now.year - self.retention_years, day=28)
        cases = erasure.cases_past_retention(session, cutoff)
        if cases:
            erasure.secure_delete(session)  # what the words occupied is overwritten, not just freed
        for case in cases:
            redacted: dict[int, Event] = {}
            erasure.anonymise_case(session, case, now, redacted)
            erasure.mark_redacted(session, redacted, now, "retention_anonymised", case, years=self.retention_years)
        return len(cases)

    def restriction_reviews(self, session: Session, now: datetime) -> int:
        """Six months into a restriction, while the case is still being investigated, the CEO reviews it."""
        rows = repo.restrictions_due_review(session, now, OPEN_STATUSES)
        ceos = [m.email for m in self.directory.get().with_role("ceo")]
        queued = 0
        for restriction, case in rows:
            restriction.reviewed_at = to_db(now)
            started, ends = from_db(restriction.started_at), from_db(restriction.ends_at)
            repo.add_event(session, case, now, "restriction_review_due", to=",".join(ceos))
            letter = self.letters.staff_letter(
                session, case, "restriction-staff-note", now, to=ceos or None,
                headline="Six-month review of a restriction is due",
                detail=(f"The restriction ({restriction.mode}) on {case.complainant} began on "
                        f"{self.calendar.format_date(started) if started else 'an unknown date'} and the "
                        f"complaint is still being investigated. The procedure asks you to review it now and decide "
                        f"whether it continues. Reply #lift reason to end it; otherwise it continues"
                        + (f" until {self.calendar.format_date(ends)}." if ends else "."))
            )
            queued += letter is not None
        return queued

    def restriction_expiry(self, session: Session, now: datetime) -> int:
        """At the end of its term a restriction lifts by itself, with a letter to the person and a note to staff."""
        rows = repo.restrictions_at_term(session, now)
        queued = 0
        for restriction, case in rows:
            ended = from_db(restriction.ends_at)
            assert ended is not None
            restriction.state, restriction.ended_at, restriction.ended_by = "expired", to_db(ended), "term ended"
            repo.add_event(session, case, now, "restriction_expired")
            ended_text = self.calendar.format_date(ended)
            thread = self.letters.complainant_thread(session, case)
            letters = [
                self.letters.queue(session, case=case, template="restriction-expired", to=[case.complainant],
                                   context=self.letters.letter_context(session, case, ended=ended_text), now=now,
                                   automatic=False, references=thread, in_reply_to=thread[-1] if thread else None),
                self.letters.staff_letter(session, case, "restriction-staff-note", now,
                                          headline="A restriction has ended",
                                          detail=f"The restriction on {case.complainant} ended on {ended_text} at the "
                                          f"end of its term; their mail on this case is handled as usual again, "
                                          f"and they have been told."),
            ]
            queued += sum(letter is not None for letter in letters)
        return queued

    def chase_deadlines(self, session: Session, now: datetime) -> int:
        """Overdue alerts and the day-before reminders. Only deadlines that can need a letter now are read
        (due by now, or due before the end of the day after the next working day and not yet reminded), a
        page at a time, so the pass costs the same with 1,000 open cases or 50,000."""
        directory = self.directory.get()
        queued = 0
        staff = frozenset(member.email for member in directory.staff)
        gone = repo.open_cases_assigned_outside(session, OPEN_STATUSES, staff)
        # Cases nobody could take are tried again at every pass, but recorded as stuck only once.
        stuck = repo.owners_without_successor(session, [case.id for case in gone if case.id is not None])
        for case in gone:
            queued += len(self.lifecycle.hand_over_if_gone(session, case, now, stuck=case.id in stuck))
        cal = self.calendar
        # A reminder comes a working day before its deadline: none is due now for a deadline after this.
        horizon = cal.reminders_due_until(now)
        for deadline, case in repo.deadlines_to_chase(session, OPEN_STATUSES, due_before=now, remind_until=horizon):
            due = from_db(deadline.due_at)
            assert due is not None
            if now >= due:
                manager = manager_of(directory, case.assignee) if case.assignee else None
                letter = self.letters.staff_letter(
                    session, case, "deadline-overdue", now, cc=[manager.email] if manager else [],
                    deadline_name=deadline.name, deadline_label=deadline.name.replace("_", " "),
                    due=self.calendar.format_datetime(due),
                    overdue_by=_overdue_by(now - due),
                )
                deadline.overdue_alerted_at = to_db(now)
                deadline.reminded_at = deadline.reminded_at or to_db(now)
                queued += letter is not None
                continue
            if deadline.reminded_at is not None:
                continue
            remind_at = cal.reminder_at(due)
            started = from_db(case.stage_started_at)
            # A deadline set less than a working day ahead was announced by the notification itself: that was its
            # reminder, recorded so that the passes until it falls due no longer read it.
            if started is not None and remind_at <= started:
                deadline.reminded_at = case.stage_started_at
                continue
            if now >= remind_at:
                letter = self.letters.staff_letter(
                    session, case, "deadline-reminder", now, deadline_name=deadline.name,
                    deadline_label=deadline.name.replace("_", " "),
                    due=self.calendar.format_datetime(due),
                )
                deadline.reminded_at = to_db(now)
                queued += letter is not None
        return queued


def _overdue_by(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    if hours < 1:
        return "less than an hour"
    if hours < 48:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{hours // 24} days"
