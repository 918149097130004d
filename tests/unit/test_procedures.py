"""The shipped procedures file: every promise in the published text is a deadline the bot computes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailbot.data_files import load_procedures, load_signposts
from mailbot.domain.procedures import (
    CEO_DIRECT,
    ProcedureFileError,
    next_stage_offered,
    opening_letters,
    signposting,
    stage_deadlines,
)
from mailbot.domain.workdays import WorkingCalendar

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "procedures.toml"
LONDON = ZoneInfo("Europe/London")
CALENDAR = WorkingCalendar()
PROCEDURES = load_procedures(SHIPPED)
SIGNPOSTS = load_signposts(SHIPPED)


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=LONDON)


def cob(y: int, mo: int, d: int) -> datetime:
    return at(y, mo, d, 17, 30)


@pytest.mark.parametrize(
    ("key", "number", "label", "role", "reviewer"),
    [
        ("external", 1, "Stage 1", "assigned_contact", "the complaints team"),
        ("external", 2, "Stage 1 (escalated to the CEO)", "ceo", "our Chief Executive"),
        ("external", 3, "Stage 2 (contacting the CEO directly)", "ceo", "our Chief Executive"),
        ("mentee", 1, "Stage 1", "assigned_contact", "your 1MM staff contact"),
        ("mentee", 2, "Stage 2 (review by the Senior Management Team)", "smt", "the Senior Management Team"),
        ("mentee", 3, "Stage 3 (contacting the CEO directly)", "ceo", "our Chief Executive"),
        ("mentor", 2, "Stage 2 (review by the Senior Management Team)", "smt", "the Senior Management Team"),
        ("staff", 1, "Redirected to the grievance procedure", "assigned_contact", "the complaints team"),
    ],
)
def test_stages_name_who_reviews(key: str, number: int, label: str, role: str, reviewer: str) -> None:
    stage = PROCEDURES[key].stage(number)
    assert (stage.label, stage.reviewer_role, stage.reviewer_label) == (label, role, reviewer)


CASE_LETTERS = {"open": "acknowledgement", "extend": "extension", "escalate": "escalation", "resolve": "outcome"}


@pytest.mark.parametrize(
    ("key", "last_stage", "closes_on_open_as", "letters"),
    [
        ("external", 3, None, CASE_LETTERS),
        ("mentee", 3, None, CASE_LETTERS),
        ("mentor", 3, None, CASE_LETTERS),
        ("staff", 1, "redirected", {"open": "staff-redirect"}),
    ],
)
def test_procedures_shape(key: str, last_stage: int, closes_on_open_as: str | None, letters: dict[str, str]) -> None:
    procedure = PROCEDURES[key]
    shape = (procedure.last_stage, procedure.closes_on_open_as, procedure.letters)
    assert shape == (last_stage, closes_on_open_as, letters)


def test_the_mentor_procedure_is_marked_as_an_assumption() -> None:
    assert PROCEDURES["mentor"].assumption
    assert [p.key for p in PROCEDURES.values() if p.assumption] == ["mentor"]


def test_asking_for_a_stage_that_does_not_exist_says_so() -> None:
    with pytest.raises(ValueError, match="the staff procedure has no stage 2"):
        PROCEDURES["staff"].stage(2)


@pytest.mark.parametrize(
    ("key", "stage", "started_at", "expected"),
    [
        # External, Monday morning: "by the end of the following working day" is Tuesday.
        (
            "external", 1, at(2026, 12, 14, 10),
            {"first_response": cob(2026, 12, 15), "full_response": cob(2026, 12, 16), "resolution": cob(2027, 1, 6)},
        ),
        # External, Monday 20:00: still Monday's complaint, so the following working day is Tuesday.
        (
            "external", 1, at(2026, 12, 14, 20),
            {"first_response": cob(2026, 12, 15), "full_response": cob(2026, 12, 16), "resolution": cob(2027, 1, 6)},
        ),
        # External, Friday 18:00: answered by the end of Monday, as the complainant reads it.
        (
            "external", 1, at(2026, 12, 11, 18),
            {"first_response": cob(2026, 12, 14), "full_response": cob(2026, 12, 15), "resolution": cob(2027, 1, 5)},
        ),
        # External, Friday 16:00 before Christmas: 14 working days skip Dec 25, Dec 28 and Jan 1.
        (
            "external", 1, at(2026, 12, 18, 16),
            {"first_response": cob(2026, 12, 21), "full_response": cob(2026, 12, 22), "resolution": cob(2027, 1, 12)},
        ),
        # Mentee, same moment: "within 24 hours" is Saturday 16:00, whatever the office hours.
        (
            "mentee", 1, at(2026, 12, 18, 16),
            {
                "first_response": at(2026, 12, 19, 16),
                "full_response": cob(2026, 12, 22),
                "resolution": cob(2027, 1, 12),
            },
        ),
        # Mentee, Saturday noon the day before the clocks go forward: 24 elapsed hours is 13:00 BST.
        (
            "mentee", 1, at(2026, 3, 28, 12),
            {"first_response": at(2026, 3, 29, 13), "full_response": cob(2026, 3, 31), "resolution": cob(2026, 4, 20)},
        ),
        # Mentee, arriving at 23:30 UTC on Saturday 24 October (00:30 BST on Sunday, the night the clocks go
        # back): 24 elapsed hours later is 23:30 GMT on Sunday, and working days count from Sunday 25th.
        (
            "mentee", 1, datetime(2026, 10, 24, 23, 30, tzinfo=UTC),
            {
                "first_response": at(2026, 10, 25, 23, 30),
                "full_response": cob(2026, 10, 27),
                "resolution": cob(2026, 11, 12),
            },
        ),
        # External stage 2 (the CEO's review), escalated on the Thursday before Easter: 7 working days.
        ("external", 2, at(2026, 4, 2, 11), {"stage_response": cob(2026, 4, 15)}),
        # External stage 3 (writing to the CEO): 14 calendar days, holidays included.
        ("external", 3, at(2026, 12, 18, 16), {"stage_response": at(2027, 1, 1, 23, 59, 59)}),
        # Mentee stage 2 (the Senior Management Team), escalated on Christmas Eve evening.
        ("mentee", 2, at(2026, 12, 24, 18), {"stage_response": cob(2027, 1, 7)}),
        ("mentee", 3, at(2027, 3, 25, 9), {"stage_response": at(2027, 4, 8, 23, 59, 59)}),
        # Staff are redirected to the grievance procedure: nothing falls due.
        ("staff", 1, at(2026, 12, 14, 10), {}),
    ],
)
def test_stage_deadlines(key: str, stage: int, started_at: datetime, expected: dict[str, datetime]) -> None:
    assert stage_deadlines(PROCEDURES[key], stage, started_at, CALENDAR) == expected


@pytest.mark.parametrize("stage", [1, 2, 3])
@pytest.mark.parametrize("started_at", [at(2026, 12, 18, 16), at(2026, 3, 28, 12)])
def test_mentors_are_promised_what_mentees_are(stage: int, started_at: datetime) -> None:
    mentor = stage_deadlines(PROCEDURES["mentor"], stage, started_at, CALENDAR)
    assert mentor == stage_deadlines(PROCEDURES["mentee"], stage, started_at, CALENDAR)


def test_a_christmas_shutdown_moves_working_day_deadlines() -> None:
    shutdown = WorkingCalendar(closures=frozenset(at(2026, 12, d).date() for d in (29, 30, 31)))
    deadlines = stage_deadlines(PROCEDURES["external"], 1, at(2026, 12, 24, 10), shutdown)
    assert deadlines["first_response"] == cob(2027, 1, 4)


CHARITY_COMMISSION = {
    "key": "charity_commission",
    "name": "the Charity Commission",
    "phone": "0845 300 0218",
    "website": "www.charitycommission.gov.uk",
    "notify_by": "",
}
ICO = {
    "key": "ico",
    "name": "the Information Commissioner's Office (ICO)",
    "phone": "",
    "website": "www.ico.org.uk",
    "notify_by": "",
}


def fundraising_regulator(notify_by: str) -> dict[str, str]:
    return {
        "key": "fundraising_regulator",
        "name": "the Fundraising Regulator",
        "phone": "0300 999 3407",
        "website": "www.fundraisingregulator.org.uk",
        "notify_by": notify_by,
    }


@pytest.mark.parametrize(
    ("category", "outcome_at", "expected"),
    [
        ("service", at(2026, 12, 21, 10), [CHARITY_COMMISSION]),
        ("mentor_behaviour", at(2026, 12, 21, 10), [CHARITY_COMMISSION]),
        ("data_protection", at(2026, 12, 21, 10), [CHARITY_COMMISSION, ICO]),
        # "notify them of this within 8 weeks of hearing from us"
        ("fundraising", at(2026, 12, 21, 10), [CHARITY_COMMISSION, fundraising_regulator("Monday 15 February 2027")]),
        # 23:30 UTC on 31 May is 1 June in London; the 8 weeks run from the local date.
        (
            "fundraising",
            datetime(2026, 5, 31, 23, 30, tzinfo=UTC),
            [CHARITY_COMMISSION, fundraising_regulator("Monday 27 July 2026")],
        ),
    ],
)
def test_signposting(category: str, outcome_at: datetime, expected: list[dict[str, str]]) -> None:
    assert signposting(SIGNPOSTS, category, outcome_at, CALENDAR) == expected


SHIPPED_TEXT = SHIPPED.read_text(encoding="utf-8")
STAFF_STAGE = SHIPPED_TEXT[SHIPPED_TEXT.index("[[procedures.staff.stages]]") :]


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ([('title = "Mentee Complaints Procedure"', 'title = "Mentee Complaints Procedure')], "not valid TOML: "),
        (
            [('amount = 14, unit = "days"', 'amount = 14, unit = "weeks"')],
            "procedures.external.stages[2].deadlines[0].unit: unknown unit 'weeks'",
        ),
        (
            [("amount = 7,", "amount = -7,")],
            "procedures.external.stages[1].deadlines[0].amount: must be a whole number of at least 0, not -7",
        ),
        (
            [("amount = 24,", 'amount = "24",')],
            "procedures.mentee.stages[0].deadlines[0].amount: must be a whole number of at least 0, not '24'",
        ),
        ([("amount = 2,", "ammount = 2,")], "procedures.external.stages[0].deadlines[1]: unknown setting 'ammount'"),
        (
            [('reviewer_role = "smt"', 'reviewer_role = "board"')],
            "procedures.mentee.stages[1].reviewer_role: unknown role 'board'",
        ),
        (
            [('counts_from = "escalation"', 'counts_from = "receipt"')],
            "procedures.external.stages[1].deadlines[0].counts_from: must be 'escalation'",
        ),
        (
            [('counts_from = "receipt"', 'counts_from = "escalation"')],
            "procedures.external.stages[0].deadlines[0].counts_from: must be 'receipt'",
        ),
        (
            [('name = "full_response"', 'name = "first_response"')],
            "procedures.external.stages[0].deadlines: a deadline name is used twice",
        ),
        (
            [("number = 2", "number = 3")],
            "procedures.external: stages must be numbered 1, 2, 3... in order, not [1, 3, 3]",
        ),
        ([(STAFF_STAGE, "")], "procedures.staff: needs at least one [[procedures.staff.stages]] (stage 1 is missing)"),
        ([('escalate = "escalation"\n', "")], "procedures.external.letters: has 3 stages but no 'escalate' letter"),
        ([('resolve = "outcome"\n', "")], "procedures.external.letters: needs a 'resolve' letter"),
        (
            [('open = "staff-redirect"', 'opening = "staff-redirect"')],
            "procedures.staff.letters: unknown setting 'opening'",
        ),
        (
            [('closes_on_open_as = "redirected"', 'closes_on_open_as = ""')],
            "procedures.staff.closes_on_open_as: missing or not a non-empty string",
        ),
        ([("[procedures.mentor", "[procedures.mentors")], "procedures.mentor: missing"),
    ],
)
def test_a_broken_procedures_file_is_refused_in_one_line(
    tmp_path: Path, edits: list[tuple[str, str]], message: str
) -> None:
    text = SHIPPED_TEXT
    for old, new in edits:
        assert old in text, f"the test's edit {old!r} no longer matches the shipped file"
        text = text.replace(old, new)
    broken = tmp_path / "procedures.toml"
    broken.write_text(text, encoding="utf-8")
    with pytest.raises(ProcedureFileError) as caught:
        load_procedures(broken)
    assert str(caught.value).startswith(f"{broken}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_toml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "procedures.toml"
    broken.write_text('[procedures.external]\ntitle = "External\n', encoding="utf-8")
    with pytest.raises(ProcedureFileError, match=r"line 2"):
        load_procedures(broken)


@pytest.mark.parametrize(
    ("content", "loader", "message"),
    [
        (b"", load_procedures, "[procedures]: missing or not a table"),
        (b"", load_signposts, "[signposting]: missing or not a table"),
        (b'title = "\xff"', load_procedures, "not UTF-8 text"),
        (
            b'[signposting.x]\nname = "X"\nwebsite = "x.org"\napplies_to = "fund_raising"\n',
            load_signposts,
            "signposting.x.applies_to: 'fund_raising' is neither 'all' nor a category",
        ),
        (
            b'[signposting.x]\nname = "X"\nwebsite = "x.org"\napplies_to = "all"\nnotify_within_weeks = 0\n',
            load_signposts,
            "signposting.x.notify_within_weeks: must be a whole number of at least 1",
        ),
    ],
)
def test_other_bad_files(tmp_path: Path, content: bytes, loader: Callable[[Path], object], message: str) -> None:
    broken = tmp_path / "procedures.toml"
    broken.write_bytes(content)
    with pytest.raises(ProcedureFileError, match="^" + str(broken).replace("\\", "\\\\") + ": ") as caught:
        loader(broken)
    assert message in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ProcedureFileError, match="cannot read"):
        load_procedures(tmp_path / "nowhere.toml")


NEXT_STAGE = [
    # procedure, stage -> the stage offered next (None: the regulators' signposting only)
    ("external", 1, 2),  # "Your complaint will be escalated to the CEO"
    ("external", 2, None),  # the CEO's own review: writing to the CEO directly is not offered again
    ("external", 3, None),
    ("mentee", 1, 2),
    ("mentee", 2, 3),  # the Senior Management Team's outcome offers writing to the CEO directly
    ("mentee", 3, None),
    ("staff", 1, None),
]


@pytest.mark.parametrize("key, stage, offered", NEXT_STAGE)
def test_the_next_stage_offered(key: str, stage: int, offered: int | None) -> None:
    found = next_stage_offered(PROCEDURES[key], stage)
    assert (found.number if found else None) == offered


def test_the_stages_reached_by_writing_to_the_ceo_say_so() -> None:
    direct = {(key, s.number) for key, p in PROCEDURES.items() for s in p.stages if s.entry == CEO_DIRECT}
    assert direct == {("external", 3), ("mentee", 3), ("mentor", 3)}


def test_the_letters_cases_open_with_are_each_procedures_open_letter_once() -> None:
    # What the daemon compiles before its first complaint, and what the digest counts as an acknowledgement.
    expected = sorted({procedure.letters["open"] for procedure in PROCEDURES.values()})
    assert opening_letters(PROCEDURES) == expected
    assert "acknowledgement" in expected and len(expected) < len(PROCEDURES)  # shared letters named once
