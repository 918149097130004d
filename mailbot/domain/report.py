"""The annual review's figures (`mailbot report`), as pure functions of the cases opened in a period.

Every figure is about the cases opened between the two UK dates, both included, and what has happened to them by
the time the report is made (``now``), so re-running a past year's report gives the same counts unless those cases
moved on. Mail filed on no case (automated mail, unreadable mail) is counted by the UK date it arrived. Percentiles
are by nearest rank: the p-th of n sorted values is the ceil(p/100 * n)-th.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from mailbot.domain.workdays import WorkingCalendar

DATA_REQUEST, DATA_REQUEST_DEADLINE = "data_request", "data_request_response"  # domain.data_requests
# The stage-1 promises, in the procedures' words; then the reviews' (stages 2 and 3).
RESPONSES = (("first_response", "First response"), ("full_response", "Full response"),
             ("resolution", "Resolution"))
CHANNELS = {"email": "Email", "web": "Web form", "phone": "Phone (logged by staff)",
            "post": "Post (logged by staff)", "in-person": "In person (logged by staff)"}
# Complaints staff logged on someone's behalf (they reached us by phone, post or in person).
ON_BEHALF = frozenset({"phone", "post", "in-person"})
RESTRICTION_EVENTS = (("restriction_warned", "Warnings given"), ("restriction_imposed", "Restrictions imposed"),
                      ("restriction_review_due", "Six-month reviews due"), ("restriction_lifted", "Lifted"),
                      ("restriction_expired", "Expired"))
CSV_FIELDS = ("ref", "opened", "month", "channel", "on_behalf", "procedure", "category", "status", "outcome",
              "stage_reached", "escalated", "closed",
              "first_response_due", "first_response_met", "first_response_on_time", "first_response_working_days",
              "full_response_due", "full_response_met", "full_response_on_time", "full_response_working_days",
              "resolution_due", "resolution_met", "resolution_on_time", "resolution_working_days",
              "extensions", "restricted", "mentor_actions", "lessons", "anonymised")


@dataclass(frozen=True)
class DeadlineFact:
    name: str
    stage: int
    due_at: datetime
    met_at: datetime | None


@dataclass(frozen=True)
class EventFact:
    type: str
    at: datetime
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class CaseFacts:
    ref: str
    opened_at: datetime
    channel: str
    procedure: str
    category: str
    status: str
    outcome: str | None
    stage: int
    closed_at: datetime | None
    anonymised: bool = False
    deadlines: tuple[DeadlineFact, ...] = ()  # those in force (an extension's replaces the one it moved)
    events: tuple[EventFact, ...] = ()
    mentor_actions: tuple[str, ...] = ()

    def of_type(self, *types: str) -> list[EventFact]:
        return [e for e in self.events if e.type in types]

    @property
    def stage_reached(self) -> int:
        stages = [int(e.detail.get("stage", 0) or 0) for e in self.of_type("escalated", "resolved")]
        return max([self.stage, *stages])


def nearest_rank(values: Sequence[float], percent: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


def _pct(part: int, whole: int) -> int | None:
    return round(100 * part / whole) if whole else None


@dataclass
class Promise:
    """How a promise (one deadline name, at one stage) was kept over the period's cases."""

    label: str
    on_time: int = 0
    late: int = 0
    pending: int = 0
    days: list[int] = field(default_factory=list)

    def add(self, deadline: DeadlineFact, opened: datetime, now: datetime, calendar: WorkingCalendar) -> None:
        if deadline.met_at is None:
            if deadline.due_at < now:
                self.late += 1
            else:
                self.pending += 1
            return
        self.days.append(calendar.working_days_between(opened, deadline.met_at))
        if deadline.met_at <= deadline.due_at:
            self.on_time += 1
        else:
            self.late += 1

    def figures(self) -> dict[str, Any]:
        due = self.on_time + self.late
        return {"label": self.label, "due": due, "on_time": self.on_time, "late": self.late,
                "pending": self.pending, "on_time_pct": _pct(self.on_time, due),
                "median_working_days": nearest_rank(self.days, 50), "p90_working_days": nearest_rank(self.days, 90),
                "answered": len(self.days)}


def _counts(values: Iterable[str], order: Iterable[str] = ()) -> list[dict[str, Any]]:
    counts = Counter(values)
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in set(order))
    return [{"key": k, "count": counts[k]} for k in keys]


def months(start: date, end: date) -> list[tuple[int, int]]:
    out, (year, month) = [], (start.year, start.month)
    while (year, month) <= (end.year, end.month):
        out.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _deadline(case: CaseFacts, name: str, stage: int) -> DeadlineFact | None:
    return next((d for d in case.deadlines if d.name == name and d.stage == stage), None)


