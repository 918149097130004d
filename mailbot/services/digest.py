"""The managers' daily digest: what is late, due, new, escalated and filed, in one letter a working morning.

Each recipient gets at most one scheduled digest a day. The DigestRun row (unique per recipient and
day) is inserted in the same transaction as the letter, so restarts, catch-up runs and two processes
racing each other still send it once: the loser's insert fails and its letter is rolled back with it.

Who sees what comes from data/staff.toml: regional managers see their region's cases, the head of
delivery, the SMT and the CEO see every case, and the safeguarding lead sees safeguarding cases.
"""

from __future__ import annotations

import logging
import statistics
from array import array
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar
from urllib.parse import quote

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from mailbot.domain import data_requests as data_request_rules
from mailbot.domain.categories import SAFEGUARDING
from mailbot.domain.directory import Directory, DirectorySource
from mailbot.domain.idsets import IdFlags, IdSet
from mailbot.domain.procedures import OPEN_STATUSES, Procedure, opening_letters
from mailbot.domain.recipients import SENIORITY, Recipient, digest_recipients
from mailbot.domain.restrictions import persistent_suggestion
from mailbot.domain.schedule import digest_due
from mailbot.domain.workdays import WorkingCalendar, format_time
from mailbot.services.correspondence import Correspondence
from mailbot.store import digest_reads as reads
from mailbot.store.audit_head import head_line
from mailbot.store.db import from_db, reading
from mailbot.store.db import session as new_session
from mailbot.store.models import detail_of

log = logging.getLogger(__name__)
T = TypeVar("T")

TEMPLATE = "digest"
FILED_KINDS = ("restricted_filed", "restricted_acknowledged")
PROBLEM_DELIVERY = ("failed", "undelivered")
FIGURES_DAYS = 30
PERSISTENT_DAYS = 7
RESOLUTION_WORKING_DAYS = 14
# A mailbox that has not fetched for this long while the bot should be running needs a look.
STALE_FETCH = timedelta(hours=1)
ON_TIME_DEADLINES = (("first_response", "First responses on time"), ("full_response", "Full responses on time"))
# The most cases a section lists by name: the deadline sections (the longest overdue, the soonest due), new cases,
# cases waiting for a decision and requests about personal data (the soonest due). Its count, the workload table
# and the reminders still cover every case. A backlog of thousands is a number to act on, not a list to read.
LIST_LIMIT = 50
# Rows a section reads as they come (the open cases, the running deadlines, a month of complaints) are checked
# against what the recipient may see this many at a time: the undecided ones in one query a batch.
STREAM_BATCH = 500


class DigestError(Exception):
    """A by-hand digest that cannot be sent as asked (for example to someone who gets no digest)."""


