"""Staff commands about a mentor's behaviour, as the mentee procedure sets them out.

The ladder: a formal meeting (#mentor-meeting, with the right to be accompanied); after it, an informal
warning with steps agreed; then a formal warning, "with the understanding that following another warning
the participant will be asked to leave the programme" (#mentor-excluded). Serious behaviour (theft,
bullying, violence) means immediate suspension (#suspend), investigated by the Regional Manager, the Senior
Management Team and the Safeguarding Lead, and decided within 14 days (#suspension-decision): upheld means
exclusion. The words below a mentor command go into the mentor's letter, never to the complainant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import Session

from mailbot.domain.commands import Command, Mentor, Suspension, SuspensionDecision
from mailbot.services.staff_commands.turn import Handler, Refusal, Turn
from mailbot.store import repo
from mailbot.store.models import Case

if TYPE_CHECKING:
    from mailbot.services.staffdesk import StaffDesk

# Commands whose staff words belong in the mentor's letter (the staff desk does not relay them).
MENTOR_COMMANDS = frozenset({"mentor-meeting", "informal-warning", "formal-warning", "mentor-excluded", "suspend",
                             "suspension-decision"})


def _mentor_for(desk: StaffDesk, session: Session, case: Case, command: Command) -> str:
    args = command.args
    email = args.email if isinstance(args, (Mentor, Suspension)) else None
    if not email:
        known = repo.last_mentor_on_case(session, case.id or 0)
        if not known:
            raise Refusal(f"{command.line}\n  name the mentor the first time: {command.line.split()[0]} "
                          f"mentor@example.org")
        email = known
    person = desk.directory.get().participant(str(email))
    if person is None or person.role != "mentor":
        raise Refusal(f"{command.line}\n  {email} is not a mentor in the participant directory.")
    return person.email


def _record(t: Turn, mentor: str, action: str, reason: str = "") -> None:
    repo.add_mentor_action(t.session, t.case.id or 0, mentor, action, reason, t.staff, t.now)
    repo.add_event(t.session, t.case, t.now, "mentor_action", actor=t.staff, action=action, mentor=mentor,
                   reason=reason)


def _to_mentor(t: Turn, mentor: str, template: str, **extra: object) -> None:
    person = t.desk.directory.get().participant(mentor)
    context = t.letters.letter_context(t.session, t.case, mentor_name=person.name if person else "",
                                       staff_name=t.letters.staff_name(t.staff), staff_text=t.body.strip(), **extra)
    t.reply.add(t.letters.queue(t.session, case=t.case, template=template, to=[mentor], context=context, now=t.now,
                                automatic=False, auto_submitted=None, reply_to=None))


def mentor_meeting(t: Turn, command: Command) -> None:
    mentor = _mentor_for(t.desk, t.session, t.case, command)
    _record(t, mentor, "mentor-meeting")
    _to_mentor(t, mentor, "mentor-meeting")
    t.reply.done.append(f"Invited the mentor {mentor} to a formal meeting, with their right to be accompanied.")


def _warning(t: Turn, command: Command, formal: bool) -> None:
    mentor = _mentor_for(t.desk, t.session, t.case, command)
    if not repo.mentor_has(t.session, mentor, ("mentor-meeting",)):
        raise Refusal(f"{command.line}\n  a warning follows the formal meeting with the mentor: invite them first "
                      f"with #mentor-meeting {mentor}")
    if formal and repo.mentor_has(t.session, mentor, ("formal-warning",)):
        raise Refusal(f"{command.line}\n  {mentor} already has a formal warning; the procedure says that after "
                      f"another warning they are asked to leave the programme: #mentor-excluded {mentor} reason")
    action = "formal-warning" if formal else "informal-warning"
    _record(t, mentor, action)
    _to_mentor(t, mentor, "mentor-warning", formal=formal)
    t.reply.done.append(f"Recorded {'a formal' if formal else 'an informal'} warning to the mentor {mentor} and "
                        f"wrote to them" + (" (another warning means leaving the programme)." if formal else "."))


def informal_warning(t: Turn, command: Command) -> None:
    _warning(t, command, formal=False)


def formal_warning(t: Turn, command: Command) -> None:
    _warning(t, command, formal=True)


def mentor_excluded(t: Turn, command: Command) -> None:
    reason = command.arguments(Suspension).reason
    mentor = _mentor_for(t.desk, t.session, t.case, command)
    _exclude(t, mentor, reason)


def _exclude(t: Turn, mentor: str, reason: str) -> None:
    _record(t, mentor, "mentor-excluded", reason)
    _to_mentor(t, mentor, "mentor-excluded", reason=reason)
    t.reply.done.append(f"Recorded that the mentor {mentor} leaves the programme, and wrote to them.")


def suspend(t: Turn, command: Command) -> None:
    reason = command.arguments(Suspension).reason
    mentor = _mentor_for(t.desk, t.session, t.case, command)
    _record(t, mentor, "suspend", reason)
    person = t.desk.directory.get().participant(mentor)
    due = t.letters.calendar.deadline(t.now, 14, "days")
    repo.add_deadline(t.session, t.case.id or 0, t.case.stage, "suspension_decision", due)
    directory = t.desk.directory.get()
    region = person.region if person else None
    alert_to = [m.email for m in directory.with_role("regional_manager", region)] if region else []
    alert_to += [m.email for m in directory.with_role("smt")]
    alert_to += [m.email for m in directory.with_role("safeguarding_lead")]
    alert_to = list(dict.fromkeys(a for a in alert_to if a != t.staff))
    decision_by = t.letters.calendar.format_date(due)
    if alert_to:
        t.reply.add(t.letters.staff_letter(t.session, t.case, "mentor-suspension-alert", t.now, to=alert_to,
                                           mentor=mentor, reason=reason, decision_by=decision_by,
                                           staff_name=t.letters.staff_name(t.staff)))
    _to_mentor(t, mentor, "mentor-suspension", reason=reason, decision_by=decision_by)
    t.reply.done.append(f"Suspended the mentor {mentor}, alerted {', '.join(alert_to) or 'nobody'}, "
                        f"and set the decision deadline to {decision_by}.")


def suspension_decision(t: Turn, command: Command) -> None:
    decision = command.arguments(SuspensionDecision)
    mentor = repo.last_mentor_on_case(t.session, t.case.id or 0, action="suspend")
    if mentor is None:
        raise Refusal(f"{command.line}\n  no mentor is suspended on this case (#suspend MENTOR reason).")
    if repo.mentor_has(t.session, mentor, ("suspension-upheld", "suspension-not-upheld"), case_id=t.case.id):
        raise Refusal(f"{command.line}\n  the suspension of {mentor} on this case is already decided.")
    t.lifecycle.meet(t.session, t.case, ("suspension_decision",), t.now)
    _record(t, mentor, "suspension-upheld" if decision.upheld else "suspension-not-upheld", decision.reason)
    if decision.upheld:
        _exclude(t, mentor, decision.reason or "the concern that led to your suspension was upheld")
    else:
        _to_mentor(t, mentor, "mentor-suspension-lifted", reason=decision.reason)
        t.reply.done.append(f"Ended the suspension of the mentor {mentor} (not upheld) and wrote to them.")
    t.reply.add(t.letters.complainant_letter(t.session, t.case, "mentor-decision", t.now, upheld=decision.upheld,
                                             staff_name=t.letters.staff_name(t.staff)))
    t.reply.done.append("Told the complainant the outcome as far as it may be disclosed, and of their right to be "
                        "accompanied.")


HANDLERS: dict[str, Handler] = {
    "mentor-meeting": mentor_meeting,
    "informal-warning": informal_warning,
    "formal-warning": formal_warning,
    "mentor-excluded": mentor_excluded,
    "suspend": suspend,
    "suspension-decision": suspension_decision,
}
