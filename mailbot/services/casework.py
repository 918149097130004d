"""What happens to a case when a message arrives: opening it, following up, filing automated mail.

This is the thin layer between the pure procedure engine and the store: it reads the case,
asks the domain what the procedure requires, and writes the result (case fields, deadlines,
events and letters) into the caller's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, insert
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from mailbot.domain import categories
from mailbot.domain.attachments import AttachmentNote, choose_for_staff
from mailbot.domain.chain import Verdict
from mailbot.domain.commands import COMMAND_REFERENCE
from mailbot.domain.directory import DirectoryFiles, assigned_contact, choose_procedure
from mailbot.domain.mail import Attachment, InboundMail, header_safe, html_to_text, parse_mail
from mailbot.domain.procedures import Procedure, Signpost, stage_deadlines
from mailbot.domain.quotes import extract_new_text
from mailbot.domain.restrictions import inbound_action
from mailbot.domain.rules import is_own_address
from mailbot.domain.signing import signed_address
from mailbot.domain.workdays import WorkingCalendar
from mailbot.letters import LetterRenderer
from mailbot.services.compose import QueuedLetter, Sender, queue_letter
from mailbot.store import repo
from mailbot.store.db import from_db, to_db
from mailbot.store.models import (
    CASE_TABLE,
    DEADLINE_TABLE,
    MESSAGE_TABLE,
    RESTRICTION_TABLE,
    Case,
    Deadline,
    MailMessage,
    Restriction,
)
from mailbot.store.prebuilt import Prebuilt

log = logging.getLogger(__name__)

# Words that ask plainly for an escalation when a complainant replies to a resolved case.
ESCALATION_PHRASES = (
    "escalate", "not satisfied", "unsatisfied", "dissatisfied", "not happy", "unhappy with", "appeal",
    "take this further", "review my complaint", "not resolved", "next stage",
)


_INSERT_DEADLINES = Prebuilt(insert(DEADLINE_TABLE))
# Asked for every new case and every letter to staff: built once (see store.repo).
_RESTRICTED_ELSEWHERE = Prebuilt(
    sa_select(CASE_TABLE.c.ref, RESTRICTION_TABLE.c.mode)
    .join(CASE_TABLE, CASE_TABLE.c.id == RESTRICTION_TABLE.c.case_id)
    .where(RESTRICTION_TABLE.c.complainant == bindparam("complainant"), RESTRICTION_TABLE.c.state == "restricted",
           RESTRICTION_TABLE.c.case_id != bindparam("case_id"))
    .order_by(RESTRICTION_TABLE.c.id)
)
_FIRST_MESSAGE_ID = Prebuilt(
    sa_select(MESSAGE_TABLE.c.message_id).where(MESSAGE_TABLE.c.case_id == bindparam("case_id"))
    .order_by(MESSAGE_TABLE.c.id).limit(1))


# Statuses in which the procedure's clocks run.
OPEN_STATUSES = ("open", "awaiting_staff")


@dataclass
class CaseworkConfig:
    sender: Sender
    own_addresses: frozenset[str]
    timezone: str
    secret: bytes
    complaints_team_cc: tuple[str, ...] = ()
    form_senders: frozenset[str] = frozenset()
    # The most a staff notification carries in attachments, in bytes (the rest are listed).
    notification_attachments_max: int = 10 * 1024 * 1024


class Casework:
    def __init__(self, config: CaseworkConfig, renderer: LetterRenderer, calendar: WorkingCalendar,
                 procedures: dict[str, Procedure], directory: DirectoryFiles,
                 signposts: tuple[Signpost, ...] = (),
                 scan: Callable[[tuple[Attachment, ...]], frozenset[str]] | None = None) -> None:
        self.config = config
        # A virus scanner (clamd): the filenames it flags are never attached to staff mail.
        self.scan = scan
        self.signposts = signposts
        self.renderer = renderer
        self.calendar = calendar
        self.procedures = procedures
        self.directory = directory
        self.zone = ZoneInfo(config.timezone)

    # ---- opening -----------------------------------------------------------------------------

    def is_ours(self, address: str) -> bool:
        """One of our own addresses, any address at our domain, or a member of staff's."""
        address = address.lower()
        return (is_own_address(address, self.config.own_addresses)
                or address.rpartition("@")[2] == self.config.sender.domain
                or self.directory.get().staff_member(address) is not None)

    def complainant_of(self, mail: InboundMail) -> str:
        """The Reply-To address when it is not ours, else From.

        Web forms put the person in Reply-To, and a forged From is no harder than a forged Reply-To,
        so Reply-To is believed; but it never makes one of our own people, or our own domain, the
        complainant: an outsider could otherwise open a case in the CEO's name and hear nothing.
        """
        for addr in mail.reply_to:
            if addr and not self.is_ours(addr):
                return addr
        return mail.from_addr

    def cap_sender(self, mail: InboundMail) -> str | None:
        """The From address counted against the cap on automatic letters, or None when exempt.

        A form sender carries many real complainants, and our own staff are never a robot loop.
        """
        sender = mail.from_addr.lower()
        if not sender or sender in self.config.form_senders or self.is_ours(sender):
            return None
        return sender

    def open_case(self, session: Session, mail: InboundMail, received_at: datetime, now: datetime) -> Case:
        complainant = self.complainant_of(mail)
        directory = self.directory.get()
        procedure_key = choose_procedure(directory, complainant)
        if procedure_key not in self.procedures:
            procedure_key = "external"
        year = received_at.astimezone(self.zone).year
        seq, ref = repo.allocate_ref(session, year)
        category = categories.guess_category(mail.subject, mail.text)
        name = mail.from_name if complainant == mail.from_addr else ""
        case = repo.insert_case(
            session, ref=ref, year=year, seq=seq, status="open", stage=1, procedure=procedure_key,
            complainant=complainant, complainant_name=header_safe(name), subject=header_safe(mail.subject)[:500],
            from_addr=mail.from_addr, reply_to=",".join(mail.reply_to)[:500] or None,
            category=category,
            assignee=assigned_contact(directory, complainant),
            opened_at=to_db(received_at), stage_started_at=to_db(received_at), updated_at=to_db(now),
        )
        repo.add_event(session, case, now, "case_opened", procedure=procedure_key, complainant=complainant,
                       assignee=case.assignee, category=category, message_id=mail.message_id,
                       from_addr=mail.from_addr, reply_to=list(mail.reply_to))
        return case

    # ---- dispatch ----------------------------------------------------------------------------

    def handle(self, session: Session, verdict: Verdict, mail: InboundMail, message: repo.InboundRow,
               case: Case | None, received_at: datetime, now: datetime) -> list[QueuedLetter]:
        handler = {
            "new_case": self._on_new_case,
            "follow_up": self._on_follow_up,
            "automated": self._on_automated,
            "unreadable": self._on_unreadable,
        }[verdict.action]
        return handler(session, verdict, mail, message, case, received_at, now)

    def _on_new_case(self, session: Session, verdict: Verdict, mail: InboundMail, message: repo.InboundRow,
                     case: Case | None, received_at: datetime, now: datetime) -> list[QueuedLetter]:
        assert case is not None
        procedure = self.procedures[case.procedure]
        letters: list[QueuedLetter] = []
        if procedure.closes_on_open_as:
            case.status = procedure.closes_on_open_as
            case.closed_at = to_db(now)
            repo.add_event(session, case, now, "case_closed", reason=f"closed as {case.status} by the procedure")
        deadlines = {} if procedure.closes_on_open_as else \
            self._set_stage_deadlines(session, case, procedure, 1, received_at, fresh=True)
        letter = queue_letter(
            session, self.renderer, self.config.sender, case=case, template=procedure.letters["open"],
            to=[case.complainant], context=self.letter_context(session, case, deadlines=deadlines), now=now,
            automatic=True, trigger_from=self.cap_sender(mail),
            in_reply_to=mail.message_id if mail.has_message_id else None,
            references=list(mail.references) + ([mail.message_id] if mail.has_message_id else []),
        )
        if letter:
            letters.append(letter)
        if not procedure.closes_on_open_as:
            notes = [f"{case.complainant} is under a restriction on {ref} ({mode}). The procedure says new "
                     f"complaints are treated on their merits; reply #merge {ref} if this is the same matter."
                     for ref, mode in self.restrictions_elsewhere(session, case, mail)]
            if notes:
                repo.add_event(session, case, now, "restricted_elsewhere", notes=notes)
            letters += self.notify_staff(session, case, mail, now, headline="New complaint", notes=notes,
                                         deadlines=deadlines)
            terms = categories.safeguarding_concern(mail.subject, mail.text)
            if terms:
                letters += self.safeguarding_alert(session, case, mail, now,
                                                   reason=f"the complaint mentions: {', '.join(terms)}")
        return [x for x in letters if x is not None]

    def _on_follow_up(self, session: Session, verdict: Verdict, mail: InboundMail, message: repo.InboundRow,
                      case: Case | None, received_at: datetime, now: datetime) -> list[QueuedLetter]:
        assert case is not None
        repo.add_event(session, case, now, "message_received", message_id=mail.message_id, sender=mail.from_addr,
                       thread_rule=verdict.thread.rule if verdict.thread else "")
        if verdict.claimed_staff:
            repo.add_event(session, case, now, "unverified_staff_mail", sender=mail.from_addr,
                           reason="staff From without the signed case address or trusted authentication")
        case.updated_at = to_db(now)
        restriction = self.active_restriction(session, case)
        # A restriction follows the person, by From or by Reply-To: adding a Reply-To does not escape it.
        if restriction is not None and not verdict.claimed_staff and \
                restriction.complainant in (mail.from_addr, *mail.reply_to):
            return self._under_restriction(session, restriction, case, mail, message, now)
        notes: list[str] = []
        if case.status == "resolved":
            notes.append(self._escalation_request(session, case, mail, received_at, now))
        elif case.status in ("closed", "redirected", "merged"):
            notes.append(f"This case is {case.status}; the message reopened nothing. Reply #reopen to reopen it.")
        letters = self.notify_staff(session, case, mail, now, headline="New message from the complainant",
                                    claimed_staff=verdict.claimed_staff, notes=notes)
        return letters

    def _on_automated(self, session: Session, verdict: Verdict, mail: InboundMail, message: repo.InboundRow,
                      case: Case | None, received_at: datetime, now: datetime) -> list[QueuedLetter]:
        auto = verdict.automated
        if auto and auto.bounced_message_ids:
            for mid in auto.bounced_message_ids:
                letter = repo.outbound_by_message_id(session, mid)
                if letter is not None:
                    letter.delivery = "undelivered"
                    letter.last_error = f"bounced: {', '.join(auto.failed_recipients) or 'see the bounce'}"
                    bounced_case = session.get(Case, letter.case_id) if letter.case_id else None
                    repo.add_event(session, bounced_case, now, "letter_undelivered", template=letter.kind,
                                   message_id=mid, failed_recipients=list(auto.failed_recipients))
                    if case is None and bounced_case is not None:
                        case = bounced_case
                        message.case_id = case.id
        repo.add_event(session, case, now, "automated_mail_filed", kind=verdict.kind, message_id=mail.message_id,
                       sender=mail.from_addr, reasons=list(verdict.rules))
        return []

    def _on_unreadable(self, session: Session, verdict: Verdict, mail: InboundMail, message: repo.InboundRow,
                       case: Case | None, received_at: datetime, now: datetime) -> list[QueuedLetter]:
        repo.add_event(session, case, now, "unreadable_mail", message_id=mail.message_id, sender=mail.from_addr,
                       defects=list(mail.defects[:5]))
        return self.alert_unreadable(session, case, mail, list(mail.defects[:5]) or ["unknown"], now)

    def alert_unreadable(self, session: Session, case: Case | None, mail: InboundMail, problems: list[str],
                         now: datetime) -> list[QueuedLetter]:
        """Tell staff about mail the bot could not read or could not process, so a person deals with it."""
        recipients = self.staff_recipients(case) if case else [
            m.email for m in self.directory.get().with_role("complaints_team")[:1]]
        if not recipients:
            return []
        letter = queue_letter(
            session, self.renderer, self.config.sender, case=case, template="unreadable-alert", to=recipients,
            cc=list(self.config.complaints_team_cc), now=now, automatic=False, auto_submitted="auto-generated",
            context={"ref": case.ref if case else None, "sender": mail.from_addr, "subject": mail.subject,
                     "message_id": mail.message_id, "defects": problems},
        )
        return [letter] if letter else []

    # ---- restrictions ------------------------------------------------------------------------

    def active_restriction(self, session: Session, case: Case) -> Restriction | None:
        return session.exec(select(Restriction).where(Restriction.case_id == case.id,
                                                      Restriction.state == "restricted")).first()

    def restrictions_elsewhere(self, session: Session, case: Case,
                               mail: InboundMail | None = None) -> list[tuple[str, str]]:
        """The person's restrictions on their other cases (almost always none), by either of their addresses."""
        session.flush()  # restrictions are ORM rows: a pending one must count
        people = dict.fromkeys([case.complainant, *((mail.from_addr, *mail.reply_to) if mail else ())])
        found: dict[str, str] = {}
        for person in people:
            if not person:
                continue
            rows = _RESTRICTED_ELSEWHERE.rows(session.connection(), {"complainant": person, "case_id": case.id})
            found.update((ref, mode or "") for ref, mode in rows if ref not in found)
        return list(found.items())

    def _under_restriction(self, session: Session, restriction: Restriction, case: Case, mail: InboundMail,
                           message: repo.InboundRow, now: datetime) -> list[QueuedLetter]:
        """Read and kept, never dropped; answered at most once a day in acknowledge-only mode, never in silent."""
        last = from_db(restriction.last_acknowledged_at)
        today = self.calendar.local(now).date()
        action = inbound_action(restriction.mode or "", self.calendar.local(last).date() if last else None, today,
                                f"{mail.subject}\n{mail.text}")
        if action == "notify":
            message.kind = "follow_up"
            repo.add_event(session, case, now, "restricted_mail_challenge", message_id=mail.message_id)
            return self.notify_staff(session, case, mail, now, headline="A challenge to the restriction",
                                     notes=["The complainant is restricted on this case, but this message looks like "
                                            "a challenge to the decision, so it is passed to you as usual."])
        if action == "acknowledge":
            message.kind = "restricted_acknowledged"
            restriction.last_acknowledged_at = to_db(now)
            repo.add_event(session, case, now, "restricted_mail_acknowledged", message_id=mail.message_id)
            thread = self.complainant_thread(session, case)
            letter = queue_letter(session, self.renderer, self.config.sender, case=case, template="acknowledge-only",
                                  to=[case.complainant], context=self.letter_context(session, case), now=now,
                                  automatic=True, trigger_from=self.cap_sender(mail),
                                  in_reply_to=mail.message_id if mail.has_message_id else None,
                                  references=thread)
            return [letter] if letter else []
        message.kind = "restricted_filed"
        repo.add_event(session, case, now, "restricted_mail_filed", message_id=mail.message_id,
                       mode=restriction.mode)
        return []

    # ---- procedure steps ---------------------------------------------------------------------

    def _escalation_request(self, session: Session, case: Case, mail: InboundMail, received_at: datetime,
                            now: datetime) -> str:
        """A complainant's reply to a resolved case; returns a note for the staff notification."""
        text = f"{mail.subject}\n{extract_new_text(mail.text, mail.html)}".lower()
        procedure = self.procedures[case.procedure]
        if case.stage >= procedure.last_stage:
            repo.add_event(session, case, now, "filed_after_last_stage", message_id=mail.message_id)
            return "The case has been through every stage of the procedure; the message is filed on it."
        if any(phrase in text for phrase in ESCALATION_PHRASES):
            self.escalate(session, case, now, reason="the complainant asked for a review", started_at=received_at)
            return (f"The complainant asked plainly for a review, so the case was escalated to stage {case.stage} "
                    f"and they have been told who reviews it and by when.")
        case.status = "awaiting_staff"
        repo.add_event(session, case, now, "escalation_requested", message_id=mail.message_id,
                       reason="reply to a resolved case; staff to decide whether to escalate")
        return ("This is a reply to a resolved case. Reply #escalate to pass it to the next stage, "
                "or #stay with your explanation to decline.")

    def escalate(self, session: Session, case: Case, now: datetime, reason: str,
                 started_at: datetime | None = None) -> QueuedLetter | None:
        """The next stage, its clock starting when the complainant asked (or now, when staff escalate)."""
        procedure = self.procedures[case.procedure]
        if case.stage >= procedure.last_stage:
            return None
        start = started_at or now
        case.stage += 1
        case.status = "open"
        case.closed_at = None
        case.stage_started_at = to_db(start)
        case.updated_at = to_db(now)
        self._set_stage_deadlines(session, case, procedure, case.stage, start)
        repo.add_event(session, case, now, "escalated", stage=case.stage, reason=reason)
        return queue_letter(session, self.renderer, self.config.sender, case=case,
                            template=procedure.letters["escalate"], to=[case.complainant],
                            context=self.letter_context(session, case), now=now, automatic=False,
                            references=self.complainant_thread(session, case))

    def _set_stage_deadlines(self, session: Session, case: Case, procedure: Procedure, stage: int,
                             started_at: datetime, fresh: bool = False) -> dict[str, datetime]:
        """The stage's deadlines replace any unmet earlier ones (a new case has none to look for)."""
        if not fresh:
            for old in self.open_deadlines(session, case):
                old.superseded = True
        due = stage_deadlines(procedure, stage, started_at, self.calendar)
        if due:
            # Plain INSERTs: nothing reads these rows back as objects in the transaction that writes them.
            _INSERT_DEADLINES.run_many(session.connection(), [
                {"case_id": case.id, "stage": stage, "name": name, "due_at": to_db(at)} for name, at in due.items()])
        return due

    # ---- staff-facing mail --------------------------------------------------------------------

    def staff_recipients(self, case: Case) -> list[str]:
        """The assignee, or the complaints team when nobody is assigned."""
        if case.assignee:
            return [case.assignee]
        team = self.directory.get().with_role("complaints_team")
        return [member.email for member in team[:1]]

    def reply_address(self, case: Case) -> str:
        return signed_address(case.ref, self.config.secret, self.config.sender.address)

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
        context = self.letter_context(session, case, deadlines=deadlines, reply_address=self.reply_address(case),
                                      **extra)
        return queue_letter(session, self.renderer, self.config.sender, case=case, template=template,
                            to=recipients, cc=copy, context=context, now=now, automatic=False,
                            reply_to=self.reply_address(case), auto_submitted="auto-generated",
                            references=[r for r in [self.first_message_id(session, case)] if r],
                            attachments=attachments)

    def notify_staff(self, session: Session, case: Case, mail: InboundMail, now: datetime, *, headline: str,
                     claimed_staff: bool = False, notes: list[str] | None = None,
                     deadlines: dict[str, datetime] | None = None) -> list[QueuedLetter]:
        """The assignee's copy of a complainant's message, answerable in the thread."""
        chosen = self.attachments_for_staff(mail)
        letter = self.staff_letter(
            session, case, "staff-notification", now, cc=list(self.config.complaints_team_cc), deadlines=deadlines,
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
                                self.config.notification_attachments_max, flagged)

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
            "command_reference": self.command_reference,
        }

    @property
    def command_reference(self) -> str:
        return COMMAND_REFERENCE

    def last_complainant_message(self, session: Session, case: Case) -> InboundMail | None:
        row = session.exec(select(MailMessage).where(MailMessage.case_id == case.id, MailMessage.direction == "in",
                                                     MailMessage.from_addr == case.complainant)
                           .order_by(col(MailMessage.id).desc())).first()
        return parse_mail(row.raw) if row else None

    def complainant_thread(self, session: Session, case: Case) -> list[str]:
        """Message ids the complainant has seen, oldest first: their mail and our letters to them."""
        rows = session.exec(select(MailMessage.message_id).where(
            MailMessage.case_id == case.id,
            ((MailMessage.direction == "in") & (MailMessage.from_addr == case.complainant))
            | ((MailMessage.direction == "out") & (MailMessage.to_addrs == case.complainant)),
        ).order_by(col(MailMessage.id))).all()
        return list(rows)

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

    def open_deadlines(self, session: Session, case: Case) -> list[Deadline]:
        return list(session.exec(select(Deadline).where(Deadline.case_id == case.id, Deadline.superseded == False,  # noqa: E712
                                                        col(Deadline.met_at).is_(None))).all())

    def meet(self, session: Session, case: Case, names: tuple[str, ...], now: datetime) -> list[str]:
        """Mark the named deadlines met (the first time only); returns which were."""
        met = []
        for row in self.open_deadlines(session, case):
            if row.name in names:
                row.met_at = to_db(now)
                met.append(row.name)
        if met:
            repo.add_event(session, case, now, "deadlines_met", deadlines=met)
        return met

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

    # ---- letter context ----------------------------------------------------------------------

    def active_deadlines(self, session: Session, case: Case) -> dict[str, datetime]:
        rows = session.exec(select(Deadline).where(Deadline.case_id == case.id, Deadline.superseded == False)  # noqa: E712
                            .order_by(col(Deadline.id))).all()
        return {row.name: from_db(row.due_at) for row in rows}  # type: ignore[misc]

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
            deadlines = self.active_deadlines(session, case)
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
            **extra,
        }

    def first_message_id(self, session: Session, case: Case) -> str | None:
        """The case's first message (the complaint), which staff mail references to stay in the case's thread."""
        session.flush()  # the inbound row may be pending
        return _FIRST_MESSAGE_ID.scalar(session.connection(), {"case_id": case.id})
