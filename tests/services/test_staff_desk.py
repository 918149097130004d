"""The staff desk, table-driven: what a member of staff's reply in a case thread does.

Every row opens a case from an outsider (owned by the complaints team), has one member of staff reply
through the case's signed address, and checks the letters that reply queued, the case afterwards and
the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.services.conftest import World, mail

JANE = "jane@example.com"
PRIYA = "priya.shah@1mm.org.uk"  # complaints team: the case's owner
SAM = "sam.carter@1mm.org.uk"  # head of delivery and SMT
TOM = "tom.okafor@1mm.org.uk"  # a coordinator
JO = "jo.mensah@1mm.org.uk"  # safeguarding lead


@dataclass(frozen=True)
class Reply:
    name: str
    body: str
    letters: tuple[tuple[str, str], ...]  # (template, recipient) queued, in order
    status: str = "open"
    stage: int = 1
    assignee: str = PRIYA
    event: str = ""  # an event the reply must leave on the case
    says: str = ""  # words the first letter must carry
    frm: str = PRIYA


REPLIES = [
    Reply("plain words go to the complainant", "Thank you, we are looking into this and will write by Friday.",
          (("staff-reply", JANE),), says="we are looking into this"),
    Reply("a note stays inside", "#note\nCalled the venue; they remember the evening.",
          (("command-result", PRIYA),), event="internal_note"),
    Reply("an outcome closes the case with the staff member's words",
          "#resolve partly-upheld\nWe agree the session should not have been cancelled at short notice.",
          (("outcome", JANE), ("command-result", PRIYA)), status="resolved",
          says="should not have been cancelled at short notice"),
    Reply("an escalation starts the next stage", "#escalate", (("escalation", JANE), ("command-result", PRIYA)),
          stage=2, event="escalated"),
    Reply("more time is asked for with a reason", "#extend 2026-12-18 we are waiting for the venue's records",
          (("extension", JANE), ("command-result", PRIYA)), event="deadline_extended",
          says="Friday 18 December 2026"),
    Reply("a new owner hears of the case", f"#assign {TOM}",
          (("staff-notification", TOM), ("command-result", PRIYA)), assignee=TOM),
    Reply("a safeguarding concern alerts the lead", "#safeguarding",
          (("safeguarding-alert", JO), ("command-result", PRIYA)), event="safeguarding_alert"),
    Reply("an unknown command changes nothing and says why", "#frobnicate now",
          (("command-result", PRIYA),), event="command_refused", says="#frobnicate"),
    Reply("an outcome with no words is refused", "#resolve upheld",
          (("command-result", PRIYA),), event="command_refused", says="needs the outcome letter's text"),
    Reply("a decision kept for senior staff is refused to others",
          "#warn the same points every day", (("command-result", PRIYA),), event="command_refused",
          says="needs the ceo or smt role"),
    Reply("the same decision from a senior manager is carried out", "#warn the same points every day",
          (("restriction-warning", JANE), ("command-result", SAM)), event="restriction_warned", frm=SAM),
    Reply("a reply with nothing above the quote sends nothing", "> Thank you for contacting One Million Mentors.",
          (("command-result", PRIYA),), event="staff_reply_not_relayed", says="no text of its own"),
]


@pytest.mark.parametrize("row", REPLIES, ids=[r.name for r in REPLIES])
def test_staff_reply(world: World, row: Reply) -> None:
    ref = world.receive(mail(frm=f"Jane Doe <{JANE}>")).ref
    assert ref is not None
    world.take_letters()
    world.staff_reply(ref, row.body, frm=row.frm)
    letters = world.take_letters()
    assert [(letter.kind, letter.to) for letter in letters] == list(row.letters)
    case = world.case(ref)
    assert (case.status, case.stage, case.assignee) == (row.status, row.stage, row.assignee)
    if row.event:
        assert row.event in world.events(ref)
    if row.says:
        assert row.says in " ".join(letters[0].text.split())


def test_a_refused_reply_is_all_or_nothing(world: World) -> None:
    """Words and a valid command with one bad command: nothing is relayed and nothing changes."""
    ref = world.receive(mail(frm=f"Jane Doe <{JANE}>")).ref
    assert ref is not None
    world.take_letters()
    world.staff_reply(ref, f"#assign {TOM}\n#frobnicate\nDear Jane, we are on it.")
    assert [(letter.kind, letter.to) for letter in world.take_letters()] == [("command-result", PRIYA)]
    assert world.case(ref).assignee == PRIYA


def test_the_first_reply_meets_the_first_response_deadline(world: World) -> None:
    ref = world.receive(mail(frm=f"Jane Doe <{JANE}>")).ref
    assert ref is not None
    world.staff_reply(ref, "Thank you, we are looking into this.")
    assert "deadlines_met" in world.events(ref)
    world.staff_reply(ref, "#note\nnothing for Jane")
    assert world.events(ref).count("deadlines_met") == 1
