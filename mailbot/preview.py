"""``mailbot letters --preview DIR``: every letter, filled with sample data, for staff to review the wording.

The sample case is worked out with the real calendar and procedures, so the dates in the preview
are the ones the bot would write for a complaint arriving at the sample time.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from mailbot.data_files import load_procedures, load_signposts
from mailbot.domain.attachments import choose_for_staff
from mailbot.domain.commands import COMMAND_REFERENCE
from mailbot.domain.procedures import (
    CEO_DIRECT,
    Procedure,
    signposting,
    stage_deadlines,
)
from mailbot.domain.restrictions import contact_option
from mailbot.domain.workdays import WorkingCalendar
from mailbot.letters import LetterRenderer, build_message, new_message_id

# A Monday morning complaint, so every promise has an ordinary date.
SAMPLE_RECEIVED = datetime(2026, 12, 14, 10, 15, tzinfo=timezone.utc)
# Letters that only make sense once a later stage is reached use that stage's context.
LATER_STAGE_LETTERS = frozenset({"escalation", "escalation-review"})


def sample_context(procedure: Procedure, calendar: WorkingCalendar, signposts: tuple, *, org_name: str,
                   address: str, stage: int = 1, letter: str = "") -> dict[str, object]:
    """Every variable any letter uses, with realistic values (including text that must be escaped)."""
    started = SAMPLE_RECEIVED
    spec_units = {spec.name: spec.unit for spec in procedure.stage(stage).deadlines}
    deadlines = stage_deadlines(procedure, stage, started, calendar)
    phrases = {name: (calendar.format_datetime(due) if spec_units.get(name) == "hours"
                      else f"the end of {calendar.format_date(due)}") for name, due in deadlines.items()}
    nxt = procedure.stage(stage + 1) if stage < procedure.last_stage else None
    return {
        "org_name": org_name, "address": address, "ref": "1MM-2026-0042",
        "case_subject": "Nobody called me back <about volunteering>", "complainant_name": "Jane Doe",
        "complainant": "jane.doe@example.com", "greeting": "Dear Jane Doe", "procedure": procedure.key,
        "procedure_title": procedure.title, "stage": stage, "stage_label": procedure.stage(stage).label,
        "reviewer": procedure.stage(stage).reviewer_label, "received": calendar.format_date(started),
        "deadlines": phrases,
        "staff_greeting": "Dear Jane,", "staff_signed": False,
        "staff_text": "Thank you for your patience. We have looked into what happened & why.\n\n"
                      "We are sorry: your call back was missed because of a rota error.",
        "staff_name": "Priya Shah", "outcome": "partly-upheld",
        "signposts": signposting(signposts, "fundraising", started, calendar),
        "next_stage": f"{nxt.reviewer_label} ({nxt.label})" if nxt else "",
        "next_stage_direct": bool(nxt and nxt.entry == CEO_DIRECT), "next_stage_promise": "within 7 working days",
        "ceo_address": "ceo@1mm.org.uk", "has_request": True, "formal": True, "upheld": True, "direct_to_ceo": False,
        "letter_subject": "[1MM-2026-0042] We have received your complaint", "postal_name": "Jane Doe",
        "postal_address": "12 High Street, Leeds LS1 1AA", "letter_text": "Dear Jane Doe,\n\nThank you.",
        "needed": "a first response to the complainant (reply to this email) by 5:30pm on Tuesday 15 December 2026",
        "history": [{"when": "10:15am on Monday 14 December 2026", "what": "from jane.doe@example.com: Complaint",
                     "text": "I applied in September and was promised a call back."},
                    {"when": "4:00pm on Tuesday 15 December 2026", "what": "internal note",
                     "text": "Called the coordinator <on leave>."}],
        "new_date": f"the end of {calendar.format_date(calendar.add_working_days(started.date(), 10))}",
        "reason": "we are waiting to speak to the coordinator, who is on leave",
        "headline": "New complaint", "claimed_staff": letter == "staff-notification",
        "notes": ["This is a sample note."], "sender": "jane.doe@example.com",
        "sender_display": "Jane Doe <jane.doe@example.com>", "assignee": "priya.shah@1mm.org.uk",
        "category": "service", "attachment_names": ["letter.pdf", "video.mov"],
        "attachments_listed": choose_for_staff([("letter.pdf", "application/pdf", 120_000),
                                                ("video.mov", "video/quicktime", 31_000_000)], 10 * 1024 * 1024),
        "message_text": "I applied in September and was promised a call back. <b>Nobody called.</b>",
        "command_reference": COMMAND_REFERENCE, "reply_address": "complaints+1mm-2026-0042.sample@1mm.org.uk",
        "deadline_name": "full_response", "deadline_label": "full response",
        "due": calendar.format_datetime(deadlines.get("full_response", started)), "overdue_by": "3 hours",
        "defects": ["no sender", "broken MIME boundary"], "subject": "(unreadable)",
        "message_id": "sample@example.com", "mentor_name": "Daniel Price", "warning": "a formal warning",
        "final": False, "mentor": "daniel.price@example.com",
        "decision_by": calendar.format_date(calendar.deadline(started, 14, "days")), "mode": "acknowledge-only",
        "months": 6, "until": "Monday 14 June 2027", "review": "Monday 14 June 2027",
        "options": [contact_option({"kind": "letters_only"})], "ended": "Monday 14 June 2027",
        "detail": "A sample note for staff.", "done": ["Assigned the case to Priya Shah."],
        "problems": [], "sections": [], "figures": {}, "nothing_new": False,
        "status_link": "https://complaints.1mm.org.uk/cases/1MM-2026-0042/sample-token",
        "privacy_link": "https://complaints.1mm.org.uk/complaints/privacy",
        "raised": True, "words": "complaints@imap.example.org/INBOX: sign-in refused (LoginError: AUTHENTICATE failed)",
        "condition": "sign-in:complaints@imap.example.org/INBOX", "host": "mailbot-1",
        "advice": "Run `mailbot auth test` on the bot's host: it says which server refused and why.",
    }


def write_previews(settings, folder: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    from mailbot.bootstrap import REPO_ROOT

    data_file = settings.data_dir / "procedures.toml"
    if not data_file.exists():
        data_file = REPO_ROOT / "data" / "procedures.toml"
    procedures = load_procedures(data_file)
    signposts = load_signposts(data_file)
    calendar = WorkingCalendar(settings.timezone)
    renderer = LetterRenderer(settings.templates_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for key, procedure in procedures.items():
        for name in renderer.names():
            if name == "digest":
                continue  # the digest has its own preview: mailbot digest --preview FILE.html
            if name in LATER_STAGE_LETTERS and procedure.last_stage == 1:
                continue
            stage = 2 if name in LATER_STAGE_LETTERS else 1
            context = sample_context(procedure, calendar, signposts, org_name=settings.org_name,
                                     address=settings.address, stage=stage, letter=name)
            letter = renderer.render(name, context)
            msg = build_message(letter, template=name, from_name=settings.org_name, from_addr=settings.address,
                                to=["jane.doe@example.com"], message_id=new_message_id(settings.domain))
            eml = folder / f"{key}-{name}.eml"
            html = folder / f"{key}-{name}.html"
            eml.write_bytes(msg.as_bytes())
            html.write_text(letter.html, encoding="utf-8")
            written += [eml, html]
    return written
