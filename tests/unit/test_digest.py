"""The managers' daily digest over a seeded SQLite database with a fixed clock: content, scoping, once a day."""

from __future__ import annotations

import email
import email.policy
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, col, select

from mailbot.data_files import DirectoryFiles, load_procedures
from mailbot.domain.directory import DirectoryError
from mailbot.domain.recipients import digest_recipients
from mailbot.domain.signing import signed_address
from mailbot.domain.workdays import WorkingCalendar
from mailbot.letters import LetterRenderer
from mailbot.services import digest as digest_service
from mailbot.services.correspondence import Correspondence, Sender
from mailbot.services.digest import Digest, DigestError
from mailbot.store.db import make_engine, to_db, upgrade
from mailbot.store.db import session as new_session
from mailbot.store.models import (
    Case,
    Deadline,
    DigestRun,
    Event,
    MailboxCursor,
    MailMessage,
    Restriction,
)

REPO = Path(__file__).resolve().parents[2]
LONDON = ZoneInfo("Europe/London")
SECRET = b"digest-test-secret"

STAFF = """
[[staff]]
name = "Priya Shah"
email = "priya.shah@1mm.org.uk"
roles = ["complaints_team"]

[[staff]]
name = "Tom Okafor"
email = "tom.okafor@1mm.org.uk"
roles = ["coordinator"]
region = "London"

[[staff]]
name = "Hannah Reid"
email = "hannah.reid@1mm.org.uk"
roles = ["regional_manager"]
region = "London"

[[staff]]
name = "Gareth Lewis"
email = "gareth.lewis@1mm.org.uk"
roles = ["regional_manager"]
region = "Midlands"

[[staff]]
name = "Wyn Jones"
email = "wyn.jones@1mm.org.uk"
roles = ["regional_manager"]
region = "Wales"

[[staff]]
name = "Sam Carter"
email = "sam.carter@1mm.org.uk"
roles = ["head_of_delivery"]
digest_subjects = true

[[staff]]
name = "Sara Ahmed"
email = "sara.ahmed@1mm.org.uk"
roles = ["safeguarding_lead"]

[[staff]]
name = "Alex Morgan"
email = "alex.morgan@1mm.org.uk"
roles = ["ceo", "smt"]
digest_subjects = true
"""

PARTICIPANTS = """email,name,role,status,region,coordinator_email
amira.khan@example.org,Amira Khan,mentee,current,London,tom.okafor@1mm.org.uk
leo.baker@example.org,Leo Baker,mentee,alumni,Midlands,
chloe.ward@example.org,Chloe Ward,mentee,alumni,North East,
"""

HANNAH, GARETH, WYN = "hannah.reid@1mm.org.uk", "gareth.lewis@1mm.org.uk", "wyn.jones@1mm.org.uk"
SAM, SARA, ALEX = "sam.carter@1mm.org.uk", "sara.ahmed@1mm.org.uk", "alex.morgan@1mm.org.uk"
EVERYONE = [ALEX, SAM, SARA, HANNAH, GARETH, WYN]


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: float = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LONDON) + timedelta(seconds=s)


# Monday 23 November 2026, the digest time. The previous digest went on Friday at 08:00.
NOW = at(2026, 11, 23, 8, 0)
FRIDAY_DIGEST = at(2026, 11, 20, 8, 0)


@dataclass
class World:
    engine: object
    letters: Correspondence
    data: Path

    def digest(self, threshold: int = 10) -> Digest:
        return Digest(self.engine, self.letters, self.letters.calendar, self.letters.directory, self.letters.procedures,
                      time(8, 0), persistent_threshold=threshold)

    def session(self) -> Session:
        return new_session(self.engine)  # type: ignore[arg-type]

    def outbox(self, kind: str = "digest") -> list[MailMessage]:
        with self.session() as s:
            return list(s.exec(select(MailMessage).where(MailMessage.direction == "out", MailMessage.kind == kind)
                               .order_by(col(MailMessage.id))).all())

    def digests_to(self, address: str) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(m.raw, policy=email.policy.default) for m in self.outbox()
                if m.to_addrs == address]


