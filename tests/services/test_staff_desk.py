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
CEO = "alex.morgan@1mm.org.uk"


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
    Reply("an escalation starts the next stage with its reviewer", "#escalate",
          (("escalation", JANE), ("escalation-review", f"{CEO},{PRIYA}"), ("command-result", PRIYA)),
          stage=2, event="escalated", assignee=CEO),
    Reply("a case cannot be merged into itself", "#merge 1MM-2026-0001", (("command-result", PRIYA),),
          event="command_refused", says="cannot be merged into itself"),
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
    Reply("a genuine enquiry closed as not a complaint is told what happens instead",
          "#not-a-complaint\nI have passed your question about volunteering to our recruitment team.",
          (("not-a-complaint", JANE), ("command-result", PRIYA)), status="closed",
          says="passed your question about volunteering to our recruitment team"),
    Reply("with no words of our own it still gets a kind default", "#not-a-complaint",
          (("not-a-complaint", JANE), ("command-result", PRIYA)), status="closed",
          says="passed it to the right person"),
    Reply("spam is closed in silence", "#not-a-complaint spam\nCrypto offers.", (("command-result", PRIYA),),
          status="closed", event="closed"),
    Reply("an outcome outside our remit says so and still signposts",
          "#resolve outside-remit\nThe venue is run by the council, who can be reached at their own address.",
          (("outcome", JANE), ("command-result", PRIYA)), status="resolved",
          says="falls outside our responsibilities as a charity"),
    Reply("setting the category it already has changes nothing and says so", "#category service",
          (("command-result", PRIYA),), says="already service"),
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


AS_PEOPLE_WRITE = ("Dear Jane,\n\nWe have moved your session to Thursday.\n\nThanks,\nPriya\n"
                   "Complaints Officer | One Million Mentors\nT: 020 7946 0000\nwww.1mm.org.uk")


@pytest.mark.parametrize("command, template", [("", "staff-reply"), ("#resolve upheld\n", "outcome"),
                                               ("#stay\n", "escalation-declined")])
def test_a_letter_written_as_people_write_has_one_greeting_and_one_signature(
        world: World, command: str, template: str) -> None:
    ref = world.receive(mail(frm=f"Jane Doe <{JANE}>")).ref
    assert ref is not None
    if template == "escalation-declined":
        world.staff_reply(ref, "#resolve upheld\nDone.")
        world.receive(mail(frm=JANE, subject=f"Re: [{ref}] The outcome", body="When will it start?", date=world.now))
    world.take_letters()
    world.staff_reply(ref, command + AS_PEOPLE_WRITE)
    letter = next(letter for letter in world.take_letters() if letter.kind == template)
    text = letter.text
    assert text.count("Dear") == 1 and text.lstrip().startswith("Dear Jane,")
    assert text.count("Priya") == 1 and "Thanks,\r\nPriya" in text
    assert "Complaints Officer" not in text and "020 7946" not in text


def test_words_without_a_greeting_or_signature_get_ours(world: World) -> None:
    ref = world.receive(mail(frm=f"Jane Doe <{JANE}>")).ref
    assert ref is not None
    world.take_letters()
    world.staff_reply(ref, "We have moved your session to Thursday.")
    text = world.take_letters()[0].text
    assert text.lstrip().startswith("Dear Jane Doe,")
    assert "Thursday.\r\n\r\nPriya Shah\r\nOne Million Mentors" in text


def test_lesson_hold_and_release_are_recorded_on_the_case(world: World) -> None:
    ref = world.receive(mail()).ref
    assert ref
    world.staff_reply(ref, "#lesson Call-back requests need an owner the same day.")
    world.staff_reply(ref, "#hold a solicitor's letter arrived")
    assert world.case(ref).held_reason == "a solicitor's letter arrived"
    world.staff_reply(ref, "#release")
    assert world.case(ref).held_reason is None
    events = world.events(ref)
    assert "lesson" in events and "case_held" in events and "case_released" in events
