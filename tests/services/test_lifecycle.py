"""The case lifecycle, table-driven: what each kind of message does to a case and who hears of it.

Each story runs its earlier steps, then the step under test, and checks what that step queued (letter
and recipient), what the message was filed as, and where the case stands.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from sqlmodel import select

from mailbot.domain.mail import REUSED_MESSAGE_ID
from mailbot.services.correspondence import Correspondence
from mailbot.services.mailbox import Arrival, CursorPosition
from mailbot.services.observe import Unobserved
from mailbot.store.db import session as new_session
from mailbot.store.mailbox_rows import read_cursor
from mailbot.store.models import Case, Event, MailMessage
from tests.samples import dsn_bounce
from tests.services.conftest import World, mail

Step = Callable[[World, str], object]
JANE = "jane@example.com"
AMIRA = "amira.khan@example.org"  # a current mentee; her coordinator is Tom
PRIYA = "priya.shah@1mm.org.uk"  # the complaints team (assigned when nobody else is)
TOM = "tom.okafor@1mm.org.uk"  # coordinator
SAM, JO, ALEX = "sam.carter@1mm.org.uk", "jo.mensah@1mm.org.uk", "alex.morgan@1mm.org.uk"  # SMT, in that order
CEO = ALEX


def ack_id(world: World, ref: str) -> str:
    return next(letter.message_id for letter in world.outbox()
                if letter.kind == "acknowledgement" and letter.subject.startswith(f"[{ref}]"))


def reply(body: str, frm: str = f"Jane Doe <{JANE}>", **headers: str) -> Step:
    """The complainant answering our acknowledgement in their mail client."""
    def step(world: World, ref: str) -> object:
        return world.receive(mail(frm=frm, subject=f"Re: [{ref}] We have received your complaint", body=body,
                                  In_Reply_To=f"<{ack_id(world, ref)}>", date=world.now, **headers))
    return step


def staff(body: str, frm: str = PRIYA) -> Step:
    def step(world: World, ref: str) -> object:
        return world.staff_reply(ref, body, frm=frm)
    return step


def bounce_of_acknowledgement(world: World, ref: str) -> object:
    return world.receive(dsn_bounce(ack_id(world, ref), JANE, ref))


def next_day(world: World, ref: str) -> object:
    world.advance(days=1)
    return None


@dataclass(frozen=True)
class Story:
    name: str
    complaint: dict[str, str]  # the message that opens the case
    before: tuple[Step, ...]  # what happens on the case before the step under test
    step: Step | None  # the step under test (None: the complaint itself)
    letters: tuple[tuple[str, str], ...]  # (template, recipient) of each letter the step queued, in order
    filed_as: str  # what the last message on the case was recorded as
    status: str
    stage: int = 1
    procedure: str = "external"
    assignee: str | None = None  # checked when set


RESOLVED = staff("#resolve not-upheld\nWe looked into this carefully and found the service was as promised.")
RESOLVED_BY_TOM = staff("#resolve not-upheld\nWe looked into this carefully.", frm=TOM)
# The procedure's order: a senior manager's warning first, then the CEO's decision.
RESTRICTED = (staff("#warn the same points every day after the outcome", frm="sam.carter@1mm.org.uk"),
              staff("#restrict acknowledge-only for 3 months because the same points, daily, after the warning",
                    frm="alex.morgan@1mm.org.uk"))

STORIES = [
    Story("a complaint from someone outside", {}, (), None,
          (("acknowledgement", JANE), ("staff-notification", PRIYA)), "new_case", "open"),
    Story("a mentee's complaint goes to their coordinator under the mentee procedure",
          {"frm": "Amira Khan <amira.khan@example.org>"}, (), None,
          (("acknowledgement", "amira.khan@example.org"), ("staff-notification", "tom.okafor@1mm.org.uk")),
          "new_case", "open", procedure="mentee"),
    Story("safeguarding words alert the safeguarding lead at once",
          {"body": "My mentor made me feel unsafe and I want to report abuse."}, (), None,
          (("acknowledgement", JANE), ("staff-notification", PRIYA), ("safeguarding-alert", "jo.mensah@1mm.org.uk")),
          "new_case", "open"),
    Story("a member of staff's own grievance is redirected, not opened as a complaint",
          {"frm": "Tom Okafor <tom.okafor@1mm.org.uk>", "subject": "My manager"}, (), None,
          (("staff-redirect", "tom.okafor@1mm.org.uk"),), "new_case", "redirected", procedure="staff"),
    Story("a web form's mail from noreply@ opens a case for the person in Reply-To",
          {"frm": "Website <noreply@forms.example.org>", "Reply_To": "Pat Smith <pat@example.com>",
           "subject": "Contact form: complaint"}, (), None,
          (("acknowledgement", "pat@example.com"), ("staff-notification", PRIYA)), "new_case", "open"),
    Story("the complainant's reply reaches the case owner", {}, (), reply("Here is the date it happened."),
          (("staff-notification", PRIYA),), "follow_up", "open"),
    Story("an out-of-office answer to our acknowledgement is filed, not answered", {}, (),
          reply("I am away until Monday.", Auto_Submitted="auto-replied"), (), "auto_reply", "open"),
    Story("a bounce of our acknowledgement is filed on the case", {}, (), bounce_of_acknowledgement,
          (), "bounce", "open"),
    Story("a plain request for review of an outcome escalates it to the CEO, the first handler copied", {},
          (RESOLVED,), reply("I am not satisfied with this outcome."),
          (("escalation", JANE), ("escalation-review", f"{CEO},{PRIYA}")), "follow_up", "open", stage=2,
          assignee=CEO),
    Story("dissatisfaction in other words escalates too", {}, (RESOLVED,),
          reply("Frankly this is a whitewash and I do not accept it."),
          (("escalation", JANE), ("escalation-review", f"{CEO},{PRIYA}")), "follow_up", "open", stage=2,
          assignee=CEO),
    Story("a thank-you for the outcome is passed on and changes nothing", {}, (RESOLVED,),
          reply("Thank you for looking into it."), (("staff-notification", PRIYA),), "follow_up", "resolved"),
    Story("a question about the outcome waits for staff to decide", {}, (RESOLVED,),
          reply("When will the new rota start?"), (("staff-notification", PRIYA),), "follow_up", "awaiting_staff"),
    Story("after #stay answers a question, a plain 'not happy' is escalated", {},
          (RESOLVED, reply("When will the new rota start?"), staff("#stay\nThe new rota starts on Monday.")),
          reply("I'm still not happy about any of this."),
          (("escalation", JANE), ("escalation-review", f"{CEO},{PRIYA}")), "follow_up", "open", stage=2,
          assignee=CEO),
    Story("the CEO's outcome is the last word: a further reply is filed for staff", {},
          (RESOLVED, reply("I am not satisfied."),
           staff("#resolve not-upheld\nI have reviewed the complaint and agree with the team.", frm=CEO)),
          reply("I am still not happy."), (("staff-notification", CEO),), "follow_up", "resolved", stage=2,
          assignee=CEO),
    Story("a mentee's escalation goes to the Senior Management Team, the others copied",
          {"frm": f"Amira Khan <{AMIRA}>"}, (RESOLVED_BY_TOM,), reply("I am not happy with this.", frm=AMIRA),
          (("escalation", AMIRA), ("escalation-review", f"{SAM},{JO},{ALEX},{TOM}")), "follow_up", "open",
          stage=2, procedure="mentee", assignee=SAM),
    Story("a complaint about the coordinator never reaches them at stage 2",
          {"frm": f"Amira Khan <{AMIRA}>", "body": "My coordinator Tom Okafor keeps cancelling our sessions."},
          (RESOLVED_BY_TOM,), reply("I am not happy with this.", frm=AMIRA),
          (("escalation", AMIRA), ("escalation-review", f"{SAM},{JO},{ALEX}")), "follow_up", "open",
          stage=2, procedure="mentee", assignee=SAM),
    Story("nor does a complaint naming the first of the Senior Management Team",
          {"frm": f"Amira Khan <{AMIRA}>", "body": "Mr Carter was rude to me at the launch event."},
          (RESOLVED_BY_TOM,), reply("I am not happy with this.", frm=AMIRA),
          (("escalation", AMIRA), ("escalation-review", f"{JO},{ALEX},{TOM}")), "follow_up", "open",
          stage=2, procedure="mentee", assignee=JO),
    Story("nor does anyone the case was moved away from", {"frm": f"Amira Khan <{AMIRA}>"},
          (staff(f"#assign {PRIYA}", frm=TOM), RESOLVED), reply("I am not happy with this.", frm=AMIRA),
          (("escalation", AMIRA), ("escalation-review", f"{SAM},{JO},{ALEX},{PRIYA}")), "follow_up", "open",
          stage=2, procedure="mentee", assignee=SAM),
    Story("a restricted complainant's mail is acknowledged once a day", {}, RESTRICTED,
          reply("Again, the same points."), (("acknowledge-only", JANE),), "restricted_acknowledged", "open"),
    Story("and filed without an answer the second time that day", {}, (*RESTRICTED, reply("Again.")),
          reply("And again."), (), "restricted_filed", "open"),
    Story("and acknowledged again the next working day", {}, (*RESTRICTED, reply("Again."), next_day),
          reply("And again."), (("acknowledge-only", JANE),), "restricted_acknowledged", "open"),
    Story("a challenge to the restriction reaches the case owner", {}, (*RESTRICTED, reply("Again.")),
          reply("I want to challenge the restriction decision."),
          (("staff-notification", PRIYA),), "follow_up", "open"),
    Story("mail from a staff address without the signed reply address is never obeyed", {}, (),
          reply("#resolve upheld\nDone.", frm=f"Priya Shah <{PRIYA}>"),
          (("staff-notification", PRIYA),), "follow_up", "open"),
]


@pytest.mark.parametrize("story", STORIES, ids=[s.name for s in STORIES])
def test_story(world: World, story: Story) -> None:
    opened = world.receive(mail(date=world.now, **story.complaint))
    ref = opened.ref  # type: ignore[attr-defined]
    assert ref is not None
    for step in story.before:
        step(world, ref)
    world.take_letters()
    if story.step is None:
        letters = world.outbox()
    else:
        story.step(world, ref)
        letters = world.take_letters()
    assert [(letter.kind, letter.to) for letter in letters] == list(story.letters)
    assert world.inbound_kinds(ref)[-1] == story.filed_as
    case = world.case(ref)
    assert (case.status, case.stage, case.procedure) == (story.status, story.stage, story.procedure)
    if story.assignee is not None:
        assert case.assignee == story.assignee


def test_a_bounce_marks_the_letter_undelivered(world: World) -> None:
    ref = world.receive(mail()).ref
    assert ref is not None
    bounce_of_acknowledgement(world, ref)
    assert [letter.delivery for letter in world.outbox() if letter.kind == "acknowledgement"] == ["undelivered"]
    assert "letter_undelivered" in world.events(ref)


def test_the_deadlines_the_acknowledgement_promises_are_working_days(world: World) -> None:
    """Received Monday 16 November 2026 under the external procedure: a first reply in 1 working day, a full
    response in 2, resolution in 14 (the weekends skipped)."""
    world.receive(mail())
    ack = next(letter for letter in world.outbox() if letter.kind == "acknowledgement")
    assert "reply to you by the end of Tuesday 17 November 2026" in ack.text
    assert "full response by the end of Wednesday 18 November 2026" in ack.text
    assert "resolve your complaint by the end of Friday 4 December 2026" in ack.text


def on_behalf(world: World, line: str, body: str = "She says the coordinator missed three sessions.",
              authenticated: bool = True) -> object:
    headers = {"Authentication_Results": "mx.1mm.org.uk; dkim=pass header.d=1mm.org.uk; dmarc=pass "
                                         "header.from=1mm.org.uk"} if authenticated else {}
    return world.receive(mail(frm=f"Priya Shah <{PRIYA}>", subject="Phone call from Pat", body=f"{line}\n\n{body}",
                              date=world.now, **headers))


def test_a_complaint_logged_by_phone_opens_a_case_for_the_caller(world: World) -> None:
    world.app.route_config = replace(world.app.route_config, trusted_authserv_id="mx.1mm.org.uk")
    world.app.ingestor.route_config = world.app.route_config
    outcome = on_behalf(world, "#on-behalf-of Pat Smith <pat@example.com> phone")
    ref = outcome.ref  # type: ignore[attr-defined]
    case = world.case(ref)
    assert (case.complainant, case.complainant_name, case.channel, case.procedure) == \
        ("pat@example.com", "Pat Smith", "phone", "external")
    letters = world.take_letters()
    assert [(letter.kind, letter.to) for letter in letters] == [("acknowledgement", "pat@example.com"),
                                                                ("staff-notification", PRIYA)]
    assert letters[0].text.startswith("Dear Pat Smith,")
    assert "missed three sessions" in letters[1].text and "#on-behalf-of" not in letters[1].text


def test_an_unverified_on_behalf_opens_nothing_and_is_shown_to_staff(world: World) -> None:
    world.app.route_config = replace(world.app.route_config, trusted_authserv_id="mx.1mm.org.uk")
    world.app.ingestor.route_config = world.app.route_config
    outcome = on_behalf(world, "#on-behalf-of Pat Smith <pat@example.com>", authenticated=False)
    assert outcome.ref is None  # type: ignore[attr-defined]
    letters = world.take_letters()
    assert [(letter.kind, letter.to) for letter in letters] == [("unreadable-alert", PRIYA)]
    assert "without trusted authentication" in " ".join(letters[0].text.split())


def test_an_out_of_office_from_the_owner_passes_the_case_to_the_complaints_team(world: World) -> None:
    ref = world.receive(mail(frm=f"Amira Khan <{AMIRA}>")).ref
    assert ref is not None and world.case(ref).assignee == TOM
    notification = next(letter for letter in world.take_letters() if letter.kind == "staff-notification")
    world.receive(mail(frm=f"Tom Okafor <{TOM}>", subject=f"Automatic reply: {notification.subject}",
                       body="I am on leave until 1 December.", Auto_Submitted="auto-replied",
                       In_Reply_To=f"<{notification.message_id}>", date=world.now))
    assert world.case(ref).assignee == PRIYA
    letters = world.take_letters()
    assert [(letter.kind, letter.to) for letter in letters] == [("staff-notification", PRIYA)]
    assert "Tom Okafor is away" in " ".join(letters[0].text.split())
    assert "handed_over" in world.events(ref)


def test_an_out_of_office_from_anyone_else_changes_nothing(world: World) -> None:
    ref = world.receive(mail(frm=f"Amira Khan <{AMIRA}>")).ref
    assert ref is not None
    world.take_letters()
    world.receive(mail(frm=f"Sam Carter <{SAM}>", subject=f"Automatic reply: [{ref}] x", body="Away.",
                       Auto_Submitted="auto-replied", date=world.now))
    assert world.case(ref).assignee == TOM and world.take_letters() == []


def test_an_owner_no_longer_in_the_directory_is_replaced_before_anyone_waits_on_them(world: World) -> None:
    ref = world.receive(mail(frm=f"Amira Khan <{AMIRA}>")).ref
    assert ref is not None
    world.take_letters()
    staff = world.app.settings.data_dir / "staff.toml"
    text = staff.read_text()
    start = text.index('name = "Tom Okafor"')
    staff.write_text(text[:text.rindex("[[staff]]", 0, start)] + text[text.index("[[staff]]", start):])
    os.utime(staff, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new stamp even on a coarse clock
    world.receive(mail(frm=AMIRA, subject=f"Re: [{ref}] We have received your complaint", body="Any news?",
                       date=world.now))
    assert world.case(ref).assignee == PRIYA
    letters = world.take_letters()
    assert [(letter.kind, letter.to) for letter in letters] == [("staff-notification", PRIYA)]
    assert "no longer in data/staff.toml" in " ".join(letters[0].text.split())


AUTHENTICATED = "mx.1mm.org.uk; dkim=pass header.d=1mm.org.uk; dmarc=pass header.from=1mm.org.uk"


def trust_our_server(world: World) -> None:
    world.app.route_config = replace(world.app.route_config, trusted_authserv_id="mx.1mm.org.uk")
    world.app.ingestor.route_config = world.app.route_config


def ceo_forward(world: World, subject: str, sender: str = f"Jane Doe <{JANE}>", authenticated: bool = True) -> object:
    body = ("Please deal with this.\n\n---------- Forwarded message ---------\n"
            f"From: {sender}\nDate: Mon, 16 Nov 2026 at 10:00\nSubject: {subject}\nTo: <{CEO}>\n\n"
            "I am writing to you directly because nobody has put this right.")
    headers = {"Authentication_Results": AUTHENTICATED} if authenticated else {}
    return world.receive(mail(frm=f"Alex Morgan <{CEO}>", subject=f"Fwd: {subject}", body=body, date=world.now,
                              **headers))


def test_a_forward_from_the_ceo_opens_the_direct_stage_on_the_case(world: World) -> None:
    trust_our_server(world)
    ref = world.receive(mail(frm=f"Jane Doe <{JANE}>")).ref
    assert ref is not None
    world.take_letters()
    ceo_forward(world, f"Re: [{ref}] We have received your complaint")
    case = world.case(ref)
    assert (case.stage, case.status, case.assignee) == (3, "open", CEO)
    letters = world.take_letters()
    assert [(letter.kind, letter.to) for letter in letters] == [("escalation", JANE),
                                                                ("escalation-review", f"{CEO},{PRIYA}")]
    assert "Thank you for writing to our Chief Executive" in letters[0].text
    assert "Stage 2 (contacting the CEO directly)" in letters[0].text
    assert "nobody has put this right" in letters[1].text


def test_a_forward_from_the_ceo_with_no_case_opens_one_at_that_stage(world: World) -> None:
    trust_our_server(world)
    outcome = ceo_forward(world, "A complaint about the gala", sender="Pat Smith <pat@example.com>")
    case = world.case(outcome.ref)  # type: ignore[attr-defined]
    assert (case.complainant, case.stage, case.procedure, case.assignee) == ("pat@example.com", 3, "external", CEO)
    assert [letter.kind for letter in world.take_letters()] == ["escalation", "escalation-review"]


def test_a_forward_from_a_staff_member_about_themselves_is_never_a_grievance_redirect(world: World) -> None:
    trust_our_server(world)
    outcome = ceo_forward(world, "My grievance", sender=f"Tom Okafor <{TOM}>")
    case = world.case(outcome.ref)  # type: ignore[attr-defined]
    assert (case.procedure, case.status, case.stage) == ("external", "open", 3)


def test_an_unverified_forward_from_the_ceo_moves_nothing(world: World) -> None:
    trust_our_server(world)
    ref = world.receive(mail(frm=f"Jane Doe <{JANE}>")).ref
    assert ref is not None
    world.take_letters()
    ceo_forward(world, f"Re: [{ref}] x", authenticated=False)
    assert world.case(ref).stage == 1
    assert [letter.kind for letter in world.take_letters()] == ["unreadable-alert"]


def test_a_complainant_who_writes_to_the_ceo_and_copies_us_reaches_the_direct_stage(world: World) -> None:
    ref = world.receive(mail(frm=f"Jane Doe <{JANE}>")).ref
    assert ref is not None
    world.take_letters()
    world.receive(mail(frm=f"Jane Doe <{JANE}>", to=f"Alex Morgan <{CEO}>", Cc="complaints@1mm.org.uk",
                       subject=f"[{ref}] Please look at this yourself", body="Nothing has happened.", date=world.now))
    assert (world.case(ref).stage, world.case(ref).assignee) == (3, CEO)


def test_someone_else_copying_the_ceo_on_a_case_moves_nothing(world: World) -> None:
    ref = world.receive(mail(frm=f"Jane Doe <{JANE}>")).ref
    assert ref is not None
    world.take_letters()
    world.receive(mail(frm="mallory@example.net", to=f"Alex Morgan <{CEO}>", Cc="complaints@1mm.org.uk",
                       subject=f"[{ref}] Escalate this", body="Move it on.", date=world.now))
    assert world.case(ref).stage == 1
    assert [letter.kind for letter in world.take_letters()] == ["staff-notification"]


def test_a_complaint_by_post_with_no_email_has_its_letters_posted_by_staff(world: World) -> None:
    trust_our_server(world)
    outcome = on_behalf(world, "#on-behalf-of Pat Smith, 12 High Street, Leeds LS1 1AA post",
                        body="Pat wrote to us: the venue was locked.")
    ref = outcome.ref  # type: ignore[attr-defined]
    case = world.case(ref)
    assert (case.channel, case.postal_address, case.complainant_name) == ("post", "12 High Street, Leeds LS1 1AA",
                                                                          "Pat Smith")
    letters = world.take_letters()
    kinds = [(letter.kind, letter.to, letter.delivery) for letter in letters]
    assert ("acknowledgement", case.complainant, "by_post") in kinds
    post = next(letter for letter in letters if letter.kind == "post-this-letter")
    assert post.to == PRIYA and "12 High Street, Leeds LS1 1AA" in post.text
    assert "Dear Pat Smith" in post.text and "reply to you by the end of" in " ".join(post.text.split())
    # Nothing is ever due to be sent to the placeholder address.
    assert all(letter.delivery != "pending" for letter in letters if letter.to == case.complainant)
    world.staff_reply(ref, "Dear Pat,\n\nWe have spoken to the venue.\n\nPriya")
    later = world.take_letters()
    assert [(letter.kind, letter.delivery) for letter in later if letter.to == case.complainant] == \
        [("staff-reply", "by_post")]
    assert any(letter.kind == "post-this-letter" and "spoken to the venue" in letter.text for letter in later)


def test_copying_the_ceo_in_does_not_escape_a_restriction(world: World) -> None:
    ref = world.receive(mail(frm=f"Jane Doe <{JANE}>")).ref
    assert ref is not None
    for step in RESTRICTED:
        step(world, ref)
    world.take_letters()
    world.receive(mail(frm=f"Jane Doe <{JANE}>", to=f"Alex Morgan <{CEO}>", Cc="complaints@1mm.org.uk",
                       subject=f"[{ref}] Again", body="The same points again.", date=world.now))
    assert world.case(ref).stage == 1
    assert [(letter.kind, letter.to) for letter in world.take_letters()] == [("acknowledge-only", JANE)]
    assert world.inbound_kinds(ref)[-1] == "restricted_acknowledged"


def test_an_out_of_office_that_names_no_letter_we_sent_the_owner_moves_nothing(world: World) -> None:
    """A From is easily forged: the auto-reply must answer a letter we sent the owner (its Message-ID)."""
    ref = world.receive(mail(frm=f"Amira Khan <{AMIRA}>")).ref
    assert ref is not None
    ack = next(letter for letter in world.take_letters() if letter.kind == "acknowledgement")
    world.receive(mail(frm=f"Tom Okafor <{TOM}>", subject=f"Automatic reply: [{ref}] x", body="Away.",
                       Auto_Submitted="auto-replied", In_Reply_To=f"<{ack.message_id}>", date=world.now))
    assert world.case(ref).assignee == TOM and world.take_letters() == []


def test_a_phone_complaint_with_safeguarding_words_alerts_the_lead_at_once(world: World) -> None:
    trust_our_server(world)
    on_behalf(world, "#on-behalf-of Pat Smith <pat@example.com>", body="Pat says her mentor made her feel unsafe.")
    assert ("safeguarding-alert", JO) in [(letter.kind, letter.to) for letter in world.take_letters()]


def test_a_quoted_original_message_in_a_copy_to_the_ceo_names_nobody(world: World) -> None:
    """Only the CEO's own forward is read for its original sender: anyone can write a quoted header naming someone
    else, and that person must not have a case opened (and letters sent) in their name."""
    outcome = world.receive(mail(
        frm="Mallory <mallory@example.net>", to=f"Alex Morgan <{CEO}>", Cc="complaints@1mm.org.uk",
        subject="Please look at this", date=world.now,
        body="See below.\n\n-----Original Message-----\nFrom: Victim <victim@example.org>\nSent: Monday\n\nHelp."))
    case = world.case(outcome.ref)  # type: ignore[attr-defined]
    assert case.complainant == "mallory@example.net"
    assert "victim@example.org" not in {letter.to for letter in world.take_letters()}


def test_the_same_complaint_delivered_again_is_a_duplicate_and_writes_nothing(world: World) -> None:
    raw = mail("jane@example.com", "My complaint", "The session never happened.")
    first = world.receive(raw)
    world.take_letters()
    again = world.receive(raw)
    assert (first.action, again.action, again.kind) == ("new_case", "duplicate", "duplicate")
    assert world.take_letters() == []


def test_two_complaints_whose_ids_differ_in_an_undecodable_byte_are_two_complaints(world: World) -> None:
    """Both ids once became ``<a\ufffd1@x.org>``, so the second person's complaint was a "duplicate" of the
    first: no case, no acknowledgement. Each now keeps its own id, and a reply quoting it threads to its case."""
    def raw(frm: str, byte: bytes) -> bytes:
        return (b"From: " + frm.encode() + b"\r\nTo: complaints@1mm.org.uk\r\nSubject: My complaint\r\n"
                b"Message-ID: <a" + byte + b"1@x.org>\r\n\r\nThe mentor did not come.\r\n")

    first = world.receive(raw("amira@example.org", b"\xff"))
    second = world.receive(raw("bob@example.org", b"\xfe"))
    assert (first.action, second.action) == ("new_case", "new_case")
    assert first.ref != second.ref
    assert sorted(letter.to for letter in world.take_letters() if letter.kind == "acknowledgement") == [
        "amira@example.org", "bob@example.org"]
    follow_up = world.receive(b"From: bob@example.org\r\nTo: complaints@1mm.org.uk\r\nSubject: More\r\n"
                              b"Message-ID: <b2@x.org>\r\nIn-Reply-To: <a\xfe1@x.org>\r\n\r\nAnd another thing.\r\n")
    assert follow_up.ref == second.ref


def test_a_different_message_under_a_known_message_id_is_filed_not_dropped(world: World) -> None:
    """Mailers do reuse Message-IDs, and anybody can write one. Taken for a duplicate, the second person's
    complaint was dropped: no case, no letter, no record. The same message delivered again is still a duplicate."""
    reused = "<reused@example.com>"
    first = world.receive(mail("Amira Khan <amira@example.org>", "My complaint", "No mentor came.", message_id=reused))
    redelivered = mail("Amira Khan <amira@example.org>", "My complaint", "No mentor came.", message_id=reused,
                       Received="by another.relay.example; Mon, 16 Nov 2026 10:00:00 +0000")
    assert world.receive(redelivered).action == "duplicate"
    second = world.receive(mail("Bob Lee <bob@example.org>", "Another complaint", "Nobody replied.",
                                message_id=reused))
    assert (first.action, second.action) == ("new_case", "new_case") and first.ref != second.ref
    assert second.message_id.endswith("@mailbot.invalid")  # kept under an id of its own
    with new_session(world.app.engine) as s:
        detail = s.exec(select(MailMessage.detail).where(MailMessage.message_id == second.message_id)).one()
    assert REUSED_MESSAGE_ID in json.loads(detail)["defects"]  # and the record says why
    assert [letter.to for letter in world.take_letters() if letter.kind == "acknowledgement"] == [
        "amira@example.org", "bob@example.org"]
    # The id still belongs to the first message: a reply quoting it goes to the first case.
    reply = world.receive(mail("Amira Khan <amira@example.org>", "Re: My complaint", "Any news?",
                               In_Reply_To=reused))
    assert reply.ref == first.ref


def test_a_different_message_under_a_known_id_that_fails_is_kept_for_staff(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: the processing error was not kept either, as the id "was already kept".
    reused = "<reused@example.com>"
    world.receive(mail("Amira Khan <amira@example.org>", "My complaint", "No mentor came.", message_id=reused))
    real_queue = Correspondence.queue

    def queue_failing_for_bob(self, session, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs["case"] is not None and kwargs["case"].complainant == "bob@example.org":
            raise RuntimeError("the disk is full")
        return real_queue(self, session, **kwargs)

    monkeypatch.setattr(Correspondence, "queue", queue_failing_for_bob)
    outcome = world.receive(mail("Bob Lee <bob@example.org>", "Another", "Nobody replied.", message_id=reused))
    assert (outcome.action, outcome.kind) == ("error", "processing_error")
    with new_session(world.app.engine) as s:
        kept = s.exec(select(MailMessage.from_addr).where(MailMessage.kind == "processing_error")).all()
    assert kept == ["bob@example.org"]


def test_a_good_complaint_after_a_failed_one_opens_its_case_and_threads_on_its_own_mail(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two complaints in one fetch; the first fails after its case was opened, so its savepoint takes the case (and,
    # on SQLite, the id the second case is then given) away. The second's staff copy must name its own complaint.
    real_queue = Correspondence.queue

    def queue_failing_for_amira(self, session, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("template") == "staff-notification" and kwargs["case"].complainant.startswith("amira"):
            raise RuntimeError("the disk is full")
        return real_queue(self, session, **kwargs)

    monkeypatch.setattr(Correspondence, "queue", queue_failing_for_amira)
    first = mail(frm="Amira Khan <amira.khan@example.org>", message_id="<first@example.org>")
    second = mail(frm="Bob Lee <bob@example.org>", message_id="<second@example.org>")
    outcomes = world.app.ingestor.ingest_batch([Arrival(first, world.now), Arrival(second, world.now)])
    # The failed one is kept for staff; the good one opens its case as if alone.
    assert [o.action for o in outcomes] == ["error", "new_case"]
    with new_session(world.app.engine) as s:
        [note] = s.exec(select(MailMessage).where(MailMessage.kind == "staff-notification")).all()
    headers = note.raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "References: <second@example.org>" in headers
    assert "first@example.org" not in headers


class _Verdicts(Unobserved):
    """An onlooker that writes down each verdict it is told of."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def message(self, verdict: str) -> None:
        self.seen.append(verdict)