class Digest:
    def __init__(self, engine: Engine, letters: Correspondence, calendar: WorkingCalendar, directory: DirectorySource,
                 procedures: dict[str, Procedure], digest_time: time | None, persistent_threshold: int = 10) -> None:
        self.engine = engine
        self.letters = letters
        self.calendar = calendar
        self.directory = directory
        self.procedures = procedures
        self.digest_time = digest_time
        self.persistent_threshold = persistent_threshold

    # ---- when, and to whom -------------------------------------------------------------------

    def is_due(self, now: datetime) -> bool:
        """A working day, at or after the digest time, in the organisation's time zone."""
        return digest_due(self.calendar, self.digest_time, now)

    def run_due(self, now: datetime) -> int:
        """The scheduled digest: each recipient's, once on a working day from the digest time on.

        A bot that was down at the digest time sends on its first run later that day (the catch-up);
        a day missed entirely is not sent late, as the next day's digest covers everything since.
        """
        if not self.is_due(now):
            return 0
        day = self.calendar.local(now).date()
        queued = 0
        for recipient in digest_recipients(self.directory.get()):
            try:
                queued += self._send(recipient, now, day, record=True, once=True)
            except Exception:  # noqa: BLE001  (one recipient's failure must not stop the others' digests)
                log.exception("digest for %s failed; it is retried on the next run", recipient.email)
        return queued

    def send_now(self, now: datetime, to: str | None) -> int:
        """A digest by hand (``mailbot digest``), whatever the time of day, to one recipient or all of them.

        Sent on a working day at or after the digest time, it is that day's digest and is recorded,
        so the scheduler does not send a second one; earlier, or on a day off, it is an extra that
        leaves the scheduled digest alone. Asked for again after today's has gone, it is sent again.
        """
        chosen = self._choose(to, all_if_none=True)
        day = self.calendar.local(now).date()
        record = self.is_due(now)
        return sum(self._send(r, now, day, record=record, once=False) for r in chosen)

    def preview(self, now: datetime, to: str | None, path: Path) -> None:
        """The HTML part of one recipient's digest (the most senior if none is named), written to ``path``."""
        recipient = self._choose(to, all_if_none=False)[0]
        with self._reader() as reader:
            context = self.context(reader, recipient, now)
        sender = self.letters.sender
        letter = self.letters.renderer.render(TEMPLATE, {"org_name": sender.org_name, "address": sender.address,
                                                         **context})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(letter.html, encoding="utf-8")

    def _choose(self, to: str | None, all_if_none: bool) -> list[Recipient]:
        everyone = digest_recipients(self.directory.get())
        if not everyone:
            raise DigestError("nobody in data/staff.toml has a digest role "
                              f"({', '.join(SENIORITY)})")
        if to is None:
            return everyone if all_if_none else everyone[:1]
        wanted = to.strip().lower()
        for recipient in everyone:
            if recipient.email == wanted:
                return [recipient]
        raise DigestError(f"{to} gets no digest: the digest goes to staff with one of the roles "
                          f"{', '.join(SENIORITY)}, or with digest = true, in data/staff.toml "
                          f"({', '.join(r.email for r in everyone)})")

    def _send(self, recipient: Recipient, now: datetime, day: date, *, record: bool, once: bool) -> int:
        """Queue one digest. ``once``: skip it if today's is recorded; ``record``: record it as today's.

        The digest is put together on a connection that only reads: on SQLite a writer's transaction holds the
        database's one writer slot, and intake waited for as long as a recipient's digest took to gather
        (half a second at 50,000 open cases). Only recording it and queueing its letter write.
        """
        with self._reader() as reader:
            if record and self._recorded(reader, recipient, day):
                if once:
                    return 0
                record = False
            context = self.context(reader, recipient, now)
        with new_session(self.engine) as session:
            run = None
            if record:
                # Recorded before the letter so that a second process loses at once.
                run = reads.claim_digest(session, recipient.email, day, now)
                if run is None and once:
                    return 0
            team = self.directory.get().first_with_role("complaints_team")
            letter = self.letters.queue(
                session, case=None, template=TEMPLATE,
                to=[recipient.email], context=context, now=now, automatic=False, auto_submitted="auto-generated",
                # A reply to the digest itself reaches a person, not the bot (which would open a case on it).
                reply_to=team.email if team and team.email != recipient.email else None,
            )
            if run is not None and letter is not None:
                run.message_id = letter.message_id
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return 0
        return 1 if letter is not None else 0

    @contextmanager
    def _reader(self) -> Iterator[Session]:
        """A session on a reading connection (on SQLite it takes no writer's lock and waits for no writer)."""
        with reading(self.engine) as connection, Session(bind=connection) as session:
            yield session

    @staticmethod
    def _recorded(session: Session, recipient: Recipient, day: date) -> bool:
        return reads.digest_recorded(session, recipient.email, day)

    def last_digest_at(self, session: Session, recipient: Recipient, now: datetime) -> datetime | None:
        return reads.last_digest_at(session, recipient.email, now)

    # ---- what goes in it ---------------------------------------------------------------------

    def context(self, session: Session, recipient: Recipient, now: datetime) -> dict[str, Any]:
        """Everything the digest templates show, for one recipient at one instant."""
        cal = self.calendar
        directory = self.directory.get()
        previous = self.last_digest_at(session, recipient, now)
        since = previous or now - timedelta(hours=24)
        view = _CaseView(session, self, recipient, directory)
        today = cal.local(now).date()
        next_day = cal.next_working_day(today)

        # The open cases' running deadlines due by the end of the next working day or of this week (whichever is
        # later), read once for the deadline sections and the workload; later ones are in neither.
        end_of_week = today + timedelta(days=6 - today.weekday())
        cutoff = datetime.combine(max(next_day, end_of_week) + timedelta(days=1), time(0), tzinfo=cal.zone)
        running = reads.running_deadlines_due_by(session, cutoff, OPEN_STATUSES)
        (overdue, overdue_total), (due_today, today_total), (due_next, next_total), workload = self._deadlines(
            running, view, now, today, next_day, end_of_week)
        new_cases = [view.item(c, opened=cal.format_datetime(c.opened_at))
                     for c in view.rows(reads.cases_opened_between(session, since, now))]
        escalations = self._escalations(session, view, since, now)
        outcomes = self._outcomes(session, view, since, now)
        filed = self._filed(session, view, since, now)
        reviews = self._reviews(session, view, now, next_day)
        persistent = self._persistent(session, view, now)
        awaiting = self._awaiting(session, view)
        data_requests = self._data_requests(session, view, now)
        needs_a_look = self._needs_a_look(session, view, since, now)
        problems = self._delivery_problems(session, view, since, now)
        mailboxes = self._mailboxes(session, since, now)
        mailbox_problems = [m for m in mailboxes if m["problem"]] if recipient.sees_all else []
        needs = {
            "overdue": overdue_total, "due": today_total + next_total, "new": len(new_cases),
            "escalations": len(escalations), "outcomes": len(outcomes),
            "restrictions": len(filed) + len(reviews) + len(persistent), "delivery": len(problems),
            "mailbox": len(mailbox_problems), "awaiting": len(awaiting), "needs_a_look": len(needs_a_look),
            "data_requests": len(data_requests),
        }
        return {
            "day": cal.format_date(today),
            # Without the year: a subject longer than a header line is folded, which some readers show badly.
            "short_day": cal.format_date(today).rsplit(" ", 1)[0],
            "recipient_name": recipient.name,
            "recipient_email": recipient.email,
            "scope": recipient.scope_label,
            "since": f"{format_time(cal.local(since).time())} on {cal.format_date(since)}",
            # Every time in the digest is UK time; the zone says which of GMT and BST it is today.
            "zone": cal.local(now).tzname() or "UK time",
            "since_previous": previous is not None,
            "nothing": not any(needs.values()),
            "counts": needs,
            "overdue": overdue,
            "due_today": due_today,
            "due_next": due_next,
            # How many each list leaves out (LIST_LIMIT).
            "not_listed": {"overdue": overdue_total - len(overdue), "due_today": today_total - len(due_today),
                           "due_next": next_total - len(due_next), "new": max(0, len(new_cases) - LIST_LIMIT),
                           "awaiting": max(0, len(awaiting) - LIST_LIMIT),
                           "data_requests": max(0, len(data_requests) - LIST_LIMIT),
                           "delivery": max(0, len(problems) - LIST_LIMIT),
                           "needs_a_look": max(0, len(needs_a_look) - LIST_LIMIT)},
            "list_limit": LIST_LIMIT,
            "next_day": cal.format_date(next_day),
            "new_cases": new_cases[:LIST_LIMIT],
            "escalations": escalations,
            "outcomes": outcomes,
            "filed": filed,
            "reviews": reviews,
            "persistent": persistent,
            "awaiting": awaiting[:LIST_LIMIT],
            "data_requests": data_requests[:LIST_LIMIT],
            "workload": workload,
            "needs_a_look": needs_a_look[:LIST_LIMIT],
            "persistent_threshold": self.persistent_threshold,
            "persistent_days": PERSISTENT_DAYS,
            "delivery_problems": problems[:LIST_LIMIT],
            "mailboxes": mailboxes,
            "mailbox_problems": mailbox_problems,
            "figures": self._figures(session, view, now),
            # A copy of the audit chain's head outside the database (store.audit_head.head_line): kept in the
            # recipients' mailboxes, it lets `mailbot audit verify --expect` catch a rewrite of the whole chain.
            "audit_head": head_line(session.connection(), now).rsplit(": ", 1)[-1],
        }

    def _deadlines(self, rows: Iterable[reads.HeldDeadline], view: _CaseView, now: datetime, today: date,
                   next_day: date, end_of_week: date) -> tuple[Any, ...]:
        """(items listed, how many in all) of the overdue cases, the deadlines due today and those due on the next
        working day, soonest first, and the workload table. A case with several missed deadlines is one overdue
        line: the earliest, naming the others. One pass over the deadlines as read, keeping only the listed ones
        (LIST_LIMIT) and the counts: an overdue backlog of thousands is counted, never held."""
        cal = self.calendar
        late: dict[int, list[tuple[str, int, datetime]]] = {}  # the listed overdue cases, by earliest missed deadline
        late_cases, this_week_cases = IdSet(), IdSet()
        late_by: Counter[str | None] = Counter()  # overdue cases by assignee, for the workload
        this_week_by: Counter[str | None] = Counter()  # cases with a deadline later this week, by assignee
        today_rows: list[reads.RunningDeadline] = []
        next_rows: list[reads.RunningDeadline] = []
        today_total = next_total = 0
        for case_id, name, stage, due, assignee in view.stream(rows, lambda row: row[0]):
            if due <= now:
                if late_cases.add(case_id):
                    late_by[assignee] += 1
                    if len(late) < LIST_LIMIT:
                        late[case_id] = []
                if case_id in late:
                    late[case_id].append((name, stage, due))
                continue
            day = cal.local(due).date()
            if day <= end_of_week and this_week_cases.add(case_id):
                this_week_by[assignee] += 1
            if day > next_day:
                continue  # read for the workload's week only
            if day <= today:
                today_total += 1
                if len(today_rows) < LIST_LIMIT:
                    today_rows.append((case_id, name, stage, due))
            else:
                next_total += 1
                if len(next_rows) < LIST_LIMIT:
                    next_rows.append((case_id, name, stage, due))
        view.load(list(late) + [r[0] for r in today_rows] + [r[0] for r in next_rows])

        def item(case_id: int, name: str, stage: int, due: datetime, **extra: Any) -> dict[str, Any]:
            case = view.case(case_id)
            return view.item(case, deadline=_label(name), stage=view.stage_label(case, stage),
                             due=cal.format_datetime(due), **extra)

        overdue = []
        for case_id, missed in late.items():
            name, stage, due = missed[0]
            entry = item(case_id, name, stage, due, overdue_by=self.overdue_by(due, now))
            entry["deadline"] = " and ".join(_label(n) for n, _, _ in missed)
            overdue.append(entry)
        return ((overdue, len(late_cases)), ([item(*r) for r in today_rows], today_total),
                ([item(*r) for r in next_rows], next_total), self._workload(view, this_week_by, late_by))

    def overdue_by(self, due: datetime, now: datetime) -> str:
        hours = int((now - due).total_seconds() // 3600)
        if hours < 1:
            return "less than an hour"
        if hours < 24:
            return f"{hours} hour{'s' if hours != 1 else ''}"
        days = hours // 24
        text = f"{days} day{'s' if days != 1 else ''}"
        working = self.calendar.working_days_between(due, now)
        if working != days:
            text += f" ({working} working day{'s' if working != 1 else ''})"
        return text

    def _escalations(self, session: Session, view: _CaseView, since: datetime, now: datetime) -> list[dict]:
        out = []
        events = view.keep(reads.events_between(session, ("escalated",), since, now), lambda e: e.case_id)
        view.load(e.case_id for e in events if e.case_id is not None)
        for event in events:
            case = view.case(event.case_id)  # type: ignore[arg-type]
            detail = detail_of(event.detail)
            stage = int(detail.get("stage") or case.stage)
            procedure = self.procedures.get(case.procedure)
            reviewer = ""
            if procedure is not None and any(s.number == stage for s in procedure.stages):
                reviewer = procedure.stage(stage).reviewer_label
            out.append(view.item(case, stage=view.stage_label(case, stage), reviewer=reviewer,
                                 reason=str(detail.get("reason") or ""),
                                 at=self.calendar.format_datetime(from_db(event.at))))
        return out

    def _outcomes(self, session: Session, view: _CaseView, since: datetime, now: datetime) -> list[dict]:
        rows = view.keep(reads.letters_between(session, view.outcome_kinds, since, now), lambda m: m.case_id)
        view.load(m.case_id for m in rows)  # type: ignore[misc]
        return [view.item(view.case(m.case_id), stage=view.stage_label(view.case(m.case_id)),  # type: ignore[arg-type]
                          outcome=view.case(m.case_id).outcome or "", delivery=m.delivery or "",  # type: ignore[arg-type]
                          at=self.calendar.format_datetime(from_db(m.at)))  # type: ignore[arg-type]
                for m in rows]

    def _filed(self, session: Session, view: _CaseView, since: datetime, now: datetime) -> list[dict]:
        rows = view.keep(reads.inbound_kinds_between(session, FILED_KINDS, since, now), lambda row: row[0])
        counts: dict[int, Counter[str]] = defaultdict(Counter)
        for case_id, kind in rows:
            counts[case_id][kind] += 1
        view.load(counts)
        return [view.item(view.case(case_id), filed=c["restricted_filed"], acknowledged=c["restricted_acknowledged"])
                for case_id, c in sorted(counts.items(), key=lambda kv: view.sort_key(view.case(kv[0])))]

    def _reviews(self, session: Session, view: _CaseView, now: datetime, next_day: date) -> list[dict]:
        rows = view.keep(reads.restrictions_with_review(session), lambda r: r.case_id)
        out = []
        for row in rows:
            review_at = from_db(row.review_at)
            reviewed = from_db(row.reviewed_at)
            assert review_at is not None
            if reviewed is not None and reviewed >= review_at:
                continue
            if self.calendar.local(review_at).date() > next_day:
                continue
            out.append(view.item(view.case(row.case_id), review=self.calendar.format_date(review_at),
                                 late=review_at <= now, mode=row.mode or ""))
        return out

    def _persistent(self, session: Session, view: _CaseView, now: datetime) -> list[dict]:
        """Cases with more than the threshold of the complainant's messages in a week: a suggestion only."""
        week = now - timedelta(days=PERSISTENT_DAYS)
        # Counted by the database, case by case; only the cases over the threshold are kept.
        counts = {cid: n for cid, n in reads.complainant_messages_between(session, week, now)
                  if persistent_suggestion(n, self.persistent_threshold)}
        flagged = view.keep(counts, lambda cid: cid)
        if not flagged:
            return []
        view.load(flagged)
        managed = reads.cases_under_management(session, flagged)
        # Not while our own response to them is overdue: the messages may be chasing us, with reason.
        late = {cid for cid, _, _, due in reads.running_deadlines_of(session, flagged) if due <= now}
        return [view.item(view.case(cid), messages=counts[cid], case_status=view.case(cid).status,
                          stage=view.stage_label(view.case(cid)))
                for cid in sorted(flagged, key=lambda c: (-counts[c], view.sort_key(view.case(c))))
                if cid not in managed and cid not in late]

    def _awaiting(self, session: Session, view: _CaseView) -> list[dict]:
        """Cases waiting for a member of staff to decide on a complainant's reply to the outcome, longest first."""
        waiting = sorted(view.rows(reads.cases_in_statuses(session, ("awaiting_staff",))),
                         key=lambda case: (case.updated_at, view.sort_key(case)))
        return [view.item(case, since=self.calendar.format_datetime(case.updated_at)) for case in waiting]

    def _data_requests(self, session: Session, view: _CaseView, now: datetime) -> list[dict]:
        """Requests about personal data not yet answered, soonest due first: listed every day until they are."""
        open_requests = view.rows(reads.cases_in_statuses(session, OPEN_STATUSES, data_request_rules.PROCEDURE))
        if not open_requests:
            return []
        due = {cid: when for cid, name, _, when in reads.running_deadlines_of(session, [c.id for c in open_requests])
               if name == data_request_rules.DEADLINE}
        kinds = reads.data_request_kinds(session, [c.id for c in open_requests if c.id is not None])
        items = []
        for case in open_requests:
            when = due.get(case.id)
            items.append(view.item(
                case, kind=data_request_rules.label(kinds.get(case.id, "")) if case.id in kinds else "not yet said",
                received=self.calendar.format_date(case.opened_at),
                due=self.calendar.format_date(when) if when else "no deadline",
                overdue=bool(when and when < now), sort=when or now))
        return sorted(items, key=lambda i: (i["sort"], i["ref"]))

    @staticmethod
    def _workload(view: _CaseView, this_week: Counter[str | None], late: Counter[str | None]) -> list[dict]:
        """Open cases by who holds them: how many, how many with a deadline this week, how many overdue."""
        rows: dict[str, dict[str, Any]] = {}
        for assignee, count in view.by_assignee.items():
            holder = view.holder_of(assignee)
            row = rows.setdefault(holder, {"holder": holder, "open": 0, "this_week": 0, "overdue": 0})
            row["open"] += count
            row["this_week"] += this_week[assignee]
            row["overdue"] += late[assignee]
        return sorted(rows.values(), key=lambda r: (-r["overdue"], -r["open"], r["holder"]))

    def _needs_a_look(self, session: Session, view: _CaseView, since: datetime, now: datetime) -> list[dict]:
        """Mail filed as automated, on no case, but written to the complaints address itself: a person may be
        behind it (a form the bot did not recognise, a robot-looking sender with something to say)."""
        if not view.recipient.sees_all:
            return []
        address = self.letters.sender.address
        return [{"from": m.from_addr, "subject": (m.subject or "(no subject)") if view.recipient.subjects
                 else "(subject shown only with digest_subjects)", "kind": (m.kind or "").replace("_", " "),
                 "at": self.calendar.format_datetime(from_db(m.at))}  # type: ignore[arg-type]
                for m in reads.unfiled_automated_between(session, since, now)
                if address in (m.to_addrs or "").lower().split(",")]

    def _delivery_problems(self, session: Session, view: _CaseView, since: datetime, now: datetime) -> list[dict]:
        """Letters refused (failed) or bounced (undelivered) since the last digest.

        A failure is dated by its event, as a letter can fail a day after it was written; the events
        name the bounced message or the letter's template and recipients.
        """
        events = reads.delivery_problem_events(session, since, now)
        bounced_ids, failed_keys = set(), set()
        for event in events:
            detail = detail_of(event.detail)
            if event.type == "letter_undelivered":
                bounced_ids.add(str(detail.get("message_id", "")))
            else:
                failed_keys.add((event.case_id, str(detail.get("template", "")), str(detail.get("to", ""))))
        rows = reads.problem_letters(session, PROBLEM_DELIVERY, since - timedelta(days=FIGURES_DAYS), now)
        out = []
        for row in rows:
            recent = (from_db(row.at) >= since or row.message_id in bounced_ids  # type: ignore[operator]
                      or (row.case_id, row.kind, row.to_addrs) in failed_keys)
            if not recent:
                continue
            if row.case_id is None:
                if not view.recipient.sees_all:
                    continue
                item: dict[str, Any] = {"ref": "", "subject": row.subject, "mailto": "", "reply_address": ""}
            elif view.sees(row.case_id):
                item = view.item(view.case(row.case_id))
            else:
                continue
            out.append({**item, "letter": row.kind, "to": row.to_addrs,
                        "state": "bounced" if row.delivery == "undelivered" else "refused",
                        "error": _strip_prefix(row.last_error or "", "bounced: ")[:200],
                        "written": self.calendar.format_datetime(from_db(row.at))})  # type: ignore[arg-type]
        return out

    def _mailboxes(self, session: Session, since: datetime, now: datetime) -> list[dict]:
        cal = self.calendar
        out = []
        for cur in reads.mailbox_cursors(session):
            success, error_at = from_db(cur.last_success_at), from_db(cur.last_error_at)
            problem = ""
            if success is None:
                problem = "no successful fetch yet"
            elif error_at is not None and error_at > success:
                problem = "the last fetch failed"
            elif now - success > STALE_FETCH:
                problem = f"no fetch for {_duration((now - success).total_seconds())}"
            if not problem and cur.auth_failures and error_at is not None and error_at >= since:
                problem = "authentication failed since the last digest"
            out.append({
                "mailbox": cur.mailbox,
                "last_success": cal.format_datetime(success) if success else "never",
                "errors": cur.error_count,
                "auth_failures": cur.auth_failures,
                "last_error": (cur.last_error or "")[:200],
                "last_error_at": cal.format_datetime(error_at) if error_at else "",
                "problem": problem,
            })
        return out

    # ---- the last 30 days --------------------------------------------------------------------

    def _figures(self, session: Session, view: _CaseView, now: datetime) -> dict[str, Any]:
        window = now - timedelta(days=FIGURES_DAYS)
        ack = self._ack_times(session, view, window, now)
        rates = []
        for name, label in ON_TIME_DEADLINES:
            met = due = 0
            for _, on_time in view.stream(reads.deadlines_kept_between(session, name, window, now), lambda r: r[0]):
                met, due = met + on_time, due + 1
            rates.append(_rate(label, met, due, "none due"))
        within, resolved = self._resolved_within(session, view, window, now)
        rates.append(_rate(f"Resolved within {RESOLUTION_WORKING_DAYS} working days", within, resolved, "none resolved"))
        by_stage, by_category = view.by_stage, view.by_category
        return {
            "days": FIGURES_DAYS,
            "ack": ack,
            "rates": rates,
            "open_total": view.open_total,
            "by_stage": _bars([(f"Stage {n}", by_stage[n]) for n in sorted(by_stage)]),
            "by_category": _bars(sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))),
        }

    def _ack_times(self, session: Session, view: _CaseView, window: datetime, now: datetime) -> dict[str, Any]:
        seconds = array("d")  # 8 bytes a complaint: a month of them is counted without holding a row each
        waiting = 0
        for _, at, sent in view.stream(reads.acknowledgement_times(session, view.open_kinds, window, now),
                                       lambda row: row[0]):
            if sent is None:
                waiting += 1
            else:
                seconds.append(max(0.0, (sent - at).total_seconds()))
        return {
            "count": len(seconds),
            "waiting": waiting,
            "median": _duration(statistics.median(seconds)) if seconds else "",
            "worst": _duration(max(seconds)) if seconds else "",
        }

    def _resolved_within(self, session: Session, view: _CaseView, window: datetime,
                         now: datetime) -> tuple[int, int]:
        """Stage 1 resolutions in the window (the first outcome letter) and how many took 14 working days or less."""
        done = dict(view.keep(reads.first_letters_between(session, view.outcome_kinds, window, now),
                              lambda row: row[0]))
        # A case resolved with no outcome letter at all (one posted, say) counts from when it closed.
        closed = view.rows(reads.cases_closed_between(session, "resolved", window, now))
        with_letters = reads.cases_with_letters(session, view.outcome_kinds, [c.id for c in closed])
        for case in closed:
            if case.id not in with_letters and case.closed_at is not None:
                done.setdefault(case.id, case.closed_at)
        view.load(done)
        within = sum(1 for cid, when in done.items()
                     if self.calendar.working_days_between(view.case(cid).opened_at, when) <= RESOLUTION_WORKING_DAYS)
        return within, len(done)


