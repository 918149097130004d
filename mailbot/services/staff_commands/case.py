"""Staff commands that move a case along its procedure: assign, categorise, extend, resolve, escalate, close."""

from __future__ import annotations

import secrets

from mailbot.domain import data_requests
from mailbot.domain.commands import (
    REQUEST_OUTCOMES,
    CaseRef,
    Category,
    Command,
    DataRequest,
    Email,
    Extension,
    NotAComplaint,
    Outcome,
    Reason,
)
from mailbot.domain.procedures import OPEN_STATUSES, signposting
from mailbot.services.staff_commands.turn import Handler, Refusal, Turn
from mailbot.store import repo
from mailbot.store.db import from_db, to_db


def note(t: Turn, command: Command) -> None:
    return None  # handled in _carry_out: it decides whether anything is relayed


def full(t: Turn, command: Command) -> None:
    reply = t.reply
    reply.done.append("Recorded this reply as the full response.")


def assign(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    email = command.arguments(Email).email
    member = t.desk.directory.get().staff_member(email)
    if member is None:
        raise Refusal(f"{command.line}\n  {email} is not in the staff directory (data/staff.toml).")
    previous = case.assignee
    case.assignee = member.email
    repo.add_event(session, case, now, "reassigned", actor=staff, previous=previous or "", assignee=member.email)
    reply.done.append(f"Assigned the case to {member.name} <{member.email}> (was {previous or 'nobody'}).")
    last = t.letters.last_complainant_message(session, case)
    if member.email != staff:
        reply.add(t.letters.staff_letter(
            session, case, "staff-notification", now, **t.letters.notification_context(
                case, last, headline=f"Assigned to you by {t.letters.staff_name(staff)}")))


def category(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    previous, case.category = case.category, command.arguments(Category).category
    if previous == case.category:
        reply.done.append(f"The category was already {case.category}; nothing changed.")
        return
    reply.done.append(f"Changed the category from {previous} to {case.category}.")
    if case.category == "safeguarding" and previous != "safeguarding":
        for letter in t.letters.safeguarding_alert(session, case, None, now,
                                                   reason=f"{t.letters.staff_name(staff)} marked it as safeguarding"):
            reply.add(letter)
        reply.done.append("Alerted the safeguarding lead.")


def safeguarding(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    case.category = "safeguarding"
    for letter in t.letters.safeguarding_alert(session, case, None, now,
                                               reason=f"{t.letters.staff_name(staff)} raised a safeguarding concern"):
        reply.add(letter)
    reply.done.append("Marked the case as safeguarding and alerted the safeguarding lead.")


def extend(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    cal = t.letters.calendar
    args = command.arguments(Extension)
    until = args.until
    if case.status not in OPEN_STATUSES:
        raise Refusal(f"{command.line}\n  the case is {case.status}; there is no deadline to extend.")
    if until <= cal.local(now).date():
        raise Refusal(f"{command.line}\n  the new date must be after today.")
    if not cal.is_working_day(until):
        raise Refusal(f"{command.line}\n  {cal.format_date(until)} is not a working day.")
    new_due = cal.close_of_business(until)
    if case.procedure == data_requests.PROCEDURE:
        # Article 12(3): two further months at most, counted on from the first month.
        latest = cal.deadline(from_db(case.opened_at), 1 + data_requests.EXTENSION_MONTHS, "months")  # type: ignore[arg-type]
        if new_due > latest:
            raise Refusal(f"{command.line}\n  the law allows a request about personal data two more months at "
                          f"most: until {cal.format_date(latest)}.")
    moved = []
    for row in t.lifecycle.open_deadlines(session, case):
        if row.name == "first_response" or from_db(row.due_at) >= new_due:  # type: ignore[operator]
            continue
        row.superseded = True
        repo.add_deadline(session, case.id or 0, row.stage, row.name, new_due)
        moved.append(row.name)
    if not moved:
        raise Refusal(f"{command.line}\n  no open deadline falls before {cal.format_date(until)}.")
    reason = args.reason
    repo.add_event(session, case, now, "deadline_extended", actor=staff, deadlines=moved,
                   until=new_due.isoformat(), reason=reason)
    new_date = f"the end of {cal.format_date(until)}"
    reply.add(t.letters.complainant_letter(session, case, t.lifecycle.procedures[case.procedure].letters["extend"], now,
                                           new_date=new_date, reason=reason))
    reply.done.append(f"Extended {', '.join(n.replace('_', ' ') for n in moved)} to the end of "
                      f"{cal.format_date(until)} and sent the extension notice.")


def resolve(t: Turn, command: Command) -> None:
    session, case, body, staff, now, reply = t.session, t.case, t.body, t.staff, t.now, t.reply
    if case.status not in OPEN_STATUSES:
        raise Refusal(f"{command.line}\n  the case is {case.status}; reply #reopen first to resolve it again.")
    outcome = command.arguments(Outcome).outcome
    is_request = case.procedure == data_requests.PROCEDURE
    if is_request and outcome not in REQUEST_OUTCOMES:
        raise Refusal(f"{command.line}\n  this is a request about personal data: close it with #resolve "
                      f"{'|'.join(REQUEST_OUTCOMES)}.")
    if not is_request and outcome in REQUEST_OUTCOMES:
        raise Refusal(f"{command.line}\n  '{outcome}' closes a request about personal data; this is a complaint.")
    case.status = "resolved"
    case.outcome = outcome
    case.closed_at = to_db(now)
    t.lifecycle.meet(session, case, ("first_response", "full_response", "resolution", "stage_response",
                                     data_requests.DEADLINE), now)
    procedure = t.lifecycle.procedures[case.procedure]
    signs = signposting(t.desk.signposts, case.category, now, t.letters.calendar)
    reply.add(t.letters.complainant_letter(
        session, case, procedure.letters["resolve"], now, from_name=None, outcome=outcome,
        **t.letters.staff_words(body, staff), signposts=signs,
        **t.letters.next_stage_context(case),
    ))
    repo.add_event(session, case, now, "resolved", actor=staff, outcome=outcome, stage=case.stage)
    reply.done.append(f"Resolved the case as {outcome} and sent the outcome letter with its signposting.")


def escalate(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    procedure = t.lifecycle.procedures[case.procedure]
    if case.stage >= procedure.last_stage:
        raise Refusal(f"{command.line}\n  the case is already at the last stage ({procedure.stage(case.stage).label}).")
    for letter in t.lifecycle.escalate(session, case, now, reason=f"escalated by {t.letters.staff_name(staff)}"):
        reply.add(letter)
    holder = t.letters.staff_name(case.assignee) if case.assignee else "the complaints team"
    reply.done.append(f"Escalated the case to {procedure.stage(case.stage).label}: {holder} has it now, with the "
                      f"whole history, and the complainant has been told.")


def stay(t: Turn, command: Command) -> None:
    session, case, body, staff, now, reply = t.session, t.case, t.body, t.staff, t.now, t.reply
    if case.status != "awaiting_staff":
        raise Refusal(f"{command.line}\n  #stay declines an escalation request, and this case has none waiting.")
    case.status = "resolved"
    reply.add(t.letters.complainant_letter(session, case, "escalation-declined", now,
                                           **t.letters.staff_words(body, staff), **t.letters.next_stage_context(case)))
    repo.add_event(session, case, now, "escalation_declined", actor=staff)
    reply.done.append("Declined the escalation request and sent your explanation to the complainant.")


def reopen(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    if case.status in OPEN_STATUSES:
        raise Refusal(f"{command.line}\n  the case is already open.")
    previous = case.status
    case.status = "open"
    case.closed_at = None
    case.merged_into = None
    repo.add_event(session, case, now, "reopened", actor=staff, was=previous)
    reply.done.append(f"Reopened the case (it was {previous}).")


def merge(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    ref = command.arguments(CaseRef).ref
    target = repo.case_by_ref(session, ref)
    if target is None:
        raise Refusal(f"{command.line}\n  there is no case {ref}.")
    if target.id == case.id:
        raise Refusal(f"{command.line}\n  a case cannot be merged into itself.")
    case.status = "merged"
    case.merged_into = target.ref
    case.closed_at = to_db(now)
    for row in t.lifecycle.open_deadlines(session, case):
        row.superseded = True
    repo.add_event(session, case, now, "merged", actor=staff, into=target.ref)
    repo.add_event(session, target, now, "case_merged_in", actor=staff, merged=case.ref)
    reply.done.append(f"Merged this case into {target.ref}; its mail now goes there"
                      + (" and falls under the restriction on it." if t.lifecycle.active_restriction(session, target)
                         else "."))


def not_a_complaint(t: Turn, command: Command) -> None:
    """Closed as not a complaint. Someone who was promised a reply hears what happens instead (the staff
    member's words, or a kind default); spam hears nothing."""
    session, case, body, staff, now, reply = t.session, t.case, t.body, t.staff, t.now, t.reply
    spam = command.arguments(NotAComplaint).spam
    case.status = "closed"
    case.outcome = "spam" if spam else "not-a-complaint"
    case.closed_at = to_db(now)
    for row in t.lifecycle.open_deadlines(session, case):
        row.superseded = True
    repo.add_event(session, case, now, "closed", actor=staff, reason="spam" if spam else "not a complaint",
                   **({"note": body.strip()[:4000]} if spam and body.strip() else {}))
    if spam:
        reply.done.append("Closed the case as spam; nothing was sent to the sender.")
        return
    reply.add(t.letters.complainant_letter(session, case, "not-a-complaint", now, **t.letters.staff_words(body, staff)))
    reply.done.append("Closed the case as not a complaint and told them what happens instead"
                      + (" in your words." if body.strip() else " (the standard words: add your own below the "
                                                                "command next time)."))


def new_status_link(t: Turn, command: Command) -> None:
    """A status page link that went astray: a new nonce, so the old link shows nothing from now on."""
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    case.status_nonce = secrets.token_urlsafe(12)
    repo.add_event(session, case, now, "status_link_replaced", actor=staff)
    link = t.letters.status_link(case)
    reply.done.append("Replaced the complainant's status page link: the old one no longer works. "
                      + (f"The new one is {link} (send it to them if they need it)." if link else
                         "This bot has no MAILBOT_PUBLIC_URL, so no letter carries a link."))


def lesson(t: Turn, command: Command) -> None:
    """What the case taught: kept in its trail for the annual review of the procedure."""
    text = command.arguments(Reason).reason
    repo.add_event(t.session, t.case, t.now, "lesson", actor=t.staff, text=text[:2000])
    t.reply.done.append(f"Recorded the lesson: {text}")


def hold(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    reason = command.arguments(Reason).reason
    case.held_reason = reason[:500]
    repo.add_event(session, case, now, "case_held", actor=staff, reason=reason[:500])
    reply.done.append(f"Put the case on hold: retention will keep its personal data until #release ({reason}).")


def release(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    if not case.held_reason:
        reply.done.append("The case was not on hold; nothing changed.")
        return
    previous, case.held_reason = case.held_reason, None
    repo.add_event(session, case, now, "case_released", actor=staff, previous=previous)
    reply.done.append("Released the hold: retention removes the case's personal data when its time comes.")


def data_request(t: Turn, command: Command) -> None:
    """A request for a copy or the erasure of the person's data: on a complaint, a case of its own on the one-month
    clock (the complaint runs on); on a request already, its kind corrected."""
    session, case, now, reply = t.session, t.case, t.now, t.reply
    kind = command.arguments(DataRequest).kind
    if data_requests.PROCEDURE not in t.lifecycle.procedures:
        raise Refusal(f"{command.line}\n  procedures.toml has no [procedures.data_request]: requests about "
                      f"personal data are handled as complaints here.")
    if case.procedure == data_requests.PROCEDURE:
        repo.add_event(session, case, now, "data_request", actor=t.staff, kind=kind, corrected=True)
        reply.done.append(f"Recorded this as a request for {data_requests.label(kind).replace('their', 'the')}.")
        return
    # The clock runs from when the message asking reached us: the complainant's latest on this case.
    received = repo.latest_inbound_from(session, case.id or 0, case.complainant) or from_db(case.opened_at)
    request, deadlines = t.lifecycle.open_data_request(session, case, kind, received, now)  # type: ignore[arg-type]
    repo.add_event(session, case, now, "data_request_opened", actor=t.staff, kind=kind, request=request.ref)
    procedure = t.lifecycle.procedures[data_requests.PROCEDURE]
    reply.add(t.letters.queue(session, case=request, template=procedure.letters["open"], to=[request.complainant],
                              context=t.letters.letter_context(session, request, deadlines=deadlines), now=now,
                              automatic=False))
    due = deadlines.get(data_requests.DEADLINE)
    reply.done.append(f"Opened {request.ref} for the request ({kind}) and sent its acknowledgement"
                      + (f"; it must be answered by {t.letters.calendar.format_date(due)}." if due else ".")
                      + f" {case.ref} goes on as a complaint.")


HANDLERS: dict[str, Handler] = {
    "new-status-link": new_status_link,
    "data-request": data_request,
    "hold": hold,
    "lesson": lesson,
    "release": release,
    "note": note,
    "full": full,
    "assign": assign,
    "category": category,
    "safeguarding": safeguarding,
    "extend": extend,
    "resolve": resolve,
    "escalate": escalate,
    "stay": stay,
    "reopen": reopen,
    "merge": merge,
    "not-a-complaint": not_a_complaint,
}
