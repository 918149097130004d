"""The complaints procedures as data (data/procedures.toml): stages, deadlines, letters and signposting.

Nothing here knows one procedure from another; a new stage or a changed promise is an edit to the
TOML file, which is checked strictly on loading so a typo stops the bot at start-up, not mid-case.
The file is read by ``mailbot.data_files``; this module parses its text.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mailbot.domain.categories import CATEGORIES
from mailbot.domain.workdays import DEADLINE_UNITS, WorkingCalendar

RECEIPT = "receipt"
ESCALATION = "escalation"
REVIEWER_ROLES = frozenset(
    {"assigned_contact", "complaints_team", "coordinator", "regional_manager", "head_of_delivery", "smt", "ceo"}
)
# The steps of a case that send a letter; "open" is the one every procedure needs.
TRANSITIONS = ("open", "extend", "escalate", "resolve")
# The router (directory.choose_procedure) sends every complaint to one of these, so each must exist.
REQUIRED_PROCEDURES = ("external", "mentee", "mentor", "staff")
APPLIES_TO_ALL = "all"
REPLY, CEO_DIRECT = "reply", "ceo_direct"
# Statuses in which the procedure's clocks run.
OPEN_STATUSES = ("open", "awaiting_staff")
# What each deadline asks of the case's owner, as a staff notification says it.
DEADLINE_NEEDS = {
    "first_response": "a first response to the complainant (reply to this email)",
    "full_response": "a full response (reply with #full)",
    "resolution": "the outcome (#resolve)",
    "stage_response": "the review's outcome (#resolve)",
    "suspension_decision": "the decision on the mentor's suspension",
    "data_request_response": "the answer to the request about personal data (#resolve answered|refused)",
}
ENTRIES = (REPLY, CEO_DIRECT)


class ProcedureFileError(Exception):
    """The procedures file cannot be used; the message is one line naming the file and what is wrong."""


@dataclass(frozen=True)
class DeadlineSpec:
    name: str
    amount: int
    unit: str  # one of workdays.DEADLINE_UNITS
    counts_from: str  # RECEIPT for stage 1, ESCALATION for later stages


@dataclass(frozen=True)
class Stage:
    number: int
    label: str  # as the published text names it, e.g. "Stage 2: review by the Senior Management Team"
    reviewer_role: str  # one of REVIEWER_ROLES
    reviewer_label: str  # for letters: "the Senior Management Team"
    deadlines: tuple[DeadlineSpec, ...]
    # How a complainant reaches this stage: REPLY (they answer the outcome and are escalated) or
    # CEO_DIRECT (they write to the Chief Executive directly, at the address the letters give).
    entry: str = "reply"


@dataclass(frozen=True)
class Procedure:
    key: str
    title: str
    stages: tuple[Stage, ...]
    letters: dict[str, str] = field(hash=False)  # transition -> template name
    closes_on_open_as: str | None  # a case outcome, e.g. "redirected" for staff
    assumption: str | None = None  # set where the procedure is our guess, not published text

    def stage(self, n: int) -> Stage:
        for stage in self.stages:
            if stage.number == n:
                return stage
        raise ValueError(f"the {self.key} procedure has no stage {n} (it has 1 to {self.last_stage})")

    @property
    def last_stage(self) -> int:
        return self.stages[-1].number


@dataclass(frozen=True)
class Signpost:
    key: str
    name: str
    phone: str | None
    website: str
    applies_to: str  # APPLIES_TO_ALL or a category
    notify_within_weeks: int | None = None


def opening_letters(procedures: Mapping[str, Procedure]) -> list[str]:
    """The letters cases are opened with, each once: every procedure's "open" letter (the acknowledgement where
    one names none)."""
    return sorted({procedure.letters.get("open", "acknowledgement") for procedure in procedures.values()})


def next_stage_offered(procedure: Procedure, number: int) -> Stage | None:
    """The stage a complainant not satisfied at stage ``number`` may go on to, or None when there is none.

    A Chief Executive's outcome is the last word inside the charity: the next stage is not offered after
    it when that stage is the Chief Executive again (the external procedure's review by the CEO, then
    "contact the CEO directly"); the regulators' signposting remains.
    """
    if number >= procedure.last_stage:
        return None
    current, following = procedure.stage(number), procedure.stage(number + 1)
    if current.reviewer_role == following.reviewer_role == "ceo":
        return None
    return following


def promise(spec: DeadlineSpec) -> str:
    """A deadline as the procedures word it: "within 7 working days", "within 14 days", "within 24 hours"."""
    unit = {"working_days": "working day", "days": "day", "hours": "hour"}.get(spec.unit, spec.unit)
    return f"within {spec.amount} {unit}{'s' if spec.amount != 1 else ''}"


def stage_deadlines(
    procedure: Procedure, stage: int, started_at: datetime, calendar: WorkingCalendar
) -> dict[str, datetime]:
    """Every deadline of one stage, by name, counted from when the stage started (receipt or escalation)."""
    specs = procedure.stage(stage).deadlines
    return {spec.name: calendar.deadline(started_at, spec.amount, spec.unit) for spec in specs}


def signposting(
    signposts: tuple[Signpost, ...], category: str, outcome_at: datetime, calendar: WorkingCalendar
) -> list[dict[str, str]]:
    """The "if you are still unhappy" paragraphs for an outcome letter, in the file's order.

    Each is a dict with key, name, phone ("" if none), website and notify_by (a GOV.UK date, or "").
    """
    chosen = [s for s in signposts if s.applies_to in (APPLIES_TO_ALL, category)]
    outcome_day = calendar.local(outcome_at).date()
    return [
        {
            "key": s.key,
            "name": s.name,
            "phone": s.phone or "",
            "website": s.website,
            "notify_by": (
                calendar.format_date(outcome_day + timedelta(weeks=s.notify_within_weeks))
                if s.notify_within_weeks
                else ""
            ),
        }
        for s in chosen
    ]


def parse_procedures(text: str, source: str) -> dict[str, Procedure]:
    """Every procedure in the file's text by key; raises ProcedureFileError (naming ``source``) on anything it
    cannot trust."""
    document = _parse(text, source)
    try:
        table = _table(document, "procedures", "[procedures]")
        for key in REQUIRED_PROCEDURES:
            if key not in table:
                routed = ", ".join(REQUIRED_PROCEDURES)
                raise _Invalid(f"procedures.{key}: missing (every complaint is routed to one of {routed})")
        return {key: _procedure(key, _table(table, key, f"procedures.{key}")) for key in table}
    except _Invalid as problem:
        raise ProcedureFileError(f"{source}: {problem}") from None


def parse_signposts(text: str, source: str) -> tuple[Signpost, ...]:
    """The regulators an outcome letter points to, from the file's [signposting] table."""
    document = _parse(text, source)
    try:
        table = _table(document, "signposting", "[signposting]")
        return tuple(_signpost(key, _table(table, key, f"signposting.{key}")) for key in table)
    except _Invalid as problem:
        raise ProcedureFileError(f"{source}: {problem}") from None


