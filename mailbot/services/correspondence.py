"""Letters and notifications to people: what every letter about a case may say, and who gets which.

The outbox is written here (``queue_letter``: rendered now, sent later by the delivery worker), in the
caller's transaction. ``Correspondence`` holds the few things letters need (who they come from, the
templates, the calendar for dates, the procedures for stage names, the directory for staff) and is
given to the services that write letters: the case lifecycle, the staff desk, the scheduled jobs and
the digest. It decides nothing about the case itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlmodel import Session

from mailbot.domain.attachments import AttachmentNote, choose_for_staff
from mailbot.domain.commands import POSTAL_DOMAIN, command_reference_for
from mailbot.domain.directory import DirectorySource, Reviewers
from mailbot.domain.mail import Attachment, InboundMail, bare_address, html_to_text, parse_mail
from mailbot.domain.procedures import (
    CEO_DIRECT,
    DEADLINE_NEEDS,
    OPEN_STATUSES,
    Procedure,
    next_stage_offered,
    promise,
)
from mailbot.domain.quotes import extract_new_text
from mailbot.domain.signing import signed_address
from mailbot.domain.staff_words import staff_words
from mailbot.domain.webform import status_token
from mailbot.domain.workdays import WorkingCalendar
from mailbot.letters import LetterRenderer, letter_bytes, new_message_id
from mailbot.store import repo
from mailbot.store.db import from_db, to_db
from mailbot.store.models import Case


@dataclass(frozen=True, slots=True)
class QueuedLetter:
    """A letter as it went into the outbox (the row's columns that callers read)."""

    id: int
    case_id: int | None
    message_id: str
    subject: str
    from_addr: str
    to_addrs: str
    kind: str
    at: datetime
    raw: bytes
    automatic: bool
    direction: str = "out"
    delivery: str = "pending"
    trigger_from: str | None = None


@dataclass(frozen=True)
class Sender:
    """Who letters come from and how they are addressed."""

    org_name: str
    address: str
    domain: str
    auto_reply_cap: int


class Correspondence:
    """Writes the letters about cases: to complainants in their own thread, to staff through the signed address."""

    def __init__(self, sender: Sender, secret: bytes, renderer: LetterRenderer, calendar: WorkingCalendar,
                 procedures: dict[str, Procedure], directory: DirectorySource, *,
                 complaints_team_cc: tuple[str, ...] = (),
                 notification_attachments_max: int = 10 * 1024 * 1024,
                 scan: Callable[[tuple[Attachment, ...]], frozenset[str]] | None = None,
                 ceo_address: str | None = None, public_url: str | None = None) -> None:
        self.sender = sender
        # Where the bot's web pages are reached from outside (MAILBOT_PUBLIC_URL): letters link to them.
        self.public_url = public_url.rstrip("/") if public_url else None
        self.secret = secret
        self.renderer = renderer
        self.calendar = calendar
        self.procedures = procedures
        self.directory = directory
        self.complaints_team_cc = complaints_team_cc
        # The most a staff notification carries in attachments, in bytes (the rest are listed).
        self.notification_attachments_max = notification_attachments_max
        # A virus scanner (clamd): the filenames it flags are never attached to staff mail.
        self.scan = scan
        # The address letters give for writing to the Chief Executive directly (MAILBOT_CEO_ADDRESS); by
        # default the email of the member of staff with the ceo role.
        self.ceo_address = ceo_address

    def queue(
        self,
        session: Session,
        *,
        case: Case | None,
        template: str,
        to: list[str],
        context: dict[str, object],
        now: datetime,
        automatic: bool,
        cc: list[str] | None = None,
        reply_to: str | None = None,
        in_reply_to: str | None = None,
        references: list[str] | None = None,
        attachments: list[tuple[str, str, bytes]] | None = None,
        auto_submitted: str | None = "auto-replied",
        from_name: str | None = None,
        trigger_from: str | None = None,
    ) -> QueuedLetter | None:
        """Render a letter and add it to the outbox in the caller's transaction.

        Automatic letters (acknowledgements and the like) respect the per-address cap that stops
        mail loops: to one recipient, and in answer to one From (``trigger_from``; None for a sender the
        caller exempts), at most the cap in 24 hours. A capped letter is not queued, and the case records
        why. Returns the outbox row.
        """
        recipients = [a for a in (bare_address(t) for t in to) if a]
        if not recipients:
            repo.add_event(session, case, now, "letter_skipped", template=template, reason="no recipient address")
            return None
        if automatic:
            sent, caused = repo.automatic_letters(session, recipients[0], trigger_from, repo.cap_window(now))
            if sent >= self.sender.auto_reply_cap:
                repo.add_event(session, case, now, "auto_reply_capped", template=template, to=recipients[0],
                               reason=f"{sent} automatic letters to this address in the last 24 hours")
                return None
            if caused >= self.sender.auto_reply_cap:
                repo.add_event(session, case, now, "auto_reply_capped", template=template, to=recipients[0],
                               sender=trigger_from,
                               reason=f"{caused} automatic letters in answer to mail from {trigger_from} in the last "
                                      f"24 hours")
                return None
        full_context = {"org_name": self.sender.org_name, "address": self.sender.address, **context}
        letter = self.renderer.render(template, full_context)
        message_id = new_message_id(self.sender.domain)
        raw = letter_bytes(
            letter,
            template=template,
            from_name=from_name or self.sender.org_name,
            from_addr=self.sender.address,
            to=recipients,
            cc=cc,
            reply_to=reply_to,
            in_reply_to=in_reply_to,
            references=references,
            message_id=message_id,
            auto_submitted=auto_submitted,
            attachments=attachments,
            date=now,
            extra_headers={"X-Mailbot-Case": case.ref} if case else None,
        )
        envelope = recipients + [a for a in (bare_address(c) for c in (cc or [])) if a and a not in recipients]
        by_post = any(a.endswith("@" + POSTAL_DOMAIN) for a in envelope)
        values = {
            "case_id": repo.case_id(session, case), "direction": "out", "message_id": message_id,
            "subject": letter.subject, "from_addr": self.sender.address, "to_addrs": ",".join(envelope),
            "kind": template,
            "at": to_db(now), "raw": raw, "delivery": "by_post" if by_post else "pending", "automatic": automatic,
            "trigger_from": trigger_from if automatic else None,
        }
        row_id = repo.insert_message(session, values)
        repo.add_event(session, case, now, "letter_queued", template=template, to=",".join(envelope),
                       message_id=message_id)
        if by_post and case is not None:
            self._to_post(session, case, template, letter.subject, letter.text, now)
        # The letter as queued, for the caller: a plain record, not an ORM row (nothing changes it later).
        return QueuedLetter(id=row_id, **values)

    def _to_post(self, session: Session, case: Case, template: str, subject: str, text: str, now: datetime) -> None:
        """A letter for someone with no email address: kept on the case (never sent), and given to the member of
        staff who logged the complaint (copied to its owner) to print and post, attached as text."""
        logged_by = case.from_addr if case.from_addr and self.directory.get().staff_member(case.from_addr) else None
        owners = self.staff_recipients(case)
        to = [logged_by] if logged_by else owners
        self.staff_letter(session, case, "post-this-letter", now, to=to, cc=[a for a in owners if a not in to],
                          attachments=[(f"{case.ref}-{template}.txt", "text/plain", text.encode("utf-8"))],
                          letter_subject=subject, postal_name=case.complainant_name,
                          postal_address=case.postal_address or "(no postal address on the case)",
                          letter_text=text)

    # ---- to the complainant ------------------------------------------------------------------

    def complainant_letter(self, session: Session, case: Case, template: str, now: datetime, *,
                           from_name: str | None = None,
                           attachments: list[tuple[str, str, bytes]] | None = None,
                           **extra: object) -> QueuedLetter | None:
        """A letter carrying a person's decision or words, threaded into the complainant's conversation."""
        thread = self.complainant_thread(session, case)
        return self.queue(session, case=case, template=template, to=[case.complainant],
                          context=self.letter_context(session, case, **extra), now=now, automatic=False,
                          in_reply_to=thread[-1] if thread else None, references=thread, auto_submitted=None,
                          from_name=from_name, attachments=attachments)

    def complainant_thread(self, session: Session, case: Case) -> list[str]:
        """Message ids the complainant has seen, oldest first: their mail and our letters to them."""
        return repo.complainant_thread(session, case.id or 0, case.complainant)

    # ---- to staff ----------------------------------------------------------------------------

    def staff_recipients(self, case: Case) -> list[str]:
        """The assignee, or the complaints team when nobody is assigned."""
        if case.assignee:
            return [case.assignee]
        team = self.directory.get().with_role("complaints_team")
        return [member.email for member in team[:1]]

    def staff_name(self, email: str) -> str:
        member = self.directory.get().staff_member(email)
        return member.name if member else email

    def staff_words(self, body: str, staff: str) -> dict[str, object]:
        """A member of staff's words for a letter to the complainant: the letter adds a greeting only when they
        wrote none, and their name only when they did not sign (``domain.staff_words``)."""
        name = self.staff_name(staff)
        words = staff_words(body, name)
        return {"staff_greeting": words.greeting, "staff_text": words.body, "staff_signed": words.signed,
                "staff_name": name}

    def reply_address(self, case: Case) -> str:
        return signed_address(case.ref, self.secret, self.sender.address)

    def staff_letter(self, session: Session, case: Case, template: str, now: datetime, *,
                     to: list[str] | None = None, cc: list[str] | None = None,
                     attachments: list[tuple[str, str, bytes]] | None = None,
                     deadlines: dict[str, datetime] | None = None, **extra: object) -> QueuedLetter | None:
        """A letter to staff about a case, answerable in the thread through the signed reply address."""
        recipients = to if to is not None else self.staff_recipients(case)
        if not recipients:
            repo.add_event(session, case, now, "letter_skipped", template=template,
                           reason="nobody to send it to: no assignee and no complaints_team in data/staff.toml")
            return None
        copy = [a for a in (cc or []) if a not in recipients]
        if template in LEADS_WITH_WHAT_IS_NEEDED:
            extra.setdefault("needed", self.needed(session, case, deadlines))
        reply_address = self.reply_address(case)  # signed (an HMAC): once a letter
        context = self.letter_context(session, case, deadlines=deadlines, reply_address=reply_address, **extra)
        first = repo.first_message_id(session, case.id or 0)
        return self.queue(session, case=case, template=template, to=recipients, cc=copy, context=context, now=now,
                          automatic=False, reply_to=reply_address, auto_submitted="auto-generated",
                          references=[first] if first else [], attachments=attachments)

    def notify_staff(self, session: Session, case: Case, mail: InboundMail, now: datetime, *, headline: str,
                     claimed_staff: bool = False, notes: list[str] | None = None,
                     deadlines: dict[str, datetime] | None = None) -> list[QueuedLetter]:
        """The assignee's copy of a complainant's message, answerable in the thread."""
        chosen = self.attachments_for_staff(mail)
        letter = self.staff_letter(
            session, case, "staff-notification", now, cc=list(self.complaints_team_cc), deadlines=deadlines,
            attachments=[(a.filename, a.content_type, a.payload)
                         for a, note in zip(mail.attachments, chosen) if note.attached],
            **{**self.notification_context(case, mail, headline=headline, claimed_staff=claimed_staff, notes=notes),
               "attachments_listed": chosen},
        )
        return [letter] if letter else []

    def attachments_for_staff(self, mail: InboundMail) -> list[AttachmentNote]:
        """Each attachment of the message, attached to the staff copy or listed with the reason it is not."""
        if not mail.attachments:
            return []
        flagged = self.scan(mail.attachments) if self.scan is not None else frozenset()
        return choose_for_staff([(a.filename, a.content_type, len(a.payload)) for a in mail.attachments],
                                self.notification_attachments_max, flagged)

    def notification_context(self, case: Case, mail: InboundMail | None, *, headline: str,
                             claimed_staff: bool = False, notes: list[str] | None = None) -> dict[str, object]:
        return {
            "headline": headline, "claimed_staff": claimed_staff, "notes": [n for n in (notes or []) if n],
            "sender": mail.from_addr if mail else "",
            "sender_display": (f"{mail.from_name} <{mail.from_addr}>" if mail.from_name else mail.from_addr)
            if mail else "",
            "complainant": case.complainant, "assignee": case.assignee, "category": case.category,
            "attachment_names": [a.filename for a in mail.attachments] if mail else [],
            # This copy carries no files (notify_staff replaces the list with what it attaches).
            "attachments_listed": [AttachmentNote(a.filename, len(a.payload), False, "not attached to this copy")
                                   for a in mail.attachments] if mail else [],
            "message_text": (mail.text.strip() if mail else "") or "(no text)",
            "command_reference": command_reference_for(case.status),
        }

    def needed(self, session: Session, case: Case, deadlines: dict[str, datetime] | None = None) -> str:
        """What the case needs from its owner now, and by when: the first line of a staff notification.

        ``deadlines``: the ones just set (a new case or stage), which saves reading them back."""
        if case.status == "awaiting_staff":
            return ("your decision on the complainant's reply to the outcome: #escalate to pass it to the next "
                    "stage, or #stay with your answer")
        if case.status not in OPEN_STATUSES:
            return ""
        if deadlines is None:
            deadlines = {row.name: from_db(row.due_at) for row in repo.open_deadlines(session, case.id or 0)
                         if row.due_at is not None}  # type: ignore[misc]
        if not deadlines:
            return "a reply to the complainant"
        name, when = min(deadlines.items(), key=lambda item: item[1])
        what = DEADLINE_NEEDS.get(name, name.replace("_", " "))
        return f"{what} by {self.calendar.format_datetime(when)}"

    def safeguarding_alert(self, session: Session, case: Case, mail: InboundMail | None, now: datetime,
                           reason: str) -> list[QueuedLetter]:
        leads = [m.email for m in self.directory.get().with_role("safeguarding_lead")]
        if not leads:
            repo.add_event(session, case, now, "letter_skipped", template="safeguarding-alert",
                           reason="no safeguarding_lead in data/staff.toml")
            return []
        repo.add_event(session, case, now, "safeguarding_alert", reason=reason, to=",".join(leads))
        letter = self.staff_letter(session, case, "safeguarding-alert", now, to=leads, reason=reason,
                                   complainant=case.complainant, assignee=case.assignee,
                                   message_text=(mail.text.strip() if mail else "") or "(no text)")
        return [letter] if letter else []

    def escalation_notice(self, session: Session, case: Case, request: InboundMail | None, now: datetime, *,
                          reviewers: Reviewers, reason: str,
                          deadlines: dict[str, datetime]) -> QueuedLetter | None:
        """The new stage's reviewer hears at once, with the whole case: who asked, why, by when, and its history."""
        stage = self.procedures[case.procedure].stage(case.stage)
        notes = []
        if reviewers.passed_over:
            names = ", ".join(self.staff_name(e) for e in reviewers.passed_over)
            notes.append(f"The complaint is about {names}, so the case was not given to them and they are not "
                         f"copied.")
        if reviewers.assignee is None and stage.reviewer_role != "assigned_contact":
            notes.append(f"Nobody in data/staff.toml can review this stage (the {stage.reviewer_role} role): "
                         f"the complaints team has the case until someone is assigned with #assign.")
        context = self.notification_context(case, request, headline=f"Escalated to {stage.label}", notes=notes)
        context.update(reason=reason, has_request=request is not None, history=self.case_history(session, case))
        return self.staff_letter(session, case, "escalation-review", now,
                                 cc=[*reviewers.copied, *self.complaints_team_cc], deadlines=deadlines, **context)

    def case_history(self, session: Session, case: Case) -> list[dict[str, str]]:
        """The conversation with the complainant and the internal notes, oldest first, for a new reviewer.

        Staff copies of the complainant's mail are left out (the mail itself is there), and so are staff
        replies as they arrived (the letters they became are there, without the commands).
        """
        items: list[tuple[datetime, str, str]] = []
        for row in repo.case_messages(session, case.id or 0):
            at = from_db(row.at)
            assert at is not None
            if row.direction == "in" and row.kind != "staff_reply":
                mail = parse_mail(row.raw)
                text = extract_new_text(mail.text, mail.html) or mail.text
                items.append((at, f"from {mail.from_addr}: {mail.subject}", text))
            elif row.direction == "out" and case.complainant in (row.to_addrs or "").split(","):
                letter = parse_mail(row.raw)
                text = (f"(our standard {row.kind} letter)" if row.kind in STANDARD_LETTERS else letter.text)
                items.append((at, f"our letter to {case.complainant} ({row.kind}): {letter.subject}", text))
        for at, _, detail in repo.case_events(session, case.id or 0, ("internal_note",)):
            items.append((at, "internal note", str(detail.get("text", ""))))
        items.sort(key=lambda item: item[0])
        return [{"when": self.calendar.format_datetime(at), "what": what, "text": _excerpt(text)}
                for at, what, text in items]

    def alert_unreadable(self, session: Session, case: Case | None, mail: InboundMail, problems: list[str],
                         now: datetime) -> list[QueuedLetter]:
        """Tell staff about mail the bot could not read or could not process, so a person deals with it."""
        recipients = self.staff_recipients(case) if case else [
            m.email for m in self.directory.get().with_role("complaints_team")[:1]]
        if not recipients:
            return []
        letter = self.queue(
            session, case=case, template="unreadable-alert", to=recipients, cc=list(self.complaints_team_cc),
            now=now, automatic=False, auto_submitted="auto-generated",
            context={"ref": case.ref if case else None, "sender": mail.from_addr, "subject": mail.subject,
                     "message_id": mail.message_id, "defects": problems},
        )
        return [letter] if letter else []

    # ---- what staff wrote and read -----------------------------------------------------------

    def last_complainant_message(self, session: Session, case: Case) -> InboundMail | None:
        raw = repo.last_raw_from(session, case.id or 0, case.complainant)
        return parse_mail(raw) if raw is not None else None

    def staff_only_texts(self, session: Session, case: Case) -> list[str]:
        """The words of every staff-only letter on the case, as its text and its HTML part read.

        A staff reply quotes one of these; nothing in them may reach the complainant, however the
        staff member's client quoted, wrapped or forwarded it.
        """
        texts: list[str] = []
        for raw in repo.letters_not_to(session, case.id or 0, case.complainant):
            letter = parse_mail(raw)
            texts.append(f"{letter.subject}\n{letter.text}")
            if letter.html:
                texts.append(html_to_text(letter.html))
        return texts

    # ---- letter context ----------------------------------------------------------------------

    def next_stage_context(self, case: Case) -> dict[str, object]:
        """What an outcome (or an answer to a reply) says about the next stage, if the procedure offers one:
        who reviews it, how to reach it (a reply, or writing to the CEO directly) and by when they answer."""
        following = next_stage_offered(self.procedures[case.procedure], case.stage)
        if following is None:
            return {"next_stage": "", "next_stage_direct": False, "next_stage_promise": ""}
        spec = next((d for d in following.deadlines if d.name == "stage_response"), None)
        return {"next_stage": following.reviewer_label,
                "next_stage_direct": following.entry == CEO_DIRECT,
                "next_stage_promise": promise(spec) if spec else ""}

    def ceo_address_now(self) -> str:
        """MAILBOT_CEO_ADDRESS, else the email of the staff member with the ceo role (the directory may change)."""
        if self.ceo_address:
            return self.ceo_address
        ceo = self.directory.get().first_with_role("ceo")
        return ceo.email if ceo else self.sender.address

    def deadline_phrases(self, case: Case, deadlines: dict[str, datetime]) -> dict[str, str]:
        """'the end of Tuesday 24 November 2026', or an exact time for hour-based promises."""
        procedure = self.procedures[case.procedure]
        units = {spec.name: spec.unit for stage in procedure.stages for spec in stage.deadlines
                 if stage.number == case.stage}
        phrases = {}
        for name, due in deadlines.items():
            if units.get(name) == "hours":
                phrases[name] = self.calendar.format_datetime(due)
            else:
                phrases[name] = f"the end of {self.calendar.format_date(due)}"
        return phrases

    def letter_context(self, session: Session, case: Case, deadlines: dict[str, datetime] | None = None,
                       **extra: object) -> dict[str, object]:
        """What every letter about a case may say; ``deadlines`` saves a query when the caller just set them."""
        procedure = self.procedures[case.procedure]
        stage = procedure.stage(case.stage)
        if deadlines is None:
            deadlines = repo.active_deadlines(session, case.id or 0)
        opened = from_db(case.opened_at)
        assert opened is not None
        return {
            "ref": case.ref,
            "case_subject": case.subject or "(no subject)",
            "complainant_name": case.complainant_name,
            "complainant": case.complainant,
            "greeting": f"Dear {case.complainant_name}" if case.complainant_name else "Hello",
            "procedure": procedure.key,
            "procedure_title": procedure.title,
            "stage": case.stage,
            "stage_label": stage.label,
            "reviewer": stage.reviewer_label,
            "received": self.calendar.format_date(opened),
            "deadlines": self.deadline_phrases(case, deadlines),
            "ceo_address": self.ceo_address_now(),
            "status_link": self.status_link(case) or "",
            "privacy_link": f"{self.public_url}/complaints/privacy" if self.public_url else "",
            **extra,
        }

    def status_link(self, case: Case) -> str | None:
        """The complainant's private status page, when the pages are reachable and the case has one (a person
        with no email address gets no link: their letters are posted)."""
        if not self.public_url or not case.status_nonce or case.complainant.endswith(f"@{POSTAL_DOMAIN}"):
            return None
        return f"{self.public_url}/cases/{case.ref}/{status_token(self.secret, case.ref, case.status_nonce)}"


# Staff letters that open with what the case needs from its owner, and by when.
LEADS_WITH_WHAT_IS_NEEDED = frozenset({"staff-notification", "escalation-review"})
# Letters whose words are the same for everyone: a reviewer's history names them and leaves the text out.
STANDARD_LETTERS = frozenset({"acknowledgement", "acknowledge-only", "escalation", "staff-redirect"})
# How much of each message a reviewer's history shows (the whole case stays in `mailbot case`).
HISTORY_EXCERPT_CHARS = 3000


def _excerpt(text: str) -> str:
    text = text.strip() or "(no text)"
    if len(text) <= HISTORY_EXCERPT_CHARS:
        return text
    return text[:HISTORY_EXCERPT_CHARS].rstrip() + "\n[... the rest is on the case: mailbot case REF]"
