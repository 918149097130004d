"""Who reviews a case at a later stage, and who a complaint is about: table-driven over a small directory."""

from __future__ import annotations

import pytest

from mailbot.domain.directory import Directory, Reviewers, StaffMember, staff_named_in, stage_reviewers

STAFF = (
    StaffMember("Priya Shah", "priya@1mm.org.uk", frozenset({"complaints_team"}), ""),
    StaffMember("Tom Okafor", "tom@1mm.org.uk", frozenset({"coordinator"}), "London"),
    StaffMember("Sam Carter", "sam@1mm.org.uk", frozenset({"smt", "head_of_delivery"}), ""),
    StaffMember("Jo Mensah", "jo@1mm.org.uk", frozenset({"smt"}), ""),
    StaffMember("Alex Morgan", "alex@1mm.org.uk", frozenset({"smt", "ceo"}), ""),
)
DIRECTORY = Directory(STAFF, ())

ROWS = [
    # role, the stage-1 assignee, whom the complaint is about -> the reviewers
    ("smt", "tom@1mm.org.uk", set(),
     Reviewers("sam@1mm.org.uk", ("jo@1mm.org.uk", "alex@1mm.org.uk", "tom@1mm.org.uk"))),
    ("smt", "tom@1mm.org.uk", {"tom@1mm.org.uk"},
     Reviewers("sam@1mm.org.uk", ("jo@1mm.org.uk", "alex@1mm.org.uk"))),
    ("smt", "tom@1mm.org.uk", {"sam@1mm.org.uk"},
     Reviewers("jo@1mm.org.uk", ("alex@1mm.org.uk", "tom@1mm.org.uk"), ("sam@1mm.org.uk",))),
    ("ceo", "priya@1mm.org.uk", set(), Reviewers("alex@1mm.org.uk", ("priya@1mm.org.uk",))),
    ("ceo", "alex@1mm.org.uk", set(), Reviewers("alex@1mm.org.uk", ())),
    ("ceo", "priya@1mm.org.uk", {"alex@1mm.org.uk"}, Reviewers(None, ("priya@1mm.org.uk",), ("alex@1mm.org.uk",))),
    ("assigned_contact", "tom@1mm.org.uk", set(), Reviewers("tom@1mm.org.uk")),
    ("regional_manager", None, set(), Reviewers(None)),
]


@pytest.mark.parametrize("role, assignee, about, expected", ROWS)
def test_stage_reviewers(role: str, assignee: str | None, about: set[str], expected: Reviewers) -> None:
    assert stage_reviewers(DIRECTORY, role, assignee, frozenset(about)) == expected


NAMED = [
    ("My coordinator Tom Okafor keeps cancelling.", {"tom@1mm.org.uk"}),
    ("Mr Carter was rude to me.", {"sam@1mm.org.uk"}),
    ("I wrote to jo@1mm.org.uk and heard nothing.", {"jo@1mm.org.uk"}),
    ("TOM   OKAFOR said so", {"tom@1mm.org.uk"}),
    ("Tom was lovely; it was the venue.", set()),  # a first name alone is not enough to take a case from someone
    ("Tom Okaforth is not on your staff.", set()),
    ("Ms Shah and Mr Okafor both said no.", {"priya@1mm.org.uk", "tom@1mm.org.uk"}),
]


@pytest.mark.parametrize("text, expected", NAMED)
def test_staff_named_in(text: str, expected: set[str]) -> None:
    assert staff_named_in(DIRECTORY, text) == frozenset(expected)
