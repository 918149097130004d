"""A case's life under its procedure: opening it, following up, filing automated mail, escalating, deadlines.

The thin layer between the pure procedure engine and the store: it reads the case, asks the domain
what the procedure requires, writes the result (case fields, deadlines, events) into the caller's
transaction and has ``Correspondence`` write the letters. Ingest calls ``open_case`` and ``handle``
for every message the chain did not give to the staff desk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from mailbot.domain import categories
from mailbot.domain.chain import Verdict
from mailbot.domain.directory import DirectorySource, assigned_contact, choose_procedure
from mailbot.domain.mail import InboundMail, header_safe
from mailbot.domain.procedures import Procedure, stage_deadlines
from mailbot.domain.quotes import extract_new_text
from mailbot.domain.restrictions import inbound_action
from mailbot.domain.rules import is_own_address
from mailbot.domain.workdays import WorkingCalendar
from mailbot.services.correspondence import Correspondence, QueuedLetter
from mailbot.store import repo
from mailbot.store.db import from_db, to_db
from mailbot.store.models import Case, Deadline, Restriction

# Words that ask plainly for an escalation when a complainant replies to a resolved case.
ESCALATION_PHRASES = (
    "escalate", "not satisfied", "unsatisfied", "dissatisfied", "not happy", "unhappy with", "appeal",
    "take this further", "review my complaint", "not resolved", "next stage",
)

# Statuses in which the procedure's clocks run.
OPEN_STATUSES = ("open", "awaiting_staff")


# What a message under a restriction is recorded as, by the restricted-mail rule's answer (domain.restrictions).
RESTRICTED_KINDS = {"notify": "follow_up", "acknowledge": "restricted_acknowledged", "file": "restricted_filed"}


@dataclass(frozen=True)
class Filing:
    """What an inbound message is recorded as, decided before its row is written: its kind and its case."""

    kind: str
    case: Case | None
    # When a restriction on the case applies to the sender: its rule's answer (notify, acknowledge, file).
    restricted: str | None = None


@dataclass(frozen=True)
class Addresses:
    """Whose mail is ours, and which senders are web forms carrying many people's complaints."""

    own: frozenset[str]
    domain: str
    form_senders: frozenset[str] = frozenset()


