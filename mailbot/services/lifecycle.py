"""A case's life under its procedure: opening it, following up, filing automated mail, escalating, deadlines.

The thin layer between the pure procedure engine and the store: it reads the case, asks the domain
what the procedure requires, writes the result (case fields, deadlines, events) into the caller's
transaction and has ``Correspondence`` write the letters. Ingest calls ``open_case`` and ``handle``
for every message the chain did not give to the staff desk.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlmodel import Session

from mailbot import randomness
from mailbot.domain import categories, data_requests
from mailbot.domain.chain import Verdict
from mailbot.domain.commands import (
    POSTAL_DOMAIN,
    OnBehalf,
    complaint_text_on_behalf,
)
from mailbot.domain.directory import (
    DirectorySource,
    assigned_contact,
    choose_procedure,
    manager_of,
    staff_named_in,
    stage_reviewers,
)
from mailbot.domain.forwards import Forwarded
from mailbot.domain.mail import InboundMail, bare_address, header_safe, parse_mail
from mailbot.domain.procedures import CEO_DIRECT, OPEN_STATUSES, Procedure, next_stage_offered, stage_deadlines
from mailbot.domain.quotes import extract_new_text
from mailbot.domain.replies import ESCALATE, THANKS, reply_intent
from mailbot.domain.restrictions import inbound_action
from mailbot.domain.rules import is_own_address, is_robot_address
from mailbot.domain.workdays import WorkingCalendar
from mailbot.services.correspondence import Correspondence, QueuedLetter
from mailbot.store import repo
from mailbot.store.db import from_db, to_db
from mailbot.store.models import Case, Deadline, Restriction

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

    def asks_ahead(self, mail: InboundMail, now: datetime) -> list[repo.Ask]:
        """What a new case opened for ``mail`` will ask the store, for intake to ask at once (``repo.foresee``):
        the cap on automatic letters to the complainant and from the sender, and the restrictions on either of
        the person's addresses."""
        complainant = self.complainant_of(mail)
        asks = [repo.ask_automatic_letters(bare_address(complainant), self.cap_sender(mail), repo.cap_window(now))]
        asks += [repo.ask_restrictions(person) for person in dict.fromkeys([complainant, mail.from_addr,
                                                                             *mail.reply_to]) if person]
        return asks

    def open_case(self, session: Session, mail: InboundMail, received_at: datetime, now: datetime,
                  on_behalf: OnBehalf | None = None, never_redirect: bool = False) -> Case:
        """A new case for the complainant of ``mail``, or for the person a member of staff logged it for."""
        if on_behalf is not None:
            complainant, name, channel = on_behalf.email, on_behalf.name, on_behalf.channel
        else:
            complainant = self.complainant_of(mail)
            name = mail.from_name if complainant == mail.from_addr else ""
            channel = "web" if complainant != mail.from_addr and (
                is_robot_address(mail.from_addr) or mail.from_addr in self.addresses.form_senders) else "email"
        directory = self.directory.get()
        procedure_key = choose_procedure(directory, complainant)
        redirected = procedure_key in self.procedures and self.procedures[procedure_key].closes_on_open_as
        if procedure_key not in self.procedures or (never_redirect and redirected):
            procedure_key = "external"
        year = self.calendar.local(received_at).year
        seq, ref = repo.allocate_ref(session, year)
        if on_behalf is not None and not complainant:
            complainant = f"post+{ref.lower()}@{POSTAL_DOMAIN}"  # never deliverable: letters go to staff to post
        category = mail.reading.category
        assignee = assigned_contact(directory, complainant)
        request = None
        if procedure_key != "staff" and data_requests.PROCEDURE in self.procedures:
            # A request for a copy or the erasure of one's data is its own case on the law's clock, whoever asks.
            request = mail.data_request
            if request:
                procedure_key, category = data_requests.PROCEDURE, categories.DATA_PROTECTION
                team = directory.first_with_role("complaints_team")
                assignee = team.email if team else None
        case = repo.insert_case(
            session, ref=ref, year=year, seq=seq, status="open", stage=1, procedure=procedure_key,
            complainant=complainant, complainant_name=header_safe(name), subject=header_safe(mail.subject)[:500],
            from_addr=mail.from_addr, reply_to=",".join(mail.reply_to)[:500] or None,
            category=category,
            assignee=assignee,
            opened_at=to_db(received_at), stage_started_at=to_db(received_at), updated_at=to_db(now),
            channel=channel, postal_address=(on_behalf.postal_address or None) if on_behalf else None,
            status_nonce=randomness.token_urlsafe(12),
        )
        repo.add_event(session, case, now, "case_opened", procedure=procedure_key, complainant=complainant,
                       assignee=case.assignee, category=category, message_id=mail.message_id,
                       from_addr=mail.from_addr, reply_to=list(mail.reply_to), channel=channel,
                       **({"logged_by": mail.from_addr} if on_behalf and on_behalf.channel != "web" else {}))
        if request:
            repo.add_event(session, case, now, "data_request", kind=request, recognised=True)
        return case

    def open_data_request(self, session: Session, source: Case, kind: str, received_at: datetime,
                          now: datetime) -> tuple[Case, dict[str, datetime]]:
        """A case of its own for a request about personal data found on another case (``#data-request``): the
        same person, on the law's clock from ``received_at`` (when the message asking reached us)."""
        procedure = self.procedures[data_requests.PROCEDURE]
        year = self.calendar.local(received_at).year
        seq, ref = repo.allocate_ref(session, year)
        team = self.directory.get().first_with_role("complaints_team")
        case = repo.insert_case(
            session, ref=ref, year=year, seq=seq, status="open", stage=1, procedure=data_requests.PROCEDURE,
            complainant=source.complainant, complainant_name=source.complainant_name,
            subject=f"Request about personal data ({kind}), from {source.ref}"[:500], from_addr=source.from_addr,
            reply_to=source.reply_to, category=categories.DATA_PROTECTION, assignee=team.email if team else None,
            opened_at=to_db(received_at), stage_started_at=to_db(received_at), updated_at=to_db(now),
            channel=source.channel, postal_address=source.postal_address, status_nonce=randomness.token_urlsafe(12),
        )
        repo.add_event(session, case, now, "case_opened", procedure=data_requests.PROCEDURE,
                       complainant=case.complainant, assignee=case.assignee, category=case.category,
                       channel=case.channel, from_case=source.ref)
        repo.add_event(session, case, now, "data_request", kind=kind, from_case=source.ref)
        return case, self._set_stage_deadlines(session, case, procedure, 1, received_at, fresh=True)

    def open_case_on_behalf(self, session: Session, mail: InboundMail, verdict: Verdict, received_at: datetime,
                            now: datetime) -> Case:
        """A case for the person a member of staff's ``#on-behalf-of`` names (as the chain read it)."""
        assert verdict.on_behalf is not None
        return self.open_case(session, mail, received_at, now, on_behalf=verdict.on_behalf)

    # ---- filing and dispatch ------------------------------------------------------------------

    def file(self, session: Session, verdict: Verdict, mail: InboundMail, case: Case | None,
             now: datetime) -> Filing:
        """What the message is recorded as, before its row is written (then ``handle`` acts on it).

        Mail under a restriction is filed by the restricted-mail rule; a bounce that threads to no case
        belongs to the case of the letter that bounced.
        """
        if verdict.action in ("follow_up", "ceo_direct") and case is not None:
            # Copying the CEO in does not escape a restriction: it follows the person.
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
            "on_behalf": self._on_behalf,
            "ceo_direct": self._on_ceo_direct,
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
            headline = "New request about personal data" if case.procedure == data_requests.PROCEDURE \
                else "New complaint"
            letters += self.letters.notify_staff(session, case, mail, now, headline=headline, notes=notes,
                                                 deadlines=deadlines)
            letters += self._safeguarding_words(session, case, mail, now)
        return [x for x in letters if x is not None]

    def _safeguarding_words(self, session: Session, case: Case, mail: InboundMail,
                            now: datetime) -> list[QueuedLetter]:
        """The safeguarding lead alerted at once when a new complaint's words suggest a safeguarding matter."""
        terms = mail.reading.safeguarding
        if not terms:
            return []
        return self.letters.safeguarding_alert(session, case, mail, now,
                                               reason=f"the complaint mentions: {', '.join(terms)}")

    def _on_behalf(self, session: Session, verdict: Verdict, mail: InboundMail, filing: Filing,
                   received_at: datetime, now: datetime) -> list[QueuedLetter]:
        """A complaint a member of staff logged for someone who phoned, wrote or came in: the person is
        acknowledged like anyone who emailed, the owner notified, and the member of staff told it is done."""
        case = filing.case
        assert case is not None
        procedure = self.procedures[case.procedure]
        deadlines = self._set_stage_deadlines(session, case, procedure, 1, received_at, fresh=True)
        text = complaint_text_on_behalf(mail.text)
        letters = [self.letters.queue(session, case=case, template=procedure.letters["open"], to=[case.complainant],
                                      context=self.letters.letter_context(session, case, deadlines=deadlines),
                                      now=now, automatic=True)]
        logged_by = self.letters.staff_name(mail.from_addr)
        recorded = replace(mail, text=text, html=None)
        letters += self.letters.notify_staff(
            session, case, recorded, now, headline=f"New complaint ({case.channel}), logged by {logged_by}",
            deadlines=deadlines)
        if mail.from_addr not in (case.assignee, *self.letters.staff_recipients(case)):
            letters.append(self.letters.staff_letter(
                session, case, "command-result", now, to=[mail.from_addr], problems=[], nothing_new=False,
                done=[f"Opened {case.ref} for {_person(case)} ({case.channel}), "
                      f"{'gave you' if case.postal_address else 'sent them'} the acknowledgement with the dates"
                      f"{' to post' if case.postal_address else ''}, and passed it to "
                      f"{self.letters.staff_name(case.assignee) if case.assignee else 'the complaints team'}."]))
        letters += self._safeguarding_words(session, case, recorded, now)
        return [letter for letter in letters if letter is not None]

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
        # An owner who has left: the case moves on, and the new owner learns why from the notification below.
        owner = case.assignee
        self.hand_over_if_gone(session, case, now, notify=False)
        if filing.restricted is not None:
            return self._under_restriction(session, filing.restricted, case, mail, now)
        notes: list[str] = []
        if case.assignee != owner:
            notes.append(f"This case was with {owner}, who is no longer in data/staff.toml: it is yours now.")
        if case.status == "resolved":
            note, escalated = self._reply_to_outcome(session, case, mail, received_at, now)
            if escalated is not None:
                return escalated  # the reviewer's notice carries the message
            notes.append(note)
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
        repo.add_event(session, filing.case, now, "automated_mail_filed", kind=verdict.kind,
                       message_id=mail.message_id, sender=mail.from_addr, reasons=list(verdict.rules))
        case = filing.case
        if (verdict.kind == "auto_reply" and case is not None and case.status in OPEN_STATUSES
                and case.assignee and case.assignee == mail.from_addr.lower()
                and repo.letter_to_among(session, (*mail.in_reply_to, *mail.references), case.assignee)):
            # The owner's out-of-office answered our notification: nobody is reading it, so it moves on. It must
            # name a letter we sent the owner (a Message-ID only their mailbox has): a From is easily forged.
            return self.hand_over(session, case, now, why=f"{self.letters.staff_name(case.assignee)} is away "
                                                          f"(their mail answered automatically: {mail.subject!r})")
        return []

    # ---- an owner who is not there -------------------------------------------------------------

    def hand_over_if_gone(self, session: Session, case: Case, now: datetime,
                          notify: bool = True, stuck: bool | None = None) -> list[QueuedLetter]:
        """A case whose owner is no longer in data/staff.toml goes to the complaints team (who are told).
        ``stuck``: whether that nobody could take it is on record already (``repo.owners_without_successor``);
        None to look it up if it matters."""
        if not case.assignee or case.status not in OPEN_STATUSES:
            return []
        if self.directory.get().staff_member(case.assignee) is not None:
            return []
        return self.hand_over(session, case, now, why=f"{case.assignee} is no longer in data/staff.toml",
                              notify=notify, stuck=stuck)

    def hand_over(self, session: Session, case: Case, now: datetime, why: str,
                  notify: bool = True, stuck: bool | None = None) -> list[QueuedLetter]:
        """The case to the complaints team (or, when the absent owner is the team, their manager), so that no case
        waits on somebody who is not there; the new owner is told why, with the complainant's last message.

        When there is nobody to take it, that is recorded once: when it is on record already (``stuck``, looked up
        here when None) nothing is written, though the minute's pass and every follow-up message keep trying, so
        the case goes on the moment staff.toml names someone."""
        absent = case.assignee or ""
        directory = self.directory.get()
        candidates = [m.email for m in directory.with_role("complaints_team") if m.email != absent]
        if not candidates:
            manager = manager_of(directory, absent)
            candidates = [manager.email] if manager else []
        if not candidates:
            if stuck is None:
                stuck = case.id is not None and case.id in repo.owners_without_successor(session, [case.id])
            if not stuck:
                repo.add_event(session, case, now, "handover_impossible", previous=absent, reason=why)
            return []
        case.assignee = candidates[0]
        repo.add_event(session, case, now, "handed_over", previous=absent, assignee=case.assignee, reason=why)
        if not notify:
            return []
        last = self.letters.last_complainant_message(session, case)
        context = self.letters.notification_context(case, last, headline="Passed to you",
                                                    notes=[f"This case was with {absent}: {why}."])
        letter = self.letters.staff_letter(session, case, "staff-notification", now, **context)
        return [letter] if letter else []

    def _on_unreadable(self, session: Session, verdict: Verdict, mail: InboundMail, filing: Filing,
                       received_at: datetime, now: datetime) -> list[QueuedLetter]:
        # Mail that could not be read, or a staff command that could not be obeyed (the chain says why).
        problems = list(verdict.rules[:5]) if verdict.kind == "unverified_command" else list(mail.defects[:5])
        repo.add_event(session, filing.case, now, "unreadable_mail", message_id=mail.message_id,
                       sender=mail.from_addr, defects=problems)
        return self.letters.alert_unreadable(session, filing.case, mail, problems or ["unknown"], now)

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

    def _reply_to_outcome(self, session: Session, case: Case, mail: InboundMail, received_at: datetime,
                          now: datetime) -> tuple[str, list[QueuedLetter] | None]:
        """A complainant's reply to a resolved case: (a note for staff, the letters when it was escalated).

        The procedures promise that a complainant who is not happy with the resolution is escalated, so a
        reply that says so in any ordinary way escalates at once (``domain.replies``); a thank-you is
        filed; anything else waits for staff to decide (#escalate, or #stay with an answer).
        """
        procedure = self.procedures[case.procedure]
        if next_stage_offered(procedure, case.stage) is None:
            repo.add_event(session, case, now, "filed_after_last_stage", message_id=mail.message_id)
            return ("The case has been through every stage of the procedure open to the complainant; the message "
                    "is filed on it."), None
        intent = reply_intent(f"{mail.subject}\n{extract_new_text(mail.text, mail.html)}")
        if intent == ESCALATE:
            letters = self.escalate(session, case, now, reason="the complainant said they were not satisfied",
                                    started_at=received_at, request=mail)
            return "", letters
        if intent == THANKS:
            repo.add_event(session, case, now, "reply_after_outcome", message_id=mail.message_id, intent=intent)
            return ("A reply to the outcome that reads as thanks, not a request for review: nothing is needed "
                    "unless you read it otherwise (#escalate passes it to the next stage)."), None
        case.status = "awaiting_staff"
        repo.add_event(session, case, now, "escalation_requested", message_id=mail.message_id,
                       reason="reply to a resolved case; staff to decide whether to escalate")
        return ("This is a reply to a resolved case that does not say plainly whether they want a review. Reply "
                "#escalate to pass it to the next stage, or #stay with your answer (for a question or a "
                "thank-you) to leave the outcome as it is."), None

    def escalate(self, session: Session, case: Case, now: datetime, reason: str,
                 started_at: datetime | None = None, request: InboundMail | None = None,
                 to_stage: int | None = None) -> list[QueuedLetter]:
        """The next stage (or ``to_stage``): its clock starting when the complainant asked (or now, when staff
        escalate), the case with the reviewer the procedure names for it, who is sent the whole history at once."""
        procedure = self.procedures[case.procedure]
        target = to_stage or case.stage + 1
        if target > procedure.last_stage or target <= case.stage:
            return []
        start = started_at or now
        previous = case.assignee
        case.stage = target
        case.status = "open"
        case.closed_at = None
        case.stage_started_at = to_db(start)
        case.updated_at = to_db(now)
        deadlines = self._set_stage_deadlines(session, case, procedure, case.stage, start)
        repo.add_event(session, case, now, "escalated", stage=case.stage, reason=reason)
        stage = procedure.stage(case.stage)
        reviewers = stage_reviewers(self.directory.get(), stage.reviewer_role, previous,
                                    self.complaint_is_about(session, case))
        case.assignee = reviewers.assignee
        repo.add_event(session, case, now, "reviewer_assigned", role=stage.reviewer_role,
                       assignee=reviewers.assignee or "", copied=list(reviewers.copied), previous=previous or "",
                       passed_over=list(reviewers.passed_over))
        context = self.letters.letter_context(session, case, direct_to_ceo=stage.entry == CEO_DIRECT)
        letters = [self.letters.queue(session, case=case, template=procedure.letters["escalate"],
                                      to=[case.complainant], context=context, now=now, automatic=False,
                                      references=self.letters.complainant_thread(session, case))]
        letters.append(self.letters.escalation_notice(session, case, request, now, reviewers=reviewers,
                                                      reason=reason, deadlines=deadlines))
        return [letter for letter in letters if letter is not None]

    def _on_ceo_direct(self, session: Session, verdict: Verdict, mail: InboundMail, filing: Filing,
                       received_at: datetime, now: datetime) -> list[QueuedLetter]:
        """Written to the Chief Executive directly (forwarded by them, or copied to us): the stage the procedure
        reaches that way, with its own deadline, however far the case had got."""
        case = filing.case
        assert case is not None
        if filing.restricted is not None:
            return self._under_restriction(session, filing.restricted, case, mail, now)
        request = self._as_written_by_the_complainant(mail, verdict.forwarded)
        procedure = self.procedures[case.procedure]
        target = next((s.number for s in procedure.stages if s.entry == CEO_DIRECT), None)
        repo.add_event(session, case, now, "written_to_the_ceo", message_id=mail.message_id, sender=mail.from_addr,
                       forwarded=verdict.kind == "ceo_forward")
        # Copied in by someone who is not the complainant (anyone can write a reference in a subject): a
        # message on the case like any other, not a move to another stage.
        not_theirs = verdict.kind == "ceo_direct" and case.complainant not in (mail.from_addr, *mail.reply_to)
        if target is None or case.stage >= target or not_theirs:
            return self.letters.notify_staff(session, case, request, now, headline="Written to the Chief Executive")
        return self.escalate(session, case, now, reason="the complainant wrote to the Chief Executive directly",
                             started_at=received_at, request=request, to_stage=target)

    @staticmethod
    def _as_written_by_the_complainant(mail: InboundMail, original: Forwarded | None) -> InboundMail:
        """A CEO's forward as the complainant wrote it (their address, name and words); anyone else's mail as it is
        (a quoted "Original Message" in it names nobody: only the CEO's forward is read that way)."""
        if original is None:
            return mail
        return replace(mail, from_addr=original.sender, from_name=original.name, text=original.text, html=None,
                       subject=original.subject or mail.subject, reply_to=())

    def open_case_for_the_ceo(self, session: Session, mail: InboundMail, verdict: Verdict, received_at: datetime,
                              now: datetime) -> Case:
        """A case for someone who wrote to the Chief Executive directly with no case to thread to: opened for
        the complainant (the forwarded message's sender), under their procedure, never a grievance redirect."""
        return self.open_case(session, self._as_written_by_the_complainant(mail, verdict.forwarded), received_at,
                              now, never_redirect=True)

    def complaint_is_about(self, session: Session, case: Case) -> frozenset[str]:
        """Staff the complaint names (in anything the complainant wrote on the case), and anyone staff moved
        the case away from with #assign: never its reviewer at a later stage."""
        directory = self.directory.get()
        named: set[str] = set()
        for raw in repo.inbound_from(session, case.id or 0, case.complainant):
            mail = parse_mail(raw)
            named |= staff_named_in(directory, f"{mail.subject}\n{mail.text}")
        return frozenset(named | repo.assigned_away_from(session, case.id or 0))

    def _set_stage_deadlines(self, session: Session, case: Case, procedure: Procedure, stage: int,
                             started_at: datetime, fresh: bool = False) -> dict[str, datetime]:
        """The stage's deadlines replace any unmet earlier ones (a new case has none to look for)."""
        if not fresh:
            for old in self.open_deadlines(session, case):
                old.superseded = True
        due = stage_deadlines(procedure, stage, started_at, self.calendar)
        if due:
            # A deadline less than a working day ahead has its reminder in the notification that announces
            # it: recorded now, so the deadline passes never read it for one (jobs.chase_deadlines).
            reminded = {name for name, at in due.items() if self.calendar.reminder_at(at) <= started_at}
            repo.insert_deadlines(session, case.id or 0, stage, due, reminded_at=started_at, reminded=reminded)
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


def _person(case: Case) -> str:
    """Whom a case is for, as a confirmation to staff names them: by email, or by name and postal address."""
    if case.postal_address:
        return f"{case.complainant_name}, {case.postal_address}"
    return f"{case.complainant_name} <{case.complainant}>" if case.complainant_name else case.complainant