class _Invalid(Exception):
    """A problem found while checking the document; load_* adds the file name."""


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already says "(at line N, column M)".
        raise ProcedureFileError(f"{source}: not valid TOML: {exc}") from None


def _procedure(key: str, table: dict[str, Any]) -> Procedure:
    where = f"procedures.{key}"
    _only(table, {"title", "letters", "stages", "closes_on_open_as", "assumption"}, where)
    stages_table = table.get("stages")
    if not isinstance(stages_table, list) or not stages_table:
        raise _Invalid(f"{where}: needs at least one [[{where}.stages]] (stage 1 is missing)")
    stages = tuple(_stage(stage, f"{where}.stages[{i}]") for i, stage in enumerate(stages_table))
    numbers = [stage.number for stage in stages]
    if numbers != list(range(1, len(stages) + 1)):
        raise _Invalid(f"{where}: stages must be numbered 1, 2, 3... in order, not {numbers}")
    closes_on_open_as = _optional_text(table, "closes_on_open_as", where)
    letters = _letters(_table(table, "letters", f"{where}.letters"), f"{where}.letters")
    # The engine will ask for these letters, so a missing one must fail now rather than mid-case.
    if len(stages) > 1 and "escalate" not in letters:
        raise _Invalid(f"{where}.letters: has {len(stages)} stages but no 'escalate' letter")
    if closes_on_open_as is None and "resolve" not in letters:
        raise _Invalid(f"{where}.letters: needs a 'resolve' letter (or closes_on_open_as)")
    return Procedure(
        key=key,
        title=_text(table, "title", where),
        stages=stages,
        letters=letters,
        closes_on_open_as=closes_on_open_as,
        assumption=_optional_text(table, "assumption", where),
    )


