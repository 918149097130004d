"""Staff replies in a case thread: relayed to the complainant, kept as notes, or obeyed as commands.

A reply is all-or-nothing: if any command in it is malformed or not allowed for the sender's role,
nothing changes, nothing is relayed, and the sender is told why and how to write it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlmodel import Session, col, select

from mailbot.domain.commands import Command, check_permission, parse_commands
from mailbot.domain.mail import InboundMail
from mailbot.domain.procedures import signposting
from mailbot.domain.quotes import extract_new_text, without_text_of
from mailbot.domain.restrictions import add_months, contact_option
from mailbot.services.casework import OPEN_STATUSES, Casework
from mailbot.services.compose import QueuedLetter, queue_letter
from mailbot.store import repo
from mailbot.store.db import from_db, to_db
from mailbot.store.models import Case, Deadline, MailMessage, MentorAction, Restriction

# Commands whose letter to the complainant carries the staff member's words, so the words are not relayed twice.
WORDS_GO_IN_A_LETTER = frozenset({"resolve", "stay"})
# Commands that need the staff member's words under them.
NEEDS_TEXT = {"full": "your full response", "resolve": "the outcome letter's text", "stay": "your explanation"}
CLOSED_STATUSES = ("resolved", "closed", "redirected", "merged")


def is_our_letter(payload: bytes) -> bool:
    """An attached message that is one of the bot's own letters (a notification forwarded as an attachment)."""
    head = payload[:65536].lower()
    return b"\nx-mailbot-letter:" in head or head.startswith(b"x-mailbot-letter:")


class Refusal(Exception):
    """A command that cannot be carried out on this case as it stands; nothing is changed."""


@dataclass
class Reply:
    """What a staff reply did, for the confirmation and the audit trail."""

    done: list[str] = field(default_factory=list)
    letters: list[QueuedLetter] = field(default_factory=list)
    # Letters written after every command has run, so one reply's commands read as one decision
    # (e.g. "#restrict ..." followed by "#letters-only" gives one letter naming both).
    after: list[Callable[[], QueuedLetter | None]] = field(default_factory=list)

    def add(self, letter: QueuedLetter | None) -> None:
        if letter is not None:
            self.letters.append(letter)