def _fetch_of_three(world: World, monkeypatch: pytest.MonkeyPatch, fails: Callable[[], bool],
                    caplog: pytest.LogCaptureFixture, senders: tuple[str, ...] = (
                        "Bob Lee <bob@example.org>", "Amira Khan <amira.khan@example.org>",
                        "Carol Ng <carol@example.org>"),
                    max_seconds: float | None = None) -> tuple[list[str], _Verdicts]:
    """Bob, Amira and Carol in one fetch (UIDs 1-3); Amira's staff copy fails whenever ``fails()`` says so."""
    real_queue = Correspondence.queue

    def queue(self, session, **kwargs):  # type: ignore[no-untyped-def]
        if (kwargs.get("template") == "staff-notification" and kwargs["case"].complainant.startswith("amira")
                and fails()):
            raise RuntimeError("the disk is full")
        return real_queue(self, session, **kwargs)

    monkeypatch.setattr(Correspondence, "queue", queue)
    verdicts = _Verdicts()
    monkeypatch.setattr(world.app.ingestor, "observer", verdicts)
    arrivals = [Arrival(mail(frm=frm), world.now, uid=uid) for uid, frm in enumerate(senders, start=1)]
    caplog.set_level(logging.INFO, logger="mailbot.services.ingest")
    outcomes = world.app.ingestor.ingest_batch(arrivals, CursorPosition("INBOX", 7), max_seconds=max_seconds)
    assert read_cursor(world.app.engine, "INBOX") == (7, 3)
    assert [r.getMessage().split(":")[0] for r in caplog.records if getattr(r, "event", None) == "message"] == [
        f"message <{o.message_id}>" for o in outcomes]
    return [f"{o.action} {o.ref}" for o in outcomes], verdicts