def figures(cases: Sequence[CaseFacts], calendar: WorkingCalendar, start: date, end: date, now: datetime,
            unfiled: Mapping[str, int] | None = None, lessons_text: bool = True) -> dict[str, Any]:
    """Everything the report shows, as plain data (the JSON format is this, as it stands). Requests about personal
    data are not complaints: they are counted apart, in ``data_requests``."""
    requests = [c for c in cases if c.procedure == DATA_REQUEST]
    cases = [c for c in cases if c.procedure != DATA_REQUEST]
    local = {c.ref: calendar.local(c.opened_at).date() for c in cases}
    by_month = Counter((local[c.ref].year, local[c.ref].month) for c in cases)
    responses = {name: Promise(label) for name, label in RESPONSES}
    reviews = {stage: Promise(f"Stage {stage} review response") for stage in (2, 3)}
    for case in cases:
        for name, promise in responses.items():
            deadline = _deadline(case, name, 1)
            if deadline is not None:
                promise.add(deadline, case.opened_at, now, calendar)
        for stage, promise in reviews.items():
            deadline = _deadline(case, "stage_response", stage)
            if deadline is not None:
                escalated = [e.at for e in case.of_type("escalated") if int(e.detail.get("stage", 0) or 0) == stage]
                promise.add(deadline, escalated[-1] if escalated else case.opened_at, now, calendar)
    escalations = []
    for stage in (2, 3):
        reached = [c for c in cases if c.stage_reached >= stage]
        results = Counter(str(e.detail.get("outcome")) for c in cases for e in c.of_type("resolved")
                          if int(e.detail.get("stage", 0) or 0) == stage)
        escalations.append({"stage": stage, "reached": len(reached),
                            "results": [{"key": k, "count": n} for k, n in sorted(results.items())]})
    extended = [c for c in cases if c.of_type("deadline_extended")]
    lessons = sorted(({"ref": c.ref, "date": calendar.local(e.at).date().isoformat(),
                       "text": str(e.detail.get("text", "")) if lessons_text else "",
                       "removed": "text" not in e.detail}
                      for c in cases for e in c.of_type("lesson")), key=lambda x: (x["date"], x["ref"]))
    statuses = Counter(c.status for c in cases)
    return {
        "period": {"from": start.isoformat(), "to": end.isoformat(), "made": calendar.local(now).isoformat(
            timespec="minutes")},
        "cases": len(cases),
        "open": sum(1 for c in cases if c.status in ("open", "escalated")),
        "by_month": [{"key": f"{y:04d}-{m:02d}", "count": by_month[(y, m)]} for y, m in months(start, end)],
        "by_procedure": _counts(c.procedure for c in cases),
        "by_category": _counts(c.category for c in cases),
        "by_channel": _counts((c.channel for c in cases), CHANNELS),
        "on_behalf": sum(1 for c in cases if c.channel in ON_BEHALF),
        "outcomes": _counts(c.outcome or ("still open" if c.status in ("open", "escalated") else c.status)
                            for c in cases),
        "statuses": [{"key": k, "count": n} for k, n in sorted(statuses.items())],
        "responses": [responses[name].figures() for name, _ in RESPONSES],
        "reviews": [reviews[stage].figures() for stage in (2, 3)],
        "escalations": escalations,
        "escalation_requests": sum(len(c.of_type("escalation_requested")) for c in cases),
        "escalations_declined": sum(len(c.of_type("escalation_declined")) for c in cases),
        "extensions": {"given": sum(len(c.of_type("deadline_extended")) for c in cases), "cases": len(extended)},
        "restrictions": [{"key": label, "count": sum(len(c.of_type(kind)) for c in cases)}
                         for kind, label in RESTRICTION_EVENTS],
        "restricted_cases": sum(1 for c in cases if c.of_type("restriction_imposed")),
        "mentor_actions": _counts(a for c in cases for a in c.mentor_actions),
        "unfiled": [{"key": k, "count": n} for k, n in sorted((unfiled or {}).items())],
        "lessons": lessons,
        "data_requests": _requests(requests, calendar, now),
    }


def _requests(requests: Sequence[CaseFacts], calendar: WorkingCalendar, now: datetime) -> dict[str, Any]:
    answered = Promise("Answered within the law's deadline")
    for case in requests:
        deadline = _deadline(case, DATA_REQUEST_DEADLINE, 1)
        if deadline is not None:
            answered.add(deadline, case.opened_at, now, calendar)
    kinds = Counter(str(c.of_type("data_request")[-1].detail.get("kind", "not said")) if c.of_type("data_request")
                    else "not said" for c in requests)
    return {"total": len(requests), "by_kind": [{"key": k, "count": n} for k, n in sorted(kinds.items())],
            "outcomes": _counts(c.outcome or ("still open" if c.status in ("open", "escalated") else c.status)
                                for c in requests),
            "extended": sum(1 for c in requests if c.of_type("deadline_extended")),
            "on_time": answered.figures()}


def _when(calendar: WorkingCalendar, value: datetime | None) -> str:
    return calendar.local(value).date().isoformat() if value is not None else ""


def csv_row(case: CaseFacts, calendar: WorkingCalendar, now: datetime) -> dict[str, Any]:
    """One case as a spreadsheet row (CSV_FIELDS): figures only, no names, addresses or words."""
    opened = calendar.local(case.opened_at).date()
    row: dict[str, Any] = {
        "ref": case.ref, "opened": opened.isoformat(), "month": opened.strftime("%Y-%m"), "channel": case.channel,
        "on_behalf": "yes" if case.channel in ON_BEHALF else "no", "procedure": case.procedure,
        "category": case.category, "status": case.status, "outcome": case.outcome or "",
        "stage_reached": case.stage_reached, "escalated": "yes" if case.stage_reached > 1 else "no",
        "closed": _when(calendar, case.closed_at), "extensions": len(case.of_type("deadline_extended")),
        "restricted": "yes" if case.of_type("restriction_imposed") else "no",
        "mentor_actions": ";".join(case.mentor_actions), "lessons": len(case.of_type("lesson")),
        "anonymised": "yes" if case.anonymised else "no",
    }
    for name, _ in RESPONSES:
        deadline = _deadline(case, name, 1)
        met = deadline.met_at if deadline else None
        row[f"{name}_due"] = _when(calendar, deadline.due_at) if deadline else ""
        row[f"{name}_met"] = _when(calendar, met)
        if deadline is None:
            row[f"{name}_on_time"] = ""
        elif met is None:
            row[f"{name}_on_time"] = "no" if deadline.due_at < now else "not yet due"
        else:
            row[f"{name}_on_time"] = "yes" if met <= deadline.due_at else "no"
        row[f"{name}_working_days"] = calendar.working_days_between(case.opened_at, met) if met else ""
    return row