class StaffDesk:
    def __init__(self, casework: Casework) -> None:
        self.cw = casework

    # ---- entry point -------------------------------------------------------------------------

    def handle(self, session: Session, case: Case, mail: InboundMail, message: repo.InboundRow,
               roles: frozenset[str], now: datetime) -> list[QueuedLetter]:
        # Only the staff member's own words: whatever their client did to the quote, no line of a
        # staff-only letter (the notification they answer above all) goes on to the complainant.
        text = without_text_of(extract_new_text(mail.text, mail.html), self.cw.staff_only_texts(session, case))
        parsed = parse_commands(text)
        staff = mail.from_addr
        if not parsed.commands and not parsed.errors and not parsed.body.strip():
            return self._nothing_new(session, case, mail, staff, now)
        problems = [f"{e.line}\n  {e.message}" for e in parsed.errors]
        for command in parsed.commands:
            refusal = check_permission(command, roles)
            if refusal:
                problems.append(f"{command.line}\n  {refusal}")
            elif command.name in NEEDS_TEXT and not parsed.body.strip():
                problems.append(f"{command.line}\n  #{command.name} needs {NEEDS_TEXT[command.name]} below the "
                                f"command lines.")
            elif command.name in NEEDS_TEXT and any(c.name == "note" for c in parsed.commands):
                problems.append(f"{command.line}\n  #{command.name} sends your words to the complainant, so it "
                                f"cannot go with #note.")
        if not problems:
            savepoint = session.begin_nested()
            try:
                reply = self._carry_out(session, case, mail, parsed.commands, parsed.body, staff, now)
            except Refusal as exc:
                savepoint.rollback()
                problems.append(str(exc))
            else:
                savepoint.commit()
                if parsed.commands:
                    return reply.letters + self._confirm(session, case, staff, reply.done, now)
                return reply.letters
        repo.add_event(session, case, now, "command_refused", actor=staff, problems=problems)
        return self._confirm(session, case, staff, [], now, problems=problems)

    def _carry_out(self, session: Session, case: Case, mail: InboundMail, commands: tuple[Command, ...], body: str,
                   staff: str, now: datetime) -> Reply:
        reply = Reply()
        names = {c.name for c in commands}
        if "note" in names:
            repo.add_event(session, case, now, "internal_note", actor=staff, text=body[:4000])
            reply.done.append("Kept your reply as an internal note; nothing was sent to the complainant.")
        elif body.strip() and not names & WORDS_GO_IN_A_LETTER:
            reply.add(self.relay(session, case, mail, body, staff, now))
            reply.done.append(f"Sent your reply to {case.complainant}.")
            self.cw.meet(session, case, ("first_response",), now)
            if "full" in names:
                self.cw.meet(session, case, ("full_response",), now)
        for command in commands:
            handler = getattr(self, "_cmd_" + command.name.replace("-", "_"))
            handler(session, case, command, body, staff, now, reply, mail)
            repo.add_event(session, case, now, "command", actor=staff, command=command.name,
                           args={k: str(v) for k, v in command.args.items()})
        for write in reply.after:
            reply.add(write())
        case.updated_at = to_db(now)
        return reply

    # ---- letters -----------------------------------------------------------------------------

    def staff_name(self, email: str) -> str:
        member = self.cw.directory.get().staff_member(email)
        return member.name if member else email

    def relay(self, session: Session, case: Case, mail: InboundMail, body: str, staff: str,
              now: datetime) -> QueuedLetter | None:
        name = self.staff_name(staff)
        return self.complainant_letter(
            session, case, "staff-reply", now, from_name=f"{name}, {self.cw.config.sender.org_name}",
            staff_text=body.strip(), staff_name=name,
            attachments=[(a.filename, a.content_type, a.payload) for a in mail.attachments
                         if not is_our_letter(a.payload)],
        )

    def complainant_letter(self, session: Session, case: Case, template: str, now: datetime, *,
                           from_name: str | None = None,
                           attachments: list[tuple[str, str, bytes]] | None = None,
                           **extra: object) -> QueuedLetter | None:
        """A letter to the complainant, threaded into their own conversation."""
        thread = self.cw.complainant_thread(session, case)
        return queue_letter(session, self.cw.renderer, self.cw.config.sender, case=case, template=template,
                            to=[case.complainant], context=self.cw.letter_context(session, case, **extra), now=now,
                            automatic=False, in_reply_to=thread[-1] if thread else None, references=thread,
                            auto_submitted=None, from_name=from_name, attachments=attachments)

    def _confirm(self, session: Session, case: Case, staff: str, done: list[str], now: datetime,
                 problems: list[str] | None = None, nothing_new: bool = False) -> list[QueuedLetter]:
        letter = self.cw.staff_letter(session, case, "command-result", now, to=[staff], done=done,
                                      problems=problems or [], command_reference=self.cw.command_reference,
                                      nothing_new=nothing_new)
        return [letter] if letter else []

    def _nothing_new(self, session: Session, case: Case, mail: InboundMail, staff: str,
                     now: datetime) -> list[QueuedLetter]:
        """A reply with no words of its own: nothing goes to the complainant, and the sender hears why."""
        reason = "your reply had no text of its own above the quoted message"
        if mail.attachments:
            reason += f", so its {len(mail.attachments)} attachment(s) were not sent either"
        repo.add_event(session, case, now, "staff_reply_not_relayed", actor=staff, message_id=mail.message_id,
                       reason=reason)
        return self._confirm(session, case, staff, [], now, problems=[reason[0].upper() + reason[1:] + "."],
                             nothing_new=True)

    # ---- case commands -----------------------------------------------------------------------

    def _cmd_note(self, *args: object) -> None:
        return None  # handled in _carry_out: it decides whether anything is relayed

    def _cmd_full(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                  reply: Reply, mail: InboundMail) -> None:
        reply.done.append("Recorded this reply as the full response.")

    def _cmd_assign(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                    reply: Reply, mail: InboundMail) -> None:
        email = str(command.args["email"])
        member = self.cw.directory.get().staff_member(email)
        if member is None:
            raise Refusal(f"{command.line}\n  {email} is not in the staff directory (data/staff.toml).")
        previous = case.assignee
        case.assignee = member.email
        reply.done.append(f"Assigned the case to {member.name} <{member.email}> (was {previous or 'nobody'}).")
        last = self.cw.last_complainant_message(session, case)
        if member.email != staff:
            reply.add(self.cw.staff_letter(
                session, case, "staff-notification", now, **self.cw.notification_context(
                    case, last, headline=f"Assigned to you by {self.staff_name(staff)}")))

    def _cmd_category(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                      reply: Reply, mail: InboundMail) -> None:
        previous, case.category = case.category, str(command.args["category"])
        reply.done.append(f"Changed the category from {previous} to {case.category}.")
        if case.category == "safeguarding" and previous != "safeguarding":
            for letter in self.cw.safeguarding_alert(session, case, None, now,
                                                     reason=f"{self.staff_name(staff)} marked it as safeguarding"):
                reply.add(letter)
            reply.done.append("Alerted the safeguarding lead.")

    def _cmd_safeguarding(self, session: Session, case: Case, command: Command, body: str, staff: str,
                          now: datetime, reply: Reply, mail: InboundMail) -> None:
        case.category = "safeguarding"
        for letter in self.cw.safeguarding_alert(session, case, None, now,
                                                 reason=f"{self.staff_name(staff)} raised a safeguarding concern"):
            reply.add(letter)
        reply.done.append("Marked the case as safeguarding and alerted the safeguarding lead.")

    def _cmd_extend(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                    reply: Reply, mail: InboundMail) -> None:
        cal = self.cw.calendar
        until = command.args["until"]
        if case.status not in OPEN_STATUSES:
            raise Refusal(f"{command.line}\n  the case is {case.status}; there is no deadline to extend.")
        if until <= cal.local(now).date():  # type: ignore[operator]
            raise Refusal(f"{command.line}\n  the new date must be after today.")
        if not cal.is_working_day(until):  # type: ignore[arg-type]
            raise Refusal(f"{command.line}\n  {cal.format_date(until)} is not a working day.")  # type: ignore[arg-type]
        new_due = cal.close_of_business(until)  # type: ignore[arg-type]
        moved = []
        for row in self.cw.open_deadlines(session, case):
            if row.name == "first_response" or from_db(row.due_at) >= new_due:  # type: ignore[operator]
                continue
            row.superseded = True
            session.add(Deadline(case_id=case.id, stage=row.stage, name=row.name, due_at=to_db(new_due)))
            moved.append(row.name)
        if not moved:
            raise Refusal(f"{command.line}\n  no open deadline falls before {cal.format_date(until)}.")
        session.flush()
        reason = str(command.args["reason"])
        repo.add_event(session, case, now, "deadline_extended", actor=staff, deadlines=moved,
                       until=new_due.isoformat(), reason=reason)
        reply.add(self.complainant_letter(session, case, self.cw.procedures[case.procedure].letters["extend"], now,
                                          new_date=f"the end of {cal.format_date(until)}", reason=reason))  # type: ignore[arg-type]
        reply.done.append(f"Extended {', '.join(n.replace('_', ' ') for n in moved)} to the end of "
                          f"{cal.format_date(until)} and sent the extension notice.")  # type: ignore[arg-type]

    def _cmd_resolve(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                     reply: Reply, mail: InboundMail) -> None:
        if case.status not in OPEN_STATUSES:
            raise Refusal(f"{command.line}\n  the case is {case.status}; reply #reopen first to resolve it again.")
        outcome = str(command.args["outcome"])
        case.status = "resolved"
        case.outcome = outcome
        case.closed_at = to_db(now)
        self.cw.meet(session, case, ("first_response", "full_response", "resolution", "stage_response"), now)
        procedure = self.cw.procedures[case.procedure]
        signs = signposting(self.cw.signposts, case.category, now, self.cw.calendar)
        reply.add(self.complainant_letter(
            session, case, procedure.letters["resolve"], now, from_name=None, outcome=outcome,
            staff_text=body.strip(), staff_name=self.staff_name(staff), signposts=signs,
            next_stage=self._next_stage_text(case),
        ))
        repo.add_event(session, case, now, "resolved", actor=staff, outcome=outcome, stage=case.stage)
        reply.done.append(f"Resolved the case as {outcome} and sent the outcome letter with its signposting.")

    def _next_stage_text(self, case: Case) -> str:
        procedure = self.cw.procedures[case.procedure]
        if case.stage >= procedure.last_stage:
            return ""
        nxt = procedure.stage(case.stage + 1)
        return f"{nxt.reviewer_label} ({nxt.label})"

    def _cmd_escalate(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                      reply: Reply, mail: InboundMail) -> None:
        procedure = self.cw.procedures[case.procedure]
        if case.stage >= procedure.last_stage:
            raise Refusal(f"{command.line}\n  the case is already at the last stage ({procedure.stage(case.stage).label}).")
        reply.add(self.cw.escalate(session, case, now, reason=f"escalated by {self.staff_name(staff)}"))
        reply.done.append(f"Escalated the case to {procedure.stage(case.stage).label} and told the complainant.")

    def _cmd_stay(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                  reply: Reply, mail: InboundMail) -> None:
        if case.status != "awaiting_staff":
            raise Refusal(f"{command.line}\n  #stay declines an escalation request, and this case has none waiting.")
        case.status = "resolved"
        reply.add(self.complainant_letter(session, case, "escalation-declined", now, staff_text=body.strip(),
                                          staff_name=self.staff_name(staff), next_stage=self._next_stage_text(case)))
        repo.add_event(session, case, now, "escalation_declined", actor=staff)
        reply.done.append("Declined the escalation request and sent your explanation to the complainant.")

    def _cmd_reopen(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                    reply: Reply, mail: InboundMail) -> None:
        if case.status in OPEN_STATUSES:
            raise Refusal(f"{command.line}\n  the case is already open.")
        previous = case.status
        case.status = "open"
        case.closed_at = None
        case.merged_into = None
        repo.add_event(session, case, now, "reopened", actor=staff, was=previous)
        reply.done.append(f"Reopened the case (it was {previous}).")

    def _cmd_merge(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                   reply: Reply, mail: InboundMail) -> None:
        target = repo.case_by_ref(session, str(command.args["ref"]))
        if target is None:
            raise Refusal(f"{command.line}\n  there is no case {command.args['ref']}.")
        if target.id == case.id:
            raise Refusal(f"{command.line}\n  a case cannot be merged into itself.")
        case.status = "merged"
        case.merged_into = target.ref
        case.closed_at = to_db(now)
        for row in self.cw.open_deadlines(session, case):
            row.superseded = True
        repo.add_event(session, case, now, "merged", actor=staff, into=target.ref)
        repo.add_event(session, target, now, "case_merged_in", actor=staff, merged=case.ref)
        reply.done.append(f"Merged this case into {target.ref}; its mail now goes there"
                          + (" and falls under the restriction on it." if self.cw.active_restriction(session, target)
                             else "."))

    def _cmd_not_a_complaint(self, session: Session, case: Case, command: Command, body: str, staff: str,
                             now: datetime, reply: Reply, mail: InboundMail) -> None:
        case.status = "closed"
        case.outcome = "not-a-complaint"
        case.closed_at = to_db(now)
        for row in self.cw.open_deadlines(session, case):
            row.superseded = True
        repo.add_event(session, case, now, "closed", actor=staff, reason="not a complaint")
        reply.done.append("Closed the case as not a complaint; no outcome letter was sent.")

    # ---- mentor behaviour (mentee procedure) -------------------------------------------------

    def _mentor_for(self, session: Session, case: Case, command: Command) -> str:
        email = command.args.get("email")
        if not email:
            known = session.exec(select(MentorAction.mentor_email).where(MentorAction.case_id == case.id)
                                 .order_by(col(MentorAction.id).desc())).first()
            if not known:
                raise Refusal(f"{command.line}\n  name the mentor the first time: {command.line.split()[0]} "
                              f"mentor@example.org")
            email = known
        person = self.cw.directory.get().participant(str(email))
        if person is None or person.role != "mentor":
            raise Refusal(f"{command.line}\n  {email} is not a mentor in the participant directory.")
        return person.email

    def _mentor_action(self, session: Session, case: Case, command: Command, staff: str, now: datetime,
                       reply: Reply, reason: str = "") -> str:
        mentor = self._mentor_for(session, case, command)
        session.add(MentorAction(case_id=case.id, mentor_email=mentor, action=command.name, reason=reason, by=staff,
                                 at=to_db(now)))
        repo.add_event(session, case, now, "mentor_action", actor=staff, action=command.name, mentor=mentor,
                       reason=reason)
        return mentor

    def _cmd_informal_warning(self, session: Session, case: Case, command: Command, body: str, staff: str,
                              now: datetime, reply: Reply, mail: InboundMail) -> None:
        self._mentor_warning(session, case, command, staff, now, reply, "an informal warning")

    def _cmd_formal_warning(self, session: Session, case: Case, command: Command, body: str, staff: str,
                            now: datetime, reply: Reply, mail: InboundMail) -> None:
        self._mentor_warning(session, case, command, staff, now, reply, "a formal warning")

    def _mentor_warning(self, session: Session, case: Case, command: Command, staff: str, now: datetime,
                        reply: Reply, what: str) -> None:
        mentor = self._mentor_for(session, case, command)
        person = self.cw.directory.get().participant(mentor)
        earlier = session.exec(select(MentorAction).where(MentorAction.mentor_email == mentor,
                                                          MentorAction.action == "formal-warning")).all()
        self._mentor_action(session, case, command, staff, now, reply)
        reply.add(queue_letter(
            session, self.cw.renderer, self.cw.config.sender, case=case, template="mentor-meeting", to=[mentor],
            context=self.cw.letter_context(session, case, mentor_name=person.name if person else "",
                                           warning=what, staff_name=self.staff_name(staff),
                                           final=command.name == "formal-warning" and bool(earlier)),
            now=now, automatic=False, auto_submitted=None, reply_to=None,
        ))
        reply.done.append(f"Recorded {what} against the mentor {mentor} and wrote to them about the meeting and "
                          f"their right to be accompanied.")

    def _cmd_suspend(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                     reply: Reply, mail: InboundMail) -> None:
        reason = str(command.args["reason"])
        mentor = self._mentor_action(session, case, command, staff, now, reply, reason=reason)
        person = self.cw.directory.get().participant(mentor)
        due = self.cw.calendar.deadline(now, 14, "days")
        session.add(Deadline(case_id=case.id, stage=case.stage, name="suspension_decision", due_at=to_db(due)))
        directory = self.cw.directory.get()
        region = person.region if person else None
        alert_to = [m.email for m in directory.with_role("safeguarding_lead")]
        alert_to += [m.email for m in directory.with_role("regional_manager", region)] if region else []
        if alert_to:
            reply.add(self.cw.staff_letter(session, case, "mentor-suspension-alert", now, to=sorted(set(alert_to)),
                                           mentor=mentor, reason=reason, decision_by=self.cw.calendar.format_date(due),
                                           staff_name=self.staff_name(staff)))
        reply.add(queue_letter(
            session, self.cw.renderer, self.cw.config.sender, case=case, template="mentor-suspension", to=[mentor],
            context=self.cw.letter_context(session, case, mentor_name=person.name if person else "", reason=reason,
                                           decision_by=self.cw.calendar.format_date(due)),
            now=now, automatic=False, auto_submitted=None,
        ))
        reply.done.append(f"Suspended the mentor {mentor}, alerted {', '.join(sorted(set(alert_to))) or 'nobody'}, "
                          f"and set the decision deadline to {self.cw.calendar.format_date(due)}.")

    # ---- unreasonably persistent complainants ------------------------------------------------

    def _register(self, session: Session, case: Case) -> Restriction:
        row = session.exec(select(Restriction).where(Restriction.case_id == case.id)).first()
        if row is None:
            row = Restriction(case_id=case.id, complainant=case.complainant, state="none")
            session.add(row)
        return row

    def _cmd_warn(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                  reply: Reply, mail: InboundMail) -> None:
        row = self._register(session, case)
        if row.state == "restricted":
            raise Refusal(f"{command.line}\n  this complainant is already restricted on this case.")
        row.state, row.warned_at, row.warned_by = "warned", to_db(now), staff
        row.warning_reason = str(command.args["reason"])
        reply.add(self.complainant_letter(session, case, "restriction-warning", now, reason=row.warning_reason))
        repo.add_event(session, case, now, "restriction_warned", actor=staff, reason=row.warning_reason)
        reply.done.append("Sent the prior warning to the complainant.")

    def _cmd_restrict(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                      reply: Reply, mail: InboundMail) -> None:
        row = self._register(session, case)
        exceptional = command.args.get("exceptional")
        if row.warned_at is None and not exceptional:
            raise Refusal(f"{command.line}\n  the procedure needs a prior warning first (#warn reason), unless the "
                          f"case is exceptional: add 'exceptional: what happened' (severe behaviour or threats).")
        self._impose(session, case, row, mode=str(command.args["mode"]), months=int(command.args["months"]),  # type: ignore[call-overload]
                     reason=str(command.args["reason"]), staff=staff, now=now, reply=reply,
                     exceptional=str(exceptional) if exceptional else None, template="restriction-notice")

    def _cmd_terminate(self, session: Session, case: Case, command: Command, body: str, staff: str,
                       now: datetime, reply: Reply, mail: InboundMail) -> None:
        if case.status in OPEN_STATUSES:
            raise Refusal(f"{command.line}\n  #terminate is for a closed case whose complainant keeps writing; "
                          f"this case is still {case.status}.")
        row = self._register(session, case)
        self._impose(session, case, row, mode=str(command.args["mode"]), months=None,
                     reason="you have continued to write to us about a complaint that is closed", staff=staff,
                     now=now, reply=reply, exceptional=None, template="contact-terminated")

    def _impose(self, session: Session, case: Case, row: Restriction, *, mode: str, months: int | None, reason: str,
                staff: str, now: datetime, reply: Reply, exceptional: str | None, template: str) -> None:
        row.state, row.mode, row.reason = "restricted", mode, reason
        row.started_at, row.decided_by, row.exceptional = to_db(now), staff, exceptional
        row.ends_at = to_db(add_months(now, months)) if months else None
        row.review_at = to_db(add_months(now, 6))
        row.reviewed_at = row.ended_at = None
        row.consulted = "senior management"
        session.flush()
        until = self.cw.calendar.format_date(from_db(row.ends_at)) if row.ends_at else None  # type: ignore[arg-type]
        reply.after.append(lambda: self.complainant_letter(
            session, case, template, now, reason=reason, mode=mode, months=months, until=until,
            options=[contact_option(o) for o in json.loads(row.options)],
            review=self.cw.calendar.format_date(from_db(row.review_at)),  # type: ignore[arg-type]
        ))
        repo.add_event(session, case, now, "restriction_imposed", actor=staff, mode=mode, months=months,
                       reason=reason, exceptional=exceptional, until=row.ends_at)
        reply.done.append(f"Restricted contact on this case to {mode}"
                          + (f" until {until}" if until else " with no end date")
                          + "; the complainant has been told why, what, for how long and how to challenge it.")

    def _set_option(self, session: Session, case: Case, command: Command, staff: str, now: datetime, reply: Reply,
                    option: dict[str, object]) -> None:
        row = self._register(session, case)
        if row.state != "restricted":
            raise Refusal(f"{command.line}\n  record contact options after the restriction (#restrict ...).")
        options = [o for o in json.loads(row.options) if o.get("kind") != option["kind"]]
        options.append(option)
        row.options = json.dumps(options, default=str)
        repo.add_event(session, case, now, "restriction_option", actor=staff, **{k: str(v) for k, v in option.items()})
        reply.done.append(f"Recorded the contact option: {contact_option(option)}.")

    def _cmd_named_contact(self, session: Session, case: Case, command: Command, body: str, staff: str,
                           now: datetime, reply: Reply, mail: InboundMail) -> None:
        email = str(command.args["email"])
        if self.cw.directory.get().staff_member(email) is None:
            raise Refusal(f"{command.line}\n  {email} is not in the staff directory (data/staff.toml).")
        self._set_option(session, case, command, staff, now, reply,
                         {"kind": "named_contact", "email": email, "name": self.staff_name(email)})

    def _cmd_letters_only(self, session: Session, case: Case, command: Command, body: str, staff: str,
                          now: datetime, reply: Reply, mail: InboundMail) -> None:
        self._set_option(session, case, command, staff, now, reply, {"kind": "letters_only"})

    def _cmd_phone(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                   reply: Reply, mail: InboundMail) -> None:
        args = command.args
        self._set_option(session, case, command, staff, now, reply,
                         {"kind": "phone", "days": ",".join(args["days"]),  # type: ignore[arg-type]
                          "start": str(args["start"])[:5], "end": str(args["end"])[:5]})

    def _cmd_agreement(self, session: Session, case: Case, command: Command, body: str, staff: str,
                       now: datetime, reply: Reply, mail: InboundMail) -> None:
        self._set_option(session, case, command, staff, now, reply,
                         {"kind": "agreement", "text": command.args.get("text") or ""})

    def _cmd_lift(self, session: Session, case: Case, command: Command, body: str, staff: str, now: datetime,
                  reply: Reply, mail: InboundMail) -> None:
        row = self.cw.active_restriction(session, case)
        if row is None:
            raise Refusal(f"{command.line}\n  there is no restriction on this case to lift.")
        reason = str(command.args["reason"])
        row.state, row.ended_at, row.ended_by, row.end_reason = "lifted", to_db(now), staff, reason
        reply.add(self.complainant_letter(session, case, "restriction-lifted", now, reason=reason))
        repo.add_event(session, case, now, "restriction_lifted", actor=staff, reason=reason)
        reply.done.append("Lifted the restriction and wrote to the complainant.")

    def _cmd_fresh_evidence(self, session: Session, case: Case, command: Command, body: str, staff: str,
                            now: datetime, reply: Reply, mail: InboundMail) -> None:
        filed = session.exec(select(MailMessage).where(
            MailMessage.case_id == case.id, MailMessage.direction == "in",
            col(MailMessage.kind).in_(("restricted_filed", "restricted_acknowledged")),
        ).order_by(col(MailMessage.id).desc())).first()
        if filed is None:
            raise Refusal(f"{command.line}\n  there is no filed message on this case to treat as fresh evidence.")
        filed.kind = "fresh_evidence"
        repo.add_event(session, case, now, "fresh_evidence", actor=staff, message_id=filed.message_id)
        from mailbot.domain.mail import parse_mail

        reply.add(self.cw.staff_letter(session, case, "staff-notification", now, **self.cw.notification_context(
            case, parse_mail(filed.raw), headline="Fresh evidence to handle normally")))
        reply.done.append("Put the latest filed message in front of the assignee for normal handling.")