class CaseLifecycle:
    def __init__(self, addresses: Addresses, letters: Correspondence, calendar: WorkingCalendar,
                 procedures: dict[str, Procedure], directory: DirectorySource) -> None:
        self.addresses = addresses
        self.letters = letters
        self.calendar = calendar
        self.procedures = procedures
        self.directory = directory

    # ---- opening -----------------------------------------------------------------------------

    def is_ours(self, address: str) -> bool:
        """One of our own addresses, any address at our domain, or a member of staff's."""
        address = address.lower()
        return (is_own_address(address, self.addresses.own)
                or address.rpartition("@")[2] == self.addresses.domain
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
        if not sender or sender in self.addresses.form_senders or self.is_ours(sender):
            return None
        return sender

    def open_case(self, session: Session, mail: InboundMail, received_at: datetime, now: datetime) -> Case:
        complainant = self.complainant_of(mail)
        directory = self.directory.get()
        procedure_key = choose_procedure(directory, complainant)
        if procedure_key not in self.procedures:
            procedure_key = "external"
        year = self.calendar.local(received_at).year
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

    # ---- filing and dispatch ------------------------------------------------------------------

    def file(self, session: Session, verdict: Verdict, mail: InboundMail, case: Case | None,
             now: datetime) -> Filing:
        """What the message is recorded as, before its row is written (then ``handle`` acts on it).

        Mail under a restriction is filed by the restricted-mail rule; a bounce that threads to no case
        belongs to the case of the letter that bounced.
        """
        if verdict.action == "follow_up" and case is not None:
            restriction = self._restriction_applying(session, case, verdict, mail)
            if restriction is not None:
                action = self._restricted_action(restriction, mail, now)
                return Filing(RESTRICTED_KINDS[action], case, action)
        if verdict.action == "automated" and case is None and verdict.automated:
            for mid in verdict.automated.bounced_message_ids:
                letter = repo.outbound_by_message_id(session, mid)
                if letter is not None and letter.case_id:
                    return Filing(verdict.kind, session.get(Case, letter.case_id))
        return Filing(verdict.kind, case)

    def handle(self, session: Session, verdict: Verdict, mail: InboundMail, filing: Filing,
               received_at: datetime, now: datetime) -> list[QueuedLetter]:
        """Act on a message recorded as ``filing`` says: the case's events and letters."""
        handler = {
            "new_case": self._on_new_case,
            "follow_up": self._on_follow_up,
            "automated": self._on_automated,
            "unreadable": self._on_unreadable,
        }[verdict.action]
        return handler(session, verdict, mail, filing, received_at, now)

    def _on_new_case(self, session: Session, verdict: Verdict, mail: InboundMail, filing: Filing,
                     received_at: datetime, now: datetime) -> list[QueuedLetter]:
        case = filing.case
        assert case is not None
        procedure = self.procedures[case.procedure]
        letters: list[QueuedLetter] = []
        if procedure.closes_on_open_as:
            case.status = procedure.closes_on_open_as
            case.closed_at = to_db(now)
            repo.add_event(session, case, now, "case_closed", reason=f"closed as {case.status} by the procedure")
        deadlines = {} if procedure.closes_on_open_as else \
            self._set_stage_deadlines(session, case, procedure, 1, received_at, fresh=True)
        letter = self.letters.queue(
            session, case=case, template=procedure.letters["open"],
            to=[case.complainant], context=self.letters.letter_context(session, case, deadlines=deadlines), now=now,
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
            letters += self.letters.notify_staff(session, case, mail, now, headline="New complaint", notes=notes,
                                                 deadlines=deadlines)
            terms = categories.safeguarding_concern(mail.subject, mail.text)
            if terms:
                letters += self.letters.safeguarding_alert(session, case, mail, now,
                                                           reason=f"the complaint mentions: {', '.join(terms)}")
        return [x for x in letters if x is not None]

    def _on_follow_up(self, session: Session, verdict: Verdict, mail: InboundMail, filing: Filing,
                      received_at: datetime, now: datetime) -> list[QueuedLetter]:
        case = filing.case
        assert case is not None
        repo.add_event(session, case, now, "message_received", message_id=mail.message_id, sender=mail.from_addr,
                       thread_rule=verdict.thread.rule if verdict.thread else "")
        if verdict.claimed_staff:
            repo.add_event(session, case, now, "unverified_staff_mail", sender=mail.from_addr,
                           reason="staff From without the signed case address or trusted authentication")
        case.updated_at = to_db(now)
        if filing.restricted is not None:
            return self._under_restriction(session, filing.restricted, case, mail, now)
        notes: list[str] = []
        if case.status == "resolved":
            notes.append(self._escalation_request(session, case, mail, received_at, now))
        elif case.status in ("closed", "redirected", "merged"):
            notes.append(f"This case is {case.status}; the message reopened nothing. Reply #reopen to reopen it.")
        letters = self.letters.notify_staff(session, case, mail, now, headline="New message from the complainant",
                                            claimed_staff=verdict.claimed_staff, notes=notes)
        return letters

    def _on_automated(self, session: Session, verdict: Verdict, mail: InboundMail, filing: Filing,
                      received_at: datetime, now: datetime) -> list[QueuedLetter]:
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
        repo.add_event(session, filing.case, now, "automated_mail_filed", kind=verdict.kind, message_id=mail.message_id,
                       sender=mail.from_addr, reasons=list(verdict.rules))
        return []

    def _on_unreadable(self, session: Session, verdict: Verdict, mail: InboundMail, filing: Filing,
                       received_at: datetime, now: datetime) -> list[QueuedLetter]:
        repo.add_event(session, filing.case, now, "unreadable_mail", message_id=mail.message_id,
                       sender=mail.from_addr, defects=list(mail.defects[:5]))
        return self.letters.alert_unreadable(session, filing.case, mail, list(mail.defects[:5]) or ["unknown"], now)

    # ---- restrictions ------------------------------------------------------------------------

    def active_restriction(self, session: Session, case: Case) -> Restriction | None:
        return repo.active_restriction(session, case.id or 0)

    def restrictions_elsewhere(self, session: Session, case: Case,
                               mail: InboundMail | None = None) -> list[tuple[str, str]]:
        """The person's restrictions on their other cases (almost always none), by either of their addresses."""
        people = dict.fromkeys([case.complainant, *((mail.from_addr, *mail.reply_to) if mail else ())])
        found: dict[str, str] = {}
        for person in people:
            if person:
                for ref, mode in repo.restrictions_on_other_cases(session, case.id or 0, person):
                    found.setdefault(ref, mode)
        return list(found.items())

    def _restriction_applying(self, session: Session, case: Case, verdict: Verdict,
                              mail: InboundMail) -> Restriction | None:
        """The case's restriction when it covers this message's sender (never staff's own mail).

        A restriction follows the person, by From or by Reply-To: adding a Reply-To does not escape it.
        """
        restriction = self.active_restriction(session, case)
        if restriction is None or verdict.claimed_staff or \
                restriction.complainant not in (mail.from_addr, *mail.reply_to):
            return None
        return restriction

    def _restricted_action(self, restriction: Restriction, mail: InboundMail, now: datetime) -> str:
        last = from_db(restriction.last_acknowledged_at)
        today = self.calendar.local(now).date()
        return inbound_action(restriction.mode or "", self.calendar.local(last).date() if last else None, today,
                              f"{mail.subject}\n{mail.text}")

    def _under_restriction(self, session: Session, action: str, case: Case, mail: InboundMail,
                           now: datetime) -> list[QueuedLetter]:
        """Read and kept, never dropped; answered at most once a day in acknowledge-only mode, never in silent."""
        restriction = self.active_restriction(session, case)
        assert restriction is not None
        if action == "notify":
            repo.add_event(session, case, now, "restricted_mail_challenge", message_id=mail.message_id)
            return self.letters.notify_staff(
                session, case, mail, now, headline="A challenge to the restriction",
                notes=["The complainant is restricted on this case, but this message looks like a challenge to the "
                       "decision, so it is passed to you as usual."])
        if action == "acknowledge":
            restriction.last_acknowledged_at = to_db(now)
            repo.add_event(session, case, now, "restricted_mail_acknowledged", message_id=mail.message_id)
            thread = self.letters.complainant_thread(session, case)
            letter = self.letters.queue(session, case=case, template="acknowledge-only", to=[case.complainant],
                                        context=self.letters.letter_context(session, case), now=now, automatic=True,
                                        trigger_from=self.cap_sender(mail),
                                        in_reply_to=mail.message_id if mail.has_message_id else None,
                                        references=thread)
            return [letter] if letter else []
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
        return self.letters.queue(session, case=case,
                                  template=procedure.letters["escalate"], to=[case.complainant],
                                  context=self.letters.letter_context(session, case), now=now, automatic=False,
                                  references=self.letters.complainant_thread(session, case))

    def _set_stage_deadlines(self, session: Session, case: Case, procedure: Procedure, stage: int,
                             started_at: datetime, fresh: bool = False) -> dict[str, datetime]:
        """The stage's deadlines replace any unmet earlier ones (a new case has none to look for)."""
        if not fresh:
            for old in self.open_deadlines(session, case):
                old.superseded = True
        due = stage_deadlines(procedure, stage, started_at, self.calendar)
        if due:
            repo.insert_deadlines(session, case.id or 0, stage, due)
        return due

    def open_deadlines(self, session: Session, case: Case) -> list[Deadline]:
        return repo.open_deadlines(session, case.id or 0)

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