class _CaseView:
    """The cases one recipient may see, with the helpers that turn a case into a digest line.

    It never holds every case: the open ones are counted as they are read (by stage, category and assignee, for
    the figures and the workload), and whole rows (``store.digest_reads.CaseRow``) are read only for the cases a
    section names. Whether a recipient may see a case is decided once per case, as the sections ask, and kept in
    a byte (``domain.idsets.IdFlags``).
    """

    def __init__(self, session: Session, digest: Digest, recipient: Recipient, directory: Directory) -> None:
        self.session = session
        self.digest = digest
        self.recipient = recipient
        self.directory = directory
        procedures = digest.procedures
        self.outcome_kinds = sorted({p.letters.get("resolve", "outcome") for p in procedures.values()} | {"outcome"})
        self.open_kinds = opening_letters(procedures)
        self.everything = recipient.sees_all
        self._alerted = reads.safeguarding_alerted(session)
        self._seen = IdFlags()  # whether the recipient may see each case decided so far: a byte a case
        self._rows: dict[int, reads.CaseRow] = {}
        # The open cases the recipient may see, counted as they are read and never kept: the figures and the
        # workload need only how many there are by stage, by category and by assignee.
        self.open_total = 0
        self.by_stage: Counter[int] = Counter()
        self.by_category: Counter[str] = Counter()
        self.by_assignee: Counter[str | None] = Counter()
        if self.everything:  # counted by the database
            for stage, category, assignee, count in reads.open_case_counts(session, OPEN_STATUSES):
                self._count_open(stage, category, assignee, count)
            return
        for case_id, stage, category, assignee, complainant in reads.open_case_keys(session, OPEN_STATUSES):
            if self._decide(case_id, complainant, assignee, category):
                self._count_open(stage, category, assignee, 1)

    def _count_open(self, stage: int, category: str, assignee: str | None, count: int) -> None:
        self.open_total += count
        self.by_stage[stage] += count
        self.by_category[category] += count
        self.by_assignee[assignee] += count

    def _decide(self, case_id: int, complainant: str, assignee: str | None, category: str) -> bool:
        safeguarding = category == SAFEGUARDING or case_id in self._alerted
        seen = self.recipient.sees(self.region_of(complainant, assignee), safeguarding) or (
            self.recipient.own_cases and assignee == self.recipient.email)
        self._seen.set(case_id, seen)
        return seen

    def _decide_all(self, ids: Iterable[int | None]) -> None:
        """Decide, in a few queries, every case of these not decided yet."""
        unknown = {cid for cid in ids if cid is not None and self._seen.get(cid) is None}
        for key in reads.case_visibility_keys(self.session, unknown):
            self._decide(*key)

    def sees(self, case_id: int | None) -> bool:
        if case_id is None:
            return False
        if self.everything:
            return True
        self._decide_all([case_id])
        return bool(self._seen.get(case_id))

    def keep(self, found: Iterable[T], case_id: Callable[[T], int | None]) -> list[T]:
        """Of what a query found (in its order), what is on a case the recipient may see: the cases not decided
        yet are decided together, not one query each."""
        found = list(found)
        if self.everything:
            return [x for x in found if case_id(x) is not None]
        self._decide_all(case_id(x) for x in found)
        return [x for x in found if self._seen.get(case_id(x))]  # type: ignore[arg-type]

    def stream(self, found: Iterable[T], case_id: Callable[[T], int | None]) -> Iterator[T]:
        """``keep`` for rows read as they come: decided STREAM_BATCH at a time, so none is held for long."""
        pending: list[T] = []
        for row in found:
            pending.append(row)
            if len(pending) >= STREAM_BATCH:
                yield from self.keep(pending, case_id)
                pending = []
        yield from self.keep(pending, case_id)

    def region_of(self, complainant: str, assignee: str | None) -> str:
        """The complainant's region from the participant directory, else the assignee's."""
        person = self.directory.participant(complainant)
        if person and person.region:
            return person.region
        staff = self.directory.staff_member(assignee) if assignee else None
        return staff.region if staff else ""

    def load(self, ids: Iterable[int]) -> None:
        """Read the rows of these cases (those not read yet) in a few queries."""
        missing = {cid for cid in ids if cid not in self._rows}
        for row in reads.case_rows(self.session, missing):
            self._rows[row.id] = row

    def case(self, case_id: int) -> reads.CaseRow:
        if case_id not in self._rows:
            self.load([case_id])
        return self._rows[case_id]

    def rows(self, found: list[reads.CaseRow]) -> list[reads.CaseRow]:
        """Of the cases a query found (in its order), those the recipient may see; kept for later sections."""
        shown = self.keep(found, lambda c: c.id)
        for row in shown:
            self._rows.setdefault(row.id, row)
        return shown

    @staticmethod
    def sort_key(case: reads.CaseRow) -> tuple[int, int]:
        return (case.year, case.seq)

    def stage_label(self, case: reads.CaseRow, stage: int | None = None) -> str:
        number = stage or case.stage
        procedure = self.digest.procedures.get(case.procedure)
        if procedure is not None and any(s.number == number for s in procedure.stages):
            return procedure.stage(number).label
        return f"Stage {number}"

    def holder(self, case: reads.CaseRow) -> str:
        return self.holder_of(case.assignee)

    def holder_of(self, assignee: str | None) -> str:
        if not assignee:
            return "nobody assigned"
        member = self.directory.staff_member(assignee)
        return member.name if member else assignee

    def item(self, case: reads.CaseRow, **extra: Any) -> dict[str, Any]:
        reply = self.digest.letters.reply_address(case)
        return {
            "ref": case.ref,
            # Subjects often carry names and health details: only for those whose staff.toml entry asks.
            "subject": (case.subject or "(no subject)") if self.recipient.subjects
            else f"({_label(case.category)} complaint)",
            "complainant": case.complainant,
            "holder": self.holder(case),
            "category": case.category,
            "procedure": case.procedure,
            "reply_address": reply,
            "mailto": f"mailto:{reply}?subject={quote(f'[{case.ref}]')}",
            **extra,
        }


