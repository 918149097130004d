"""Staff commands of the unreasonably persistent complainants procedure: warn, restrict, contact options, lift."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sqlmodel import Session

from mailbot.domain.commands import (
    AgreementText,
    Command,
    ContactMode,
    Email,
    PhoneHours,
    Reason,
    RestrictionTerms,
)
from mailbot.domain.mail import parse_mail
from mailbot.domain.procedures import OPEN_STATUSES
from mailbot.domain.restrictions import add_months, contact_option
from mailbot.services.staff_commands.turn import Handler, Refusal, Reply, Turn
from mailbot.store import repo
from mailbot.store.db import from_db, to_db
from mailbot.store.models import Case, Restriction

if TYPE_CHECKING:
    from datetime import datetime

    from mailbot.services.staffdesk import StaffDesk


def _impose(desk: StaffDesk, session: Session, case: Case, row: Restriction, *, mode: str, months: int | None,
            reason: str, staff: str, now: datetime, reply: Reply, exceptional: str | None, template: str) -> None:
    row.state, row.mode, row.reason = "restricted", mode, reason
    row.started_at, row.decided_by, row.exceptional = to_db(now), staff, exceptional
    row.ends_at = to_db(add_months(now, months)) if months else None
    row.review_at = to_db(add_months(now, 6))
    row.reviewed_at = row.ended_at = None
    row.consulted = "senior management"
    until = desk.letters.calendar.format_date(from_db(row.ends_at)) if row.ends_at else None  # type: ignore[arg-type]
    reply.after.append(lambda: desk.letters.complainant_letter(
        session, case, template, now, reason=reason, mode=mode, months=months, until=until,
        options=[contact_option(o) for o in json.loads(row.options)],
        review=desk.letters.calendar.format_date(from_db(row.review_at)),  # type: ignore[arg-type]
    ))
    repo.add_event(session, case, now, "restriction_imposed", actor=staff, mode=mode, months=months,
                   reason=reason, exceptional=exceptional, until=row.ends_at)
    reply.done.append(f"Restricted contact on this case to {mode}"
                      + (f" until {until}" if until else " with no end date")
                      + "; the complainant has been told why, what, for how long and how to challenge it.")


def _set_option(desk: StaffDesk, session: Session, case: Case, command: Command, staff: str, now: datetime,
                reply: Reply, option: dict[str, object]) -> None:
    row = repo.restriction_record(session, case)
    if row.state != "restricted":
        raise Refusal(f"{command.line}\n  record contact options after the restriction (#restrict ...).")
    options = [o for o in json.loads(row.options) if o.get("kind") != option["kind"]]
    options.append(option)
    row.options = json.dumps(options, default=str)
    repo.add_event(session, case, now, "restriction_option", actor=staff, **{k: str(v) for k, v in option.items()})
    reply.done.append(f"Recorded the contact option: {contact_option(option)}.")


def warn(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    row = repo.restriction_record(session, case)
    if row.state == "restricted":
        raise Refusal(f"{command.line}\n  this complainant is already restricted on this case.")
    row.state, row.warned_at, row.warned_by = "warned", to_db(now), staff
    row.warning_reason = command.arguments(Reason).reason
    reply.add(t.letters.complainant_letter(session, case, "restriction-warning", now, reason=row.warning_reason))
    repo.add_event(session, case, now, "restriction_warned", actor=staff, reason=row.warning_reason)
    reply.done.append("Sent the prior warning to the complainant.")


def restrict(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    row = repo.restriction_record(session, case)
    args = command.arguments(RestrictionTerms)
    if row.warned_at is None and not args.exceptional:
        raise Refusal(f"{command.line}\n  the procedure needs a prior warning first (#warn reason), unless the "
                      f"case is exceptional: add 'exceptional: what happened' (severe behaviour or threats).")
    _impose(t.desk, session, case, row, mode=args.mode, months=args.months, reason=args.reason, staff=staff,
            now=now, reply=reply, exceptional=args.exceptional, template="restriction-notice")


def terminate(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    if case.status in OPEN_STATUSES:
        raise Refusal(f"{command.line}\n  #terminate is for a closed case whose complainant keeps writing; "
                      f"this case is still {case.status}.")
    row = repo.restriction_record(session, case)
    _impose(t.desk, session, case, row, mode=command.arguments(ContactMode).mode, months=None,
            reason="you have continued to write to us about a complaint that is closed", staff=staff,
            now=now, reply=reply, exceptional=None, template="contact-terminated")


def named_contact(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    email = command.arguments(Email).email
    if t.desk.directory.get().staff_member(email) is None:
        raise Refusal(f"{command.line}\n  {email} is not in the staff directory (data/staff.toml).")
    _set_option(t.desk, session, case, command, staff, now, reply,
                {"kind": "named_contact", "email": email, "name": t.letters.staff_name(email)})


def letters_only(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    _set_option(t.desk, session, case, command, staff, now, reply, {"kind": "letters_only"})


def phone(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    hours = command.arguments(PhoneHours)
    _set_option(t.desk, session, case, command, staff, now, reply,
                {"kind": "phone", "days": ",".join(hours.days),
                 "start": str(hours.start)[:5], "end": str(hours.end)[:5]})


def agreement(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    _set_option(t.desk, session, case, command, staff, now, reply,
                {"kind": "agreement", "text": command.arguments(AgreementText).text or ""})


def lift(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    row = t.lifecycle.active_restriction(session, case)
    if row is None:
        raise Refusal(f"{command.line}\n  there is no restriction on this case to lift.")
    reason = command.arguments(Reason).reason
    row.state, row.ended_at, row.ended_by, row.end_reason = "lifted", to_db(now), staff, reason
    reply.add(t.letters.complainant_letter(session, case, "restriction-lifted", now, reason=reason))
    repo.add_event(session, case, now, "restriction_lifted", actor=staff, reason=reason)
    reply.done.append("Lifted the restriction and wrote to the complainant.")


def fresh_evidence(t: Turn, command: Command) -> None:
    session, case, staff, now, reply = t.session, t.case, t.staff, t.now, t.reply
    filed = repo.latest_restricted_mail(session, case.id or 0)
    if filed is None:
        raise Refusal(f"{command.line}\n  there is no filed message on this case to treat as fresh evidence.")
    filed.kind = "fresh_evidence"
    repo.add_event(session, case, now, "fresh_evidence", actor=staff, message_id=filed.message_id)
    reply.add(t.letters.staff_letter(session, case, "staff-notification", now, **t.letters.notification_context(
        case, parse_mail(filed.raw), headline="Fresh evidence to handle normally")))
    reply.done.append("Put the latest filed message in front of the assignee for normal handling.")


HANDLERS: dict[str, Handler] = {
    "warn": warn,
    "restrict": restrict,
    "terminate": terminate,
    "named-contact": named_contact,
    "letters-only": letters_only,
    "phone": phone,
    "agreement": agreement,
    "lift": lift,
    "fresh-evidence": fresh_evidence,
}