def test_a_fetch_with_one_message_that_always_fails_files_the_others_once_each_and_keeps_it(
        world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # The fetch is first tried without a savepoint a message; Amira's failure sends it round again, carefully.
    attempts: list[int] = []
    outcomes, verdicts = _fetch_of_three(world, monkeypatch, lambda: not attempts.append(1), caplog)
    assert len(attempts) == 2  # once in the quick pass, once in the careful one, and no more
    # No reference is lost to the failed attempts: Carol's case is the next after Bob's.
    assert outcomes == ["new_case 1MM-2026-0001", "error None", "new_case 1MM-2026-0002"]
    assert verdicts.seen == ["new_case", "error", "new_case"]  # each message counted once
    letters = world.take_letters()
    acks = sorted(letter.to for letter in letters if letter.kind == "acknowledgement")
    assert acks == ["bob@example.org", "carol@example.org"]
    assert [letter.kind for letter in letters].count("staff-notification") == 2
    with new_session(world.app.engine) as s:
        kept = s.exec(select(MailMessage).where(MailMessage.direction == "in")).all()
    assert sorted((m.from_addr, m.kind) for m in kept) == [
        ("amira.khan@example.org", "processing_error"), ("bob@example.org", "new_case"),
        ("carol@example.org", "new_case")]


def test_after_one_failure_the_rest_of_a_fetch_goes_carefully_at_once(
        world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # One transaction a message (a limit of 0 s): the first fails in the quick pass and again in the careful one;
    # the third, failing too, is not tried twice, since the careful way is kept for the rest of the fetch.
    attempts: list[int] = []
    outcomes, _ = _fetch_of_three(world, monkeypatch, lambda: not attempts.append(1), caplog, senders=(
        "Amira Khan <amira.khan@example.org>", "Bob Lee <bob@example.org>", "Amira Khan <amira.khan@example.org>"),
        max_seconds=0)
    assert outcomes == ["error None", "new_case 1MM-2026-0001", "error None"]
    assert len(attempts) == 3


def test_a_fault_that_passes_before_the_careful_pass_leaves_no_trace(
        world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    failures: list[int] = []

    def once() -> bool:
        failures.append(1)
        return len(failures) == 1

    outcomes, verdicts = _fetch_of_three(world, monkeypatch, once, caplog)
    assert outcomes == ["new_case 1MM-2026-0001", "new_case 1MM-2026-0002", "new_case 1MM-2026-0003"]
    assert verdicts.seen == ["new_case"] * 3
    letters = world.take_letters()
    assert sorted(letter.to for letter in letters if letter.kind == "acknowledgement") == [
        "amira.khan@example.org", "bob@example.org", "carol@example.org"]
    with new_session(world.app.engine) as s:
        assert s.exec(select(Event).where(Event.type == "processing_error")).all() == []
        assert len(s.exec(select(Case)).all()) == 3


def test_a_failed_message_the_store_will_not_keep_as_read_is_kept_as_bytes_and_intake_goes_on(
        world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Amira's complaint fails, and the store then refuses the processing-error row built from what was read of it
    # (as PostgreSQL refused a NUL or an over-long header): her bytes are kept under a hash of them, the cursor
    # moves past her, and the complaints either side open their cases.
    from mailbot.domain.mail import SYNTHETIC_ID_DOMAIN
    from mailbot.store import repo

    real_record = repo.record_inbound

    def record_refusing_what_was_read(session, values):  # type: ignore[no-untyped-def]
        if values["kind"] == "processing_error" and values["from_addr"]:
            raise ValueError("value refused by the database")
        return real_record(session, values)

    monkeypatch.setattr(repo, "record_inbound", record_refusing_what_was_read)
    outcomes, _ = _fetch_of_three(world, monkeypatch, lambda: True, caplog)
    assert outcomes == ["new_case 1MM-2026-0001", "error None", "new_case 1MM-2026-0002"]
    with new_session(world.app.engine) as s:
        [kept] = s.exec(select(MailMessage).where(MailMessage.kind == "processing_error")).all()
    assert kept.message_id.endswith("@" + SYNTHETIC_ID_DOMAIN) and kept.from_addr == ""
    assert b"amira.khan@example.org" in kept.raw  # nothing of the message is lost
    assert [letter.kind for letter in world.take_letters()].count("unreadable-alert") == 1