# The digest's reads stream rows (a server-side cursor on PostgreSQL) and count in SQL: the tests marked with this
# run on both databases.
ON_BOTH = pytest.mark.parametrize("world", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> World:
    database = getattr(request, "param", "sqlite")
    data = tmp_path / "data"
    data.mkdir()
    (data / "staff.toml").write_text(STAFF)
    (data / "participants.csv").write_text(PARTICIPANTS)
    directory = DirectoryFiles(data)
    directory.load()
    engine = make_engine(request.getfixturevalue("postgres").url if database == "postgresql"
                         else f"sqlite:///{tmp_path / 'digest.db'}")
    upgrade(engine)
    sender = Sender("One Million Mentors", "complaints@1mm.org.uk", "1mm.org.uk", 5)
    letters = Correspondence(sender, SECRET, LetterRenderer(REPO / "templates"), WorkingCalendar(),
                             load_procedures(REPO / "data" / "procedures.toml"), directory)
    yield World(engine, letters, data)
    engine.dispose()


# ---- seeding -------------------------------------------------------------------------------------

_counter = iter(range(1, 100000))


def add_case(s: Session, seq: int, complainant: str, opened: datetime, *, subject: str = "A complaint",
             assignee: str | None = None, category: str = "service", status: str = "open", stage: int = 1,
             procedure: str = "external", outcome: str | None = None) -> Case:
    case = Case(ref=f"1MM-2026-{seq:04d}", year=2026, seq=seq, status=status, stage=stage, procedure=procedure,
                complainant=complainant, subject=subject, category=category, assignee=assignee, outcome=outcome,
                opened_at=to_db(opened), stage_started_at=to_db(opened), updated_at=to_db(opened))
    s.add(case)
    s.flush()
    return case


def add_message(s: Session, case: Case | None, direction: str, kind: str, when: datetime, *, frm: str = "",
                to: str = "", delivery: str | None = None, sent_at: datetime | None = None,
                error: str | None = None, message_id: str | None = None, subject: str = "") -> MailMessage:
    row = MailMessage(case_id=case.id if case else None, direction=direction,
                      message_id=message_id or f"m{next(_counter)}@example.com", subject=subject, from_addr=frm,
                      to_addrs=to, kind=kind, at=to_db(when), raw=b"x", delivery=delivery,
                      sent_at=to_db(sent_at), last_error=error)
    s.add(row)
    s.flush()
    return row


def add_deadline(s: Session, case: Case, name: str, due: datetime, met: datetime | None = None,
                 superseded: bool = False, stage: int = 1) -> Deadline:
    row = Deadline(case_id=case.id, stage=stage, name=name, due_at=to_db(due), met_at=to_db(met),
                   superseded=superseded)
    s.add(row)
    return row


def add_event(s: Session, case: Case | None, type_: str, when: datetime, **detail: object) -> None:
    s.add(Event(case_id=case.id if case else None, at=to_db(when), type=type_, detail=json.dumps(detail)))


def seed(world: World) -> None:
    """A Monday morning's worth of cases, one or more per section."""
    with world.session() as s:
        # London (the complainant is a London mentee): overdue first response, full response due today.
        c1 = add_case(s, 1, "amira.khan@example.org", at(2026, 11, 19, 10), subject="My mentor never turned up",
                      assignee="tom.okafor@1mm.org.uk", procedure="mentee")
        add_message(s, c1, "in", "new_case", at(2026, 11, 19, 10), frm="amira.khan@example.org")
        add_message(s, c1, "out", "acknowledgement", at(2026, 11, 19, 10), delivery="sent",
                    sent_at=at(2026, 11, 19, 10, 0, 2))
        add_deadline(s, c1, "first_response", at(2026, 11, 20, 10))
        add_deadline(s, c1, "full_response", at(2026, 11, 23, 17, 30))
        add_deadline(s, c1, "resolution", at(2026, 12, 9, 17, 30))
        add_deadline(s, c1, "full_response", at(2026, 11, 20, 17, 30), superseded=True)

        # Midlands: new since Friday's digest, full response due on the next working day, a refused letter.
        c2 = add_case(s, 2, "leo.baker@example.org", at(2026, 11, 22, 20), subject="Certificate <b>never</b> came",
                      assignee=GARETH, procedure="mentee", category="programme")
        add_message(s, c2, "in", "new_case", at(2026, 11, 22, 20), frm="leo.baker@example.org")
        add_message(s, c2, "out", "acknowledgement", at(2026, 11, 22, 20), delivery="sent",
                    sent_at=at(2026, 11, 22, 20, 0, 10))
        add_deadline(s, c2, "full_response", at(2026, 11, 24, 17, 30))
        refused = add_message(s, c2, "out", "staff-notification", at(2026, 11, 20, 7), to=GARETH,
                              delivery="failed", error="550 mailbox unavailable")
        add_event(s, c2, "letter_failed", at(2026, 11, 21, 7), template="staff-notification", to=GARETH,
                  error="550 mailbox unavailable")
        assert refused.id

        # No region (external complaint, complaints team), safeguarding, escalated on Saturday.
        c3 = add_case(s, 3, "jane@example.com", at(2026, 11, 10, 9), subject="Worried about a mentor",
                      assignee="priya.shah@1mm.org.uk", category="safeguarding", stage=2)
        add_event(s, c3, "escalated", at(2026, 11, 21, 11), stage=2, reason="the complainant asked for a review")
        add_deadline(s, c3, "stage_response", at(2026, 12, 2, 17, 30), stage=2)

        # North East: resolved with an outcome on Friday afternoon, inside 14 working days, responses on time.
        c4 = add_case(s, 4, "chloe.ward@example.org", at(2026, 11, 16, 9), subject="Session cancelled",
                      assignee="priya.shah@1mm.org.uk", status="resolved", procedure="mentee",
                      outcome="upheld")
        add_message(s, c4, "in", "new_case", at(2026, 11, 16, 9), frm="chloe.ward@example.org")
        add_message(s, c4, "out", "acknowledgement", at(2026, 11, 16, 9), delivery="sent",
                    sent_at=at(2026, 11, 16, 9, 0, 4))
        add_deadline(s, c4, "first_response", at(2026, 11, 17, 9), met=at(2026, 11, 16, 15))
        add_deadline(s, c4, "full_response", at(2026, 11, 18, 17, 30), met=at(2026, 11, 19, 9))
        add_message(s, c4, "out", "outcome", at(2026, 11, 20, 15), to="chloe.ward@example.org", delivery="sent",
                    sent_at=at(2026, 11, 20, 15, 0, 1))

        # An external complainant writing many times a week: the persistent-contact suggestion.
        c5 = add_case(s, 5, "pat@example.net", at(2026, 11, 2, 9), subject="Again and again",
                      assignee="priya.shah@1mm.org.uk")
        for n in range(11):
            add_message(s, c5, "in", "follow_up", NOW - timedelta(days=6, hours=-n), frm="pat@example.net")
        add_message(s, c5, "in", "follow_up", NOW - timedelta(days=8), frm="pat@example.net")

        # A restricted complainant: messages filed and acknowledged, and the restriction's review due today.
        c6 = add_case(s, 6, "rob@example.net", at(2026, 9, 1, 9), subject="Restricted matter",
                      assignee=HANNAH, status="resolved")
        add_message(s, c6, "in", "restricted_filed", at(2026, 11, 21, 10), frm="rob@example.net")
        add_message(s, c6, "in", "restricted_filed", at(2026, 11, 22, 10), frm="rob@example.net")
        add_message(s, c6, "in", "restricted_acknowledged", at(2026, 11, 22, 11), frm="rob@example.net")
        add_message(s, c6, "in", "restricted_filed", at(2026, 11, 19, 10), frm="rob@example.net")  # before Friday
        s.add(Restriction(case_id=c6.id, complainant="rob@example.net", state="restricted",
                          mode="acknowledge-only", review_at=to_db(at(2026, 11, 23, 9))))

        # An external complaint assigned to a London coordinator is a London case; a bounced letter on it.
        c7 = add_case(s, 7, "kim@example.com", at(2026, 11, 23, 7, 30), subject="Rude reply",
                      assignee="tom.okafor@1mm.org.uk")
        bounced = add_message(s, c7, "out", "acknowledgement", at(2026, 11, 23, 7, 30), to="kim@example.com",
                              delivery="undelivered", error="bounced: kim@example.com")
        add_event(s, c7, "letter_undelivered", at(2026, 11, 23, 7, 40), template="acknowledgement",
                  message_id=bounced.message_id)
        add_message(s, c7, "in", "new_case", at(2026, 11, 23, 7, 30), frm="kim@example.com")

        # The mailbox fetched at 07:59 but an authentication failure happened on Saturday.
        s.add(MailboxCursor(mailbox="complaints@imap.example/INBOX", last_success_at=to_db(at(2026, 11, 23, 7, 59)),
                            last_error="LoginError: authentication failed",
                            last_error_at=to_db(at(2026, 11, 21, 3)), error_count=3, auth_failures=1))
        for who in EVERYONE:
            s.add(DigestRun(recipient=who, day="2026-11-20", sent_at=to_db(FRIDAY_DIGEST)))
        s.commit()


def refs(items: list[dict]) -> list[str]:
    return [i["ref"] for i in items]


def context_for(world: World, address: str, now: datetime = NOW, threshold: int = 10) -> dict:
    digest = world.digest(threshold)
    recipient = next(r for r in digest_recipients(world.letters.directory.get()) if r.email == address)
    with world.session() as s:
        return digest.context(s, recipient, now)


# ---- content -------------------------------------------------------------------------------------

@ON_BOTH
def test_every_section_for_someone_who_sees_every_case(world: World) -> None:
    seed(world)
    ctx = context_for(world, SAM)

    assert ctx["day"] == "Monday 23 November 2026"
    assert ctx["since"] == "8am on Friday 20 November 2026"
    assert not ctx["nothing"]

    [late] = ctx["overdue"]
    assert late["ref"] == "1MM-2026-0001"
    assert late["deadline"] == "first response"
    assert late["holder"] == "Tom Okafor"
    assert late["overdue_by"] == "2 days (1 working day)"
    assert late["due"] == "10am on Friday 20 November 2026"
    assert late["mailto"] == ("mailto:" + signed_address("1MM-2026-0001", SECRET, "complaints@1mm.org.uk")
                              + "?subject=%5B1MM-2026-0001%5D")

    assert [(i["ref"], i["deadline"]) for i in ctx["due_today"]] == [("1MM-2026-0001", "full response")]
    assert [(i["ref"], i["deadline"]) for i in ctx["due_next"]] == [("1MM-2026-0002", "full response")]
    assert ctx["next_day"] == "Tuesday 24 November 2026"

    # New since Friday's digest (not the 24 hours before): Sunday's and this morning's complaints.
    assert refs(ctx["new_cases"]) == ["1MM-2026-0002", "1MM-2026-0007"]

    [esc] = ctx["escalations"]
    assert esc["ref"] == "1MM-2026-0003"
    assert esc["stage"] == "Stage 1 (escalated to the CEO)"
    assert esc["reviewer"] == "our Chief Executive"

    [out] = ctx["outcomes"]
    assert (out["ref"], out["outcome"], out["delivery"]) == ("1MM-2026-0004", "upheld", "sent")

    [filed] = ctx["filed"]
    assert (filed["ref"], filed["filed"], filed["acknowledged"]) == ("1MM-2026-0006", 2, 1)
    [review] = ctx["reviews"]
    assert (review["ref"], review["late"], review["review"]) == ("1MM-2026-0006", False, "Monday 23 November 2026")
    [persistent] = ctx["persistent"]
    assert (persistent["ref"], persistent["messages"]) == ("1MM-2026-0005", 11)

    problems = {(p["ref"], p["letter"], p["state"]) for p in ctx["delivery_problems"]}
    assert problems == {("1MM-2026-0002", "staff-notification", "refused"),
                        ("1MM-2026-0007", "acknowledgement", "bounced")}

    [box] = ctx["mailboxes"]
    assert box["problem"] == "authentication failed since the last digest"
    assert box["last_success"] == "7:59am on Monday 23 November 2026"
    assert (box["errors"], box["auth_failures"]) == (3, 1)
    assert ctx["mailbox_problems"] == [box]

    figures = ctx["figures"]
    # Acknowledged after 2, 4 and 10 seconds; the bounced one was never sent.
    assert figures["ack"] == {"count": 3, "waiting": 1, "median": "4.0 seconds", "worst": "10 seconds"}
    rates = {r["label"]: (r["met"], r["total"]) for r in figures["rates"]}
    assert rates == {
        "First responses on time": (1, 2),   # case 4 on time, case 1 overdue
        "Full responses on time": (0, 1),    # case 4 late; case 1's superseded deadline does not count
        "Resolved within 14 working days": (1, 1),
    }
    assert figures["open_total"] == 5
    assert [(b["label"], b["count"]) for b in figures["by_stage"]] == [("Stage 1", 4), ("Stage 2", 1)]
    assert [(b["label"], b["count"], b["width"]) for b in figures["by_category"]] == [
        ("service", 3, 100), ("programme", 1, 33), ("safeguarding", 1, 33)]


def test_the_letter_has_both_parts_links_and_escapes_what_came_from_mail(world: World) -> None:
    seed(world)
    with world.session() as s:
        s.add(Case(ref="1MM-2026-0009", year=2026, seq=9, complainant="eve@example.com",
                   subject='<script>alert("x")</script> & more', opened_at=to_db(NOW - timedelta(hours=1)),
                   stage_started_at=to_db(NOW), updated_at=to_db(NOW)))
        s.commit()
    assert world.digest().send_now(NOW, SAM) == 1
    [msg] = world.digests_to(SAM)
    assert msg["X-Mailbot-Letter"] == "digest"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Reply-To"] == "priya.shah@1mm.org.uk"
    assert msg["Subject"] == "Digest for Monday 23 November: 1 overdue, 2 due soon, 3 new"
    assert "[1MM-" not in msg["Subject"]  # a reply to the digest must not thread onto a case
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert text.index("OVERDUE") < text.index("DUE SOON") < text.index("NEW CASES") < text.index("ESCALATIONS") \
        < text.index("OUTCOMES SENT") < text.index("RESTRICTIONS") < text.index("DELIVERY PROBLEMS") \
        < text.index("MAILBOX") < text.index("THE LAST 30 DAYS")
    assert "[1MM-2026-0001] first response overdue by 2 days (1 working day)" in text
    assert "consider the unreasonably persistent complaints procedure" in text
    assert '<script>alert("x")</script>' in text  # plain text is shown as text
    assert "<script" not in html
    assert "&lt;script&gt;" in html and "&amp; more" in html
    assert "Certificate &lt;b&gt;never&lt;/b&gt; came" in html
    reply = signed_address("1MM-2026-0003", SECRET, "complaints@1mm.org.uk")
    assert f'href="mailto:{reply}?subject=%5B1MM-2026-0003%5D"' in html
    assert "Problem: authentication failed since the last digest." in html
    # The bars are table cells with widths and colours, so they show with images blocked.
    assert 'width="20%" bgcolor="#1d70b8"' in html and "<img" not in html  # stage 2: 1 of stage 1's 5


def test_a_restricted_or_warned_case_is_not_suggested_again(world: World) -> None:
    seed(world)
    with world.session() as s:
        s.add(Restriction(case_id=5, complainant="pat@example.net", state="warned"))
        s.commit()
    assert context_for(world, SAM)["persistent"] == []


@ON_BOTH
def test_the_persistent_threshold_is_a_setting(world: World) -> None:
    seed(world)
    assert context_for(world, SAM, threshold=11)["persistent"] == []
    assert refs(context_for(world, SAM, threshold=3)["persistent"]) == ["1MM-2026-0005"]


def test_without_a_previous_digest_new_means_the_last_24_hours(world: World) -> None:
    seed(world)
    with world.session() as s:
        for run in s.exec(select(DigestRun)).all():
            s.delete(run)
        s.commit()
    ctx = context_for(world, SAM)
    assert ctx["since"] == "8am on Sunday 22 November 2026"
    assert refs(ctx["new_cases"]) == ["1MM-2026-0002", "1MM-2026-0007"]
    assert refs(ctx["escalations"]) == []  # Saturday's escalation is older than 24 hours
    assert refs(ctx["outcomes"]) == []


# ---- who sees what -------------------------------------------------------------------------------

@ON_BOTH
def test_regional_managers_see_their_region_by_complainant_or_assignee(world: World) -> None:
    seed(world)
    london = context_for(world, HANNAH)
    assert london["scope"] == "cases in London"
    assert refs(london["overdue"]) == ["1MM-2026-0001"]
    assert refs(london["new_cases"]) == ["1MM-2026-0007"]  # external, but held by a London coordinator
    assert refs(london["due_next"]) == []
    # Case 6's complainant is not a participant; its assignee (Hannah) is in London.
    assert refs(london["filed"]) == ["1MM-2026-0006"]
    assert london["figures"]["open_total"] == 2
    assert london["mailbox_problems"] == []  # the mailbox is shown, but it is the head office's problem

    midlands = context_for(world, GARETH)
    assert refs(midlands["new_cases"]) == ["1MM-2026-0002"]
    assert refs(midlands["due_next"]) == ["1MM-2026-0002"]
    assert refs(midlands["delivery_problems"]) == ["1MM-2026-0002"]
    assert refs(midlands["escalations"]) == [] and refs(midlands["outcomes"]) == []


def test_the_safeguarding_lead_sees_safeguarding_cases_only(world: World) -> None:
    seed(world)
    with world.session() as s:
        # A case whose words raised a safeguarding alert counts too, whatever its category.
        add_event(s, s.get(Case, 2), "safeguarding_alert", at(2026, 11, 22, 20), reason="words")
        s.commit()
    ctx = context_for(world, SARA)
    assert ctx["scope"] == "safeguarding cases"
    assert refs(ctx["escalations"]) == ["1MM-2026-0003"]
    assert refs(ctx["new_cases"]) == ["1MM-2026-0002"]
    assert refs(ctx["overdue"]) == [] and refs(ctx["persistent"]) == []


def test_the_ceo_head_of_delivery_and_smt_see_everything(world: World) -> None:
    seed(world)
    for who in (ALEX, SAM):
        ctx = context_for(world, who)
        assert ctx["scope"] == "every case"
        assert refs(ctx["new_cases"]) == ["1MM-2026-0002", "1MM-2026-0007"]


def test_a_recipient_with_nothing_to_report_gets_one_line(world: World) -> None:
    seed(world)
    assert context_for(world, WYN)["nothing"]
    world.digest().send_now(NOW, WYN)
    [msg] = world.digests_to(WYN)
    assert msg["Subject"] == "Digest for Monday 23 November: nothing needs you today"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert text.strip().splitlines()[0] == "Nothing needs you today."
    assert "OVERDUE" not in text
    assert "Nothing needs you today." in msg.get_body(preferencelist=("html",)).get_content()


def test_the_recipients_are_the_digest_roles_most_senior_first(world: World) -> None:
    assert [r.email for r in digest_recipients(world.letters.directory.get())] == EVERYONE


# ---- once a day ----------------------------------------------------------------------------------

def test_once_a_day_across_restarts_and_again_the_next_working_day(world: World) -> None:
    seed(world)
    first = world.digest()
    assert first.run_due(NOW) == 6
    assert first.run_due(NOW + timedelta(minutes=1)) == 0
    restarted = world.digest()  # a new process: only the database remembers
    assert restarted.run_due(NOW + timedelta(hours=3)) == 0
    outbox = world.outbox()
    assert len(outbox) == 6
    with world.session() as s:
        runs = s.exec(select(DigestRun).where(DigestRun.day == "2026-11-23")).all()
    assert sorted(r.recipient for r in runs) == sorted(EVERYONE)
    assert {r.message_id for r in runs} == {m.message_id for m in outbox}

    assert restarted.run_due(at(2026, 11, 24, 7, 59)) == 0
    assert restarted.run_due(at(2026, 11, 24, 8, 0)) == 6
    assert len(world.digests_to(SAM)) == 2
    # Tuesday's "new" starts from Monday's digest: case 7 arrived before it, so it is not new again.
    assert refs(context_for(world, SAM, at(2026, 11, 24, 8, 0))["new_cases"]) == []


def test_catch_up_when_the_bot_was_down_at_the_digest_time(world: World) -> None:
    seed(world)
    digest = world.digest()
    assert digest.run_due(at(2026, 11, 23, 7, 59, 59)) == 0
    assert world.outbox() == []
    # Started at 11:30: the morning's digest goes at once, dated now.
    assert digest.run_due(at(2026, 11, 23, 11, 30)) == 6
    assert digest.run_due(at(2026, 11, 23, 11, 31)) == 0


def test_the_digest_time_is_uk_time_across_the_clock_change(world: World) -> None:
    digest = world.digest()
    summer = datetime(2026, 6, 1, 6, 59, tzinfo=ZoneInfo("UTC"))  # 07:59 BST
    assert not digest.is_due(summer)
    assert digest.is_due(summer + timedelta(minutes=1))


@pytest.mark.parametrize("day", [
    at(2026, 11, 28, 9), at(2026, 11, 29, 9),   # Saturday, Sunday
    at(2026, 12, 25, 9), at(2026, 12, 28, 9),   # Christmas Day, Boxing Day's substitute
    at(2026, 8, 31, 9),                         # the August bank holiday
])
def test_no_digest_on_weekends_or_bank_holidays(world: World, day: datetime) -> None:
    seed(world)
    assert world.digest().run_due(day) == 0
    assert world.outbox() == []


def test_a_second_process_that_loses_the_race_queues_nothing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(world)
    assert world.digest().run_due(NOW) == 6
    # The other process checked before this one committed: its insert fails and its letter rolls back with it.
    racer = world.digest()
    monkeypatch.setattr(Digest, "_recorded", staticmethod(lambda *a: False))
    assert racer.run_due(NOW + timedelta(seconds=1)) == 0
    assert len(world.outbox()) == 6
    with world.session() as s:
        assert len(s.exec(select(DigestRun).where(DigestRun.day == "2026-11-23")).all()) == 6


# ---- by hand -------------------------------------------------------------------------------------

def test_by_hand_before_the_digest_time_leaves_the_scheduled_digest_alone(world: World) -> None:
    seed(world)
    digest = world.digest()
    assert digest.send_now(at(2026, 11, 23, 7), SAM) == 1
    assert digest.run_due(NOW) == 6
    assert len(world.digests_to(SAM)) == 2


def test_by_hand_after_the_digest_time_is_the_days_digest(world: World) -> None:
    seed(world)
    digest = world.digest()
    assert digest.send_now(at(2026, 11, 23, 9), None) == 6
    assert digest.run_due(at(2026, 11, 23, 9, 1)) == 0
    # Asked for again by hand, it is sent again (and recorded once).
    assert digest.send_now(at(2026, 11, 23, 10), SAM) == 1
    assert len(world.digests_to(SAM)) == 2
    with world.session() as s:
        assert len(s.exec(select(DigestRun).where(DigestRun.recipient == SAM,
                                                  DigestRun.day == "2026-11-23")).all()) == 1


def test_by_hand_on_a_day_off_is_sent_but_not_recorded(world: World) -> None:
    seed(world)
    assert world.digest().send_now(at(2026, 11, 28, 10), GARETH) == 1
    with world.session() as s:
        assert s.exec(select(DigestRun).where(DigestRun.day == "2026-11-28")).all() == []


def test_by_hand_to_someone_without_a_digest_is_refused(world: World) -> None:
    with pytest.raises(DigestError, match="tom.okafor@1mm.org.uk gets no digest"):
        world.digest().send_now(NOW, "tom.okafor@1mm.org.uk")


def test_preview_writes_the_most_senior_recipients_html_and_sends_nothing(world: World, tmp_path: Path) -> None:
    seed(world)
    out = tmp_path / "preview" / "digest.html"
    world.digest().preview(NOW, None, out)
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "Alex Morgan, this is what needs you today" in html
    assert "1MM-2026-0003" in html
    world.digest().preview(NOW, HANNAH.upper(), out)
    assert "Hannah Reid" in out.read_text() and "1MM-2026-0003" not in out.read_text()
    assert world.outbox() == []
    with world.session() as s:
        assert len(s.exec(select(DigestRun)).all()) == len(EVERYONE)  # only the seeded Friday rows


# ---- what a manager acts on (issue 13) -------------------------------------------------------------


@ON_BOTH
def test_a_case_with_two_overdue_deadlines_is_listed_once(world: World) -> None:
    with world.session() as s:
        c = add_case(s, 30, "sam@example.com", at(2026, 11, 16, 9), assignee="priya.shah@1mm.org.uk")
        add_deadline(s, c, "first_response", at(2026, 11, 17, 17, 30))
        add_deadline(s, c, "full_response", at(2026, 11, 18, 17, 30))
        s.commit()
    overdue = context_for(world, ALEX)["overdue"]
    assert refs(overdue) == ["1MM-2026-0030"]
    assert overdue[0]["deadline"] == "first response and full response"
    assert overdue[0]["overdue_by"].startswith("5 days")


@ON_BOTH
def test_cases_waiting_for_a_decision_and_the_workload_by_holder(world: World) -> None:
    seed(world)
    with world.session() as s:
        add_case(s, 31, "lee@example.com", at(2026, 11, 20, 9), assignee="priya.shah@1mm.org.uk",
                 status="awaiting_staff")
        s.commit()
    context = context_for(world, ALEX)
    assert refs(context["awaiting"]) == ["1MM-2026-0031"]
    workload = {w["holder"]: (w["open"], w["this_week"], w["overdue"]) for w in context["workload"]}
    # Tom holds case 1 (first response overdue, full response due today: both counted) and case 7 (no deadline);
    # Priya holds 3, 5 and 31.
    assert workload["Tom Okafor"] == (2, 1, 1)
    assert workload["Priya Shah"][0] == 3 and workload["Priya Shah"][2] == 0
    assert world.digest().send_now(NOW, ALEX) == 1
    [msg] = world.digests_to(ALEX)
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "WAITING FOR YOUR DECISION (1)" in text and "WORKLOAD (open cases)" in text
    assert "times are UK time, GMT" in text  # November: the digest says which UK time it shows


@ON_BOTH
def test_no_persistence_suggestion_while_our_own_response_to_them_is_overdue(world: World) -> None:
    seed(world)
    assert refs(context_for(world, ALEX)["persistent"]) == ["1MM-2026-0005"]
    with world.session() as s:
        case = s.exec(select(Case).where(Case.ref == "1MM-2026-0005")).one()
        add_deadline(s, case, "full_response", at(2026, 11, 20, 17, 30))
        s.commit()
    assert context_for(world, ALEX)["persistent"] == []


def test_automated_mail_written_to_the_complaints_address_needs_a_look(world: World) -> None:
    with world.session() as s:
        add_message(s, None, "in", "robot_sender", at(2026, 11, 21, 9), frm="noreply@forms.example.org",
                    to="complaints@1mm.org.uk", subject="Website form: a complaint")
        add_message(s, None, "in", "bulk", at(2026, 11, 21, 10), frm="news@example.org",
                    to="list@example.org", subject="Newsletter")  # not to us: not listed
        for who in EVERYONE:
            s.add(DigestRun(recipient=who, day="2026-11-20", sent_at=to_db(FRIDAY_DIGEST)))
        s.commit()
    assert [m["subject"] for m in context_for(world, ALEX)["needs_a_look"]] == ["Website form: a complaint"]
    assert context_for(world, HANNAH)["needs_a_look"] == []  # a regional manager sees her region's cases only


def test_a_flood_of_robots_mail_or_refused_letters_is_counted_in_full_and_listed_up_to_the_limit(
        world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # 5,000 newsletters of 100 KB in a day took the digest to 580 MB (every message read whole) and a 1.3 MB
    # letter; a relay refusing everything for a day would do the same with the letters.
    monkeypatch.setattr(digest_service, "LIST_LIMIT", 2)
    with world.session() as s:
        case = add_case(s, 1, "amira.khan@example.org", at(2026, 11, 19, 10))
        for n in range(4):
            add_message(s, None, "in", "bulk", at(2026, 11, 21, 9, n), frm=f"news{n}@example.org",
                        to="complaints@1mm.org.uk", subject=f"Newsletter {n}")
            add_message(s, case, "out", "acknowledgement", at(2026, 11, 21, 9, n), to=f"r{n}@example.org",
                        delivery="failed", error="550 relay refused")
        for who in EVERYONE:
            s.add(DigestRun(recipient=who, day="2026-11-20", sent_at=to_db(FRIDAY_DIGEST)))
        s.commit()
    context = context_for(world, ALEX)
    assert (context["counts"]["needs_a_look"], context["counts"]["delivery"]) == (4, 4)
    assert [m["subject"] for m in context["needs_a_look"]] == ["Newsletter 0", "Newsletter 1"]
    assert [p["to"] for p in context["delivery_problems"]] == ["r0@example.org", "r1@example.org"]
    assert (context["not_listed"]["needs_a_look"], context["not_listed"]["delivery"]) == (2, 2)

    assert world.digest().send_now(NOW, ALEX) == 1
    [letter] = world.digests_to(ALEX)
    text = " ".join(letter.get_body(("plain",)).get_content().split())
    for line in ("NEEDS A LOOK (4)", "and 2 more, not listed here", "DELIVERY PROBLEMS (4)",
                 "and 2 more letters refused or bounced, not listed here"):
        assert line in text, line
    assert "Newsletter 2" not in text and "r2@example.org" not in text
    html = " ".join(letter.get_body(("html",)).get_content().split())
    assert "Needs a look (4)" in html and "Delivery problems (4)" in html
    assert html.count("<strong>2 more</strong>") == 2


def test_a_coordinator_who_subscribes_gets_a_digest_of_the_cases_they_hold(world: World) -> None:
    seed(world)
    staff = world.data / "staff.toml"
    staff.write_text(staff.read_text().replace('roles = ["coordinator"]', 'roles = ["coordinator"]\ndigest = true'))
    # A newer stamp even on a coarse clock, so the directory is re-read.
    os.utime(staff, ns=(staff.stat().st_atime_ns, staff.stat().st_mtime_ns + 10**9))
    tom = "tom.okafor@1mm.org.uk"
    recipients = digest_recipients(world.letters.directory.get())
    assert [r.email for r in recipients] == [*EVERYONE, tom]  # after everyone with a digest role
    context = context_for(world, tom)
    assert context["scope"] == "the cases you hold"
    assert {i["ref"] for i in context["overdue"] + context["new_cases"]} == {"1MM-2026-0001", "1MM-2026-0007"}
    assert context["needs_a_look"] == [] and context["mailbox_problems"] == []


def test_digest_in_staff_toml_must_be_true_or_false(world: World) -> None:
    staff = world.data / "staff.toml"
    staff.write_text(staff.read_text().replace('roles = ["coordinator"]', 'roles = ["coordinator"]\ndigest = "yes"'))
    with pytest.raises(DirectoryError, match="'digest' must be true or false"):
        DirectoryFiles(world.data).load()


def test_without_digest_subjects_a_digest_shows_references_and_categories_not_subjects(world: World) -> None:
    """Subjects often carry names and health details: only staff whose entry says so see them."""
    seed(world)
    with world.session() as s:
        s.add(Case(ref="1MM-2026-0009", year=2026, seq=9, complainant="eve@example.com", category="safeguarding",
                   subject="Eve Adams: my son's diagnosis", opened_at=to_db(NOW - timedelta(hours=1)),
                   stage_started_at=to_db(NOW), updated_at=to_db(NOW)))
        s.commit()
    shown = context_for(world, SARA)  # the safeguarding lead, with no digest_subjects
    [item] = [i for i in shown["new_cases"] if i["ref"] == "1MM-2026-0009"]
    assert item["subject"] == "(safeguarding complaint)"
    assert "diagnosis" not in str(shown)
    [item] = [i for i in context_for(world, ALEX)["new_cases"] if i["ref"] == "1MM-2026-0009"]
    assert item["subject"] == "Eve Adams: my son's diagnosis"


def test_digest_subjects_in_staff_toml_must_be_true_or_false(world: World) -> None:
    from mailbot.domain.directory import DirectoryError, parse_staff

    with pytest.raises(DirectoryError, match="'digest_subjects' must be true or false"):
        parse_staff('[[staff]]\nname = "A"\nemail = "a@1mm.org.uk"\nroles = ["smt"]\ndigest_subjects = "yes"\n')


@ON_BOTH
def test_a_long_backlog_is_counted_in_full_and_listed_longest_overdue_first(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # With thousands of open cases a digest listing every late one is unreadable (and read every row): each
    # deadline section names its first LIST_LIMIT and says how many more; the counts stay whole.
    monkeypatch.setattr(digest_service, "LIST_LIMIT", 3)
    with world.session() as s:
        for n in range(1, 6):  # five cases overdue, case 1 the longest
            c = add_case(s, n, f"late{n}@example.com", at(2026, 11, 2, 9), assignee="priya.shah@1mm.org.uk")
            add_deadline(s, c, "first_response", at(2026, 11, 2 + n, 17, 30))
        for n in range(6, 10):  # four due later today, a Monday
            c = add_case(s, n, f"soon{n}@example.com", at(2026, 11, 20, 9), assignee="priya.shah@1mm.org.uk")
            add_deadline(s, c, "full_response", at(2026, 11, 23, 10 + n))
        s.commit()
    context = context_for(world, ALEX)
    assert context["counts"]["overdue"] == 5 and context["counts"]["due"] == 4
    assert refs(context["overdue"]) == ["1MM-2026-0001", "1MM-2026-0002", "1MM-2026-0003"]
    assert refs(context["due_today"]) == ["1MM-2026-0006", "1MM-2026-0007", "1MM-2026-0008"]
    assert context["not_listed"] == {"overdue": 2, "due_today": 1, "due_next": 0, "new": 0, "awaiting": 0,
                                     "data_requests": 0, "delivery": 0, "needs_a_look": 0}
    workload = {w["holder"]: (w["open"], w["overdue"]) for w in context["workload"]}
    assert workload["Priya Shah"] == (9, 5)

    assert world.digest().send_now(NOW, ALEX) == 1
    [letter] = world.digests_to(ALEX)
    assert letter["Subject"].endswith("5 overdue, 4 due soon, 0 new")
    text = letter.get_body(("plain",)).get_content()
    assert "OVERDUE (5)" in text and "1MM-2026-0003" in text and "1MM-2026-0004" not in text
    assert "and 2 more overdue, not listed here" in " ".join(text.split())
    assert "Today: and 1 more deadlines, not listed here" in text
    html = " ".join(letter.get_body(("html",)).get_content().split())
    assert "Overdue (5)" in html and "<strong>2 more</strong> overdue" in html and "1MM-2026-0009" not in html


def test_new_cases_waiting_cases_and_data_requests_are_listed_up_to_the_limit_too(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A flood of new mail, or a long queue of decisions, would otherwise make the digest as long as the flood.
    monkeypatch.setattr(digest_service, "LIST_LIMIT", 2)
    with world.session() as s:
        for n in (1, 2, 3):  # new since yesterday
            add_case(s, n, f"new{n}@example.com", NOW - timedelta(hours=n), assignee="priya.shah@1mm.org.uk")
        for n, replied in ((11, at(2026, 11, 18, 9)), (12, at(2026, 11, 10, 9)), (13, at(2026, 11, 12, 9))):
            add_case(s, n, f"wait{n}@example.com", replied, assignee="priya.shah@1mm.org.uk", status="awaiting_staff")
        for n, due in ((21, at(2026, 12, 18)), (22, at(2026, 12, 4)), (23, at(2026, 12, 11))):
            c = add_case(s, n, f"data{n}@example.com", at(2026, 11, 4, 9), assignee="priya.shah@1mm.org.uk",
                         procedure="data_request")
            add_deadline(s, c, "data_request_response", due)
        s.commit()
    context = context_for(world, ALEX)
    counts = context["counts"]
    assert (counts["new"], counts["awaiting"], counts["data_requests"]) == (3, 3, 3)
    assert refs(context["new_cases"]) == ["1MM-2026-0001", "1MM-2026-0002"]
    assert refs(context["awaiting"]) == ["1MM-2026-0012", "1MM-2026-0013"]  # waiting longest first
    assert refs(context["data_requests"]) == ["1MM-2026-0022", "1MM-2026-0023"]  # due soonest first
    assert {k: v for k, v in context["not_listed"].items() if k in ("new", "awaiting", "data_requests")} == {
        "new": 1, "awaiting": 1, "data_requests": 1}

    assert world.digest().send_now(NOW, ALEX) == 1
    [letter] = world.digests_to(ALEX)
    text = " ".join(letter.get_body(("plain",)).get_content().split())
    for line in ("NEW CASES (3)", "and 1 more new cases, not listed here", "WAITING FOR YOUR DECISION (3)",
                 "and 1 more waiting, not listed here (the 2 above have waited longest)",
                 "REQUESTS ABOUT PERSONAL DATA, NOT YET ANSWERED (3)",
                 "and 1 more requests, not listed here (the 2 above are due soonest)"):
        assert line in text, line
    assert "1MM-2026-0003" not in text and "1MM-2026-0011" not in text and "1MM-2026-0021" not in text
    html = " ".join(letter.get_body(("html",)).get_content().split())
    assert "New cases (3)" in html and "<strong>1 more</strong> new cases" in html
    assert "Waiting for your decision (3)" in html and "<strong>1 more</strong> waiting" in html
    assert "not yet answered (3)" in html and "<strong>1 more</strong> requests" in html


@ON_BOTH
def test_the_persistent_count_is_the_complainants_own_messages_whatever_the_case_of_the_address(
        world: World) -> None:
    # Counted by the database per address as written, and compared as Python folds case (SQLite's lower() leaves
    # the "Ë" alone): the complainant writing from their address in capitals is still the complainant.
    with world.session() as s:
        c = add_case(s, 40, "Zoë.Pat@Example.net", at(2026, 11, 2, 9), assignee="priya.shah@1mm.org.uk")
        for n in range(6):
            add_message(s, c, "in", "follow_up", NOW - timedelta(days=2, hours=n), frm="zoë.pat@example.NET")
        for n in range(5):
            add_message(s, c, "in", "follow_up", NOW - timedelta(days=3, hours=n), frm="ZOË.PAT@EXAMPLE.NET")
        for n in range(9):  # their solicitor, copied in: not the complainant's own contact
            add_message(s, c, "in", "follow_up", NOW - timedelta(days=1, hours=n), frm="office@solicitors.example")
        add_message(s, c, "in", "follow_up", NOW - timedelta(days=9), frm="zoë.pat@example.net")  # before the week
        s.commit()
    [row] = context_for(world, ALEX)["persistent"]
    assert (row["ref"], row["messages"]) == ("1MM-2026-0040", 11)
    assert context_for(world, ALEX, threshold=11)["persistent"] == []


@ON_BOTH
def test_a_regional_digest_counts_its_regions_cases_when_they_are_read_a_few_at_a_time(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # The open cases, the running deadlines and a month of complaints are read as they come and checked against
    # the recipient's region a batch at a time; with batches of two, every count still covers every case.
    monkeypatch.setattr(digest_service, "STREAM_BATCH", 2)
    with world.session() as s:
        for n in range(1, 8):  # London: Amira's (a London mentee) and the London coordinator's cases, all overdue
            london_mentee = n % 2 == 1
            c = add_case(s, n, "amira.khan@example.org" if london_mentee else "kim@example.com", at(2026, 11, 2, 9),
                         assignee="priya.shah@1mm.org.uk" if london_mentee else "tom.okafor@1mm.org.uk",
                         stage=2 if london_mentee else 1)
            add_deadline(s, c, "first_response", at(2026, 11, 3 + n, 17, 30))
            add_message(s, c, "in", "new_case", at(2026, 11, 2, 9))
            if london_mentee:  # acknowledged; the coordinator's cases never were
                add_message(s, c, "out", "acknowledgement", at(2026, 11, 2, 9), delivery="sent",
                            sent_at=at(2026, 11, 2, 9, 0, 3))
        for n in range(8, 14):  # the Midlands: Leo's cases, each with a response due on Wednesday
            c = add_case(s, n, "leo.baker@example.org", at(2026, 11, 9, 9), assignee=GARETH)
            add_deadline(s, c, "full_response", at(2026, 11, 25, 12))
            add_message(s, c, "in", "new_case", at(2026, 11, 9, 9))
            add_message(s, c, "out", "acknowledgement", at(2026, 11, 9, 9), delivery="sent",
                        sent_at=at(2026, 11, 9, 9, 0, 5))
        for n in (14, 15):  # resolved London cases: not open, but their acknowledgements are in the month's figures
            c = add_case(s, n, "amira.khan@example.org", at(2026, 11, 3, 9), assignee=HANNAH, status="resolved")
            add_message(s, c, "in", "new_case", at(2026, 11, 3, 9))
            add_message(s, c, "out", "acknowledgement", at(2026, 11, 3, 9), delivery="sent",
                        sent_at=at(2026, 11, 3, 9, 0, 3))
        s.commit()

    london = context_for(world, HANNAH)
    assert london["figures"]["open_total"] == 7
    assert [(b["label"], b["count"]) for b in london["figures"]["by_stage"]] == [("Stage 1", 3), ("Stage 2", 4)]
    assert london["counts"]["overdue"] == 7 and london["counts"]["due"] == 0
    assert refs(london["overdue"]) == [f"1MM-2026-{n:04d}" for n in range(1, 8)]  # longest overdue first
    assert {w["holder"]: (w["open"], w["this_week"], w["overdue"]) for w in london["workload"]} == {
        "Priya Shah": (4, 0, 4), "Tom Okafor": (3, 0, 3)}
    assert (london["figures"]["ack"]["count"], london["figures"]["ack"]["waiting"]) == (6, 3)

    midlands = context_for(world, GARETH)
    assert midlands["figures"]["open_total"] == 6 and midlands["counts"]["overdue"] == 0
    assert {w["holder"]: (w["open"], w["this_week"], w["overdue"]) for w in midlands["workload"]} == {
        "Gareth Lewis": (6, 6, 0)}
    assert midlands["figures"]["ack"] == {"count": 6, "waiting": 0, "median": "5.0 seconds", "worst": "5.0 seconds"}

    everyone = context_for(world, ALEX)
    assert everyone["figures"]["open_total"] == 13 and everyone["counts"]["overdue"] == 7
    assert (everyone["figures"]["ack"]["count"], everyone["figures"]["ack"]["waiting"]) == (12, 3)


def test_intake_can_write_while_a_digest_is_being_put_together(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite has one writer at a time. A digest gathered inside a writer's transaction kept intake (and every
    # "sent" mark) waiting for as long as it took, half a second a recipient at 50,000 open cases; gathered on a
    # reading connection, another writer gets the database at once, and only queueing the letter writes.
    seed(world)
    database = world.engine.url.database  # type: ignore[attr-defined]
    gathered = Digest.context
    writes_meanwhile: list[str] = []

    def gather_while_another_process_writes(self: Digest, session: Session, recipient: object, now: datetime) -> dict:
        context = gathered(self, session, recipient, now)  # type: ignore[arg-type]
        other = sqlite3.connect(database, timeout=0.2, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" after 0.2 s while a writer holds it
            other.execute("ROLLBACK")
            writes_meanwhile.append(recipient.email)  # type: ignore[attr-defined]
        finally:
            other.close()
        return context

    monkeypatch.setattr(Digest, "context", gather_while_another_process_writes)
    assert world.digest().run_due(NOW) == 6
    assert sorted(writes_meanwhile) == sorted(EVERYONE)
    assert len(world.outbox()) == 6
