"""Staff commands about a mentor's behaviour (the mentee procedure): warnings and suspension."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import Session

from mailbot.domain.commands import Command, Mentor, Suspension
from mailbot.services.staff_commands.turn import Handler, Refusal, Reply, Turn
from mailbot.store import repo
from mailbot.store.models import Case

if TYPE_CHECKING:
    from datetime import datetime

    from mailbot.services.staffdesk import StaffDesk


def _mentor_for(desk: StaffDesk, session: Session, case: Case, command: Command) -> str:
    args = command.args
    if not isinstance(args, (Mentor, Suspension)):
        raise TypeError(f"#{command.name} does not name a mentor")
    email = args.email
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


def _mentor_action(desk: StaffDesk, session: Session, case: Case, command: Command, staff: str, now: datetime,
                   reply: Reply, reason: str = "") -> str:
    mentor = _mentor_for(desk, session, case, command)
    repo.add_mentor_action(session, case.id or 0, mentor, command.name, reason, staff, now)
    repo.add_event(session, case, now, "mentor_action", actor=staff, action=command.name, mentor=mentor,
                   reason=reason)
    return mentor


def _mentor_warning(desk: StaffDesk, session: Session, case: Case, command: Command, staff: str, now: datetime,
                    reply: Reply, what: str) -> None:
    mentor = _mentor_for(desk, session, case, command)
    person = desk.directory.get().participant(mentor)
    earlier = repo.has_formal_warning(session, mentor)
    _mentor_action(desk, session, case, command, staff, now, reply)
    reply.add(desk.letters.queue(
        session, case=case, template="mentor-meeting", to=[mentor],
        context=desk.letters.letter_context(session, case, mentor_name=person.name if person else "",
                                            warning=what, staff_name=desk.letters.staff_name(staff),
                                            final=command.name == "formal-warning" and bool(earlier)),
        now=now, automatic=False, auto_submitted=None, reply_to=None,
    ))
    reply.done.append(f"Recorded {what} against the mentor {mentor} and wrote to them about the meeting and "
                      f"their right to be accompanied.")


def informal_warning(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    _mentor_warning(t.desk, session, case, command, staff, now, reply, "an informal warning")


def formal_warning(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    _mentor_warning(t.desk, session, case, command, staff, now, reply, "a formal warning")


def suspend(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    reason = command.arguments(Suspension).reason
    mentor = _mentor_action(t.desk, session, case, command, staff, now, reply, reason=reason)
    person = t.desk.directory.get().participant(mentor)
    due = t.letters.calendar.deadline(now, 14, "days")
    repo.add_deadline(session, case.id or 0, case.stage, "suspension_decision", due)
    directory = t.desk.directory.get()
    region = person.region if person else None
    alert_to = [m.email for m in directory.with_role("safeguarding_lead")]
    alert_to += [m.email for m in directory.with_role("regional_manager", region)] if region else []
    if alert_to:
        reply.add(t.letters.staff_letter(session, case, "mentor-suspension-alert", now, to=sorted(set(alert_to)),
                                         mentor=mentor, reason=reason, decision_by=t.letters.calendar.format_date(due),
                                         staff_name=t.letters.staff_name(staff)))
    reply.add(t.letters.queue(
        session, case=case, template="mentor-suspension", to=[mentor],
        context=t.letters.letter_context(session, case, mentor_name=person.name if person else "", reason=reason,
                                         decision_by=t.letters.calendar.format_date(due)),
        now=now, automatic=False, auto_submitted=None,
    ))
    reply.done.append(f"Suspended the mentor {mentor}, alerted {', '.join(sorted(set(alert_to))) or 'nobody'}, "
                      f"and set the decision deadline to {t.letters.calendar.format_date(due)}.")


HANDLERS: dict[str, Handler] = {
    "informal-warning": informal_warning,
    "formal-warning": formal_warning,
    "suspend": suspend,
}