def _stage(table: Any, where: str) -> Stage:
    if not isinstance(table, dict):
        raise _Invalid(f"{where}: must be a table")
    _only(table, {"number", "label", "reviewer_role", "reviewer_label", "deadlines", "entry"}, where)
    number = _integer(table, "number", where, minimum=1)
    role = _text(table, "reviewer_role", where)
    if role not in REVIEWER_ROLES:
        roles = ", ".join(sorted(REVIEWER_ROLES))
        raise _Invalid(f"{where}.reviewer_role: unknown role {role!r} (expected one of {roles})")
    deadlines_list = table.get("deadlines")
    if not isinstance(deadlines_list, list):
        raise _Invalid(f"{where}.deadlines: missing or not a list (use [] for none)")
    counts_from = RECEIPT if number == 1 else ESCALATION
    deadlines = tuple(_deadline(d, f"{where}.deadlines[{i}]", counts_from) for i, d in enumerate(deadlines_list))
    names = [d.name for d in deadlines]
    if len(set(names)) != len(names):
        raise _Invalid(f"{where}.deadlines: a deadline name is used twice in {names}")
    entry = table.get("entry", REPLY)
    if entry not in ENTRIES:
        raise _Invalid(f"{where}.entry: must be one of {', '.join(ENTRIES)}, not {entry!r}")
    return Stage(number, _text(table, "label", where), role, _text(table, "reviewer_label", where), deadlines,
                 entry)


def _deadline(table: Any, where: str, expected_counts_from: str) -> DeadlineSpec:
    if not isinstance(table, dict):
        raise _Invalid(f"{where}: must be a table like {{ name = ..., amount = ..., unit = ..., counts_from = ... }}")
    _only(table, {"name", "amount", "unit", "counts_from"}, where)
    unit = _text(table, "unit", where)
    if unit not in DEADLINE_UNITS:
        raise _Invalid(f"{where}.unit: unknown unit {unit!r} (expected one of {', '.join(DEADLINE_UNITS)})")
    counts_from = _text(table, "counts_from", where)
    # Stage 1 starts when the complaint arrives and every later stage when it is escalated; anything
    # else would make the deadline depend on a moment the engine does not pass in.
    if counts_from != expected_counts_from:
        raise _Invalid(f"{where}.counts_from: must be {expected_counts_from!r} in this stage, not {counts_from!r}")
    return DeadlineSpec(_text(table, "name", where), _integer(table, "amount", where, minimum=0), unit, counts_from)


def _letters(table: dict[str, Any], where: str) -> dict[str, str]:
    _only(table, set(TRANSITIONS), where)
    if "open" not in table:
        raise _Invalid(f"{where}: needs an 'open' letter")
    return {transition: _text(table, transition, where) for transition in table}


def _signpost(key: str, table: dict[str, Any]) -> Signpost:
    where = f"signposting.{key}"
    _only(table, {"name", "phone", "website", "applies_to", "notify_within_weeks"}, where)
    applies_to = _text(table, "applies_to", where)
    if applies_to != APPLIES_TO_ALL and applies_to not in CATEGORIES:
        categories = ", ".join(CATEGORIES)
        raise _Invalid(f"{where}.applies_to: {applies_to!r} is neither 'all' nor a category ({categories})")
    weeks = _integer(table, "notify_within_weeks", where, minimum=1) if "notify_within_weeks" in table else None
    return Signpost(
        key=key,
        name=_text(table, "name", where),
        phone=_optional_text(table, "phone", where),
        website=_text(table, "website", where),
        applies_to=applies_to,
        notify_within_weeks=weeks,
    )


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    # Unknown keys are refused because they are nearly always typos ("ammount") that would otherwise be ignored.
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _Invalid(f"{where}: unknown setting {unknown[0]!r} (expected {', '.join(sorted(allowed))})")


def _table(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """parent[key], which must be a table; `where` is its full dotted name for the message."""
    value = parent.get(key)
    if not isinstance(value, dict):
        raise _Invalid(f"{where}: missing or not a table")
    return value


def _text(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"{where}.{key}: missing or not a non-empty string")
    return value


def _optional_text(table: dict[str, Any], key: str, where: str) -> str | None:
    return _text(table, key, where) if key in table else None


def _integer(table: dict[str, Any], key: str, where: str, minimum: int) -> int:
    value = table.get(key)
    # bool is an int in Python, but `amount = true` is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _Invalid(f"{where}.{key}: must be a whole number of at least {minimum}, not {value!r}")
    return value