def _label(name: str) -> str:
    return name.replace("_", " ")


def _strip_prefix(text: str, prefix: str) -> str:
    return text[len(prefix):] if text.startswith(prefix) else text


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} seconds" if seconds < 10 else f"{round(seconds)} seconds"
    if seconds < 3600:
        minutes = round(seconds / 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    if seconds < 48 * 3600:
        hours = round(seconds / 3600, 1)
        return f"{hours:g} hour{'s' if hours != 1 else ''}"
    days = round(seconds / 86400)
    return f"{days} days"


def _rate(label: str, met: int, total: int, empty: str) -> dict[str, Any]:
    pct = round(100 * met / total) if total else None
    return {"label": label, "met": met, "total": total, "pct": pct, "empty": empty,
            "width": max(1, pct) if pct else 0, "colour": _rate_colour(pct)}


def _rate_colour(pct: int | None) -> str:
    if pct is None:
        return "#b1b4b6"
    if pct >= 90:
        return "#00703c"
    if pct >= 70:
        return "#f47738"
    return "#d4351c"


def _bars(rows: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """Rows for a CSS bar chart: each bar's width is its share of the biggest (at least 2% when not zero)."""
    top = max((n for _, n in rows), default=0)
    return [{"label": label, "count": n, "width": max(2, round(100 * n / top)) if n and top else 0}
            for label, n in rows]
