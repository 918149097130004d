"""The scheduled work itself: deadline reminders, overdue alerts, restriction reviews and expiry, retention.

Each job is idempotent (it records what it sent on the row it acted on, in the same transaction
as the letter), so running it twice, or after a restart, never sends anything twice. ``services.jobs`` runs it
when its look at the database (``store.due_reads``) finds something due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from mailbot.domain.directory import DirectorySource, manager_of
from mailbot.domain.procedures import OPEN_STATUSES
from mailbot.domain.schedule import chase_step, retention_cutoff
from mailbot.domain.workdays import WorkingCalendar
from mailbot.services.correspondence import Correspondence
from mailbot.services.lifecycle import CaseLifecycle
from mailbot.store import erasure, repo
from mailbot.store.db import from_db, to_db
from mailbot.store.db import session as new_session
from mailbot.store.models import Event


class ScheduledWork:
    def __init__(self, engine: Engine, lifecycle: CaseLifecycle, letters: Correspondence, calendar: WorkingCalendar,
                 directory: DirectorySource, retention_years: int = 6) -> None:
        self.engine = engine
        # For a case whose owner has left: it moves to the complaints team before anyone is chased.
        self.lifecycle = lifecycle
        self.letters = letters
        self.calendar = calendar
        self.directory = directory
        self.retention_years = retention_years

    def run(self, now: datetime) -> int:
        """Every job, in one transaction; returns how many letters were queued."""
        with new_session(self.engine) as session:
            queued = self.chase_deadlines(session, now)
            queued += self.restriction_reviews(session, now)
            queued += self.restriction_expiry(session, now)
            anonymised = self.retention(session, now)
            session.commit()
        if anonymised:
            erasure.scrub_after_retention(self.engine)
        return queued

    def retention(self, session: Session, now: datetime) -> int:
        """Cases closed more than MAILBOT_RETENTION_YEARS ago lose their personal data (figures kept); a case on
        #hold is skipped. A hundred a pass, so a first run on an old database does not hold the writer long."""
        cases = erasure.cases_past_retention(session, retention_cutoff(now, self.retention_years))
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
            step = chase_step(now, due, from_db(deadline.reminded_at), from_db(case.stage_started_at), cal)
            if step == "overdue":
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
            elif step == "announced":
                # Set less than a working day ahead, it was announced by the notification itself: that was its
                # reminder, recorded so that the passes until it falls due no longer read it.
                deadline.reminded_at = case.stage_started_at
            elif step == "remind":
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
