"""The staff command grammar: ``#command`` lines at the top of a staff reply in a case thread.

Commands are read only from the top block of a reply (before any other non-blank text), so a
"#1 priority" or a markdown heading further down is ordinary text. Each command is one row of
``COMMANDS`` (usage, argument parser, roles allowed), and every error message ends with the usage,
because the person reading it is a busy member of staff replying from a phone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time
from typing import Callable, TypeVar, Union

from mailbot.domain.signing import REF_PATTERN

STAFF_ROLES = frozenset(
    {"complaints_team", "coordinator", "regional_manager", "head_of_delivery", "smt", "ceo", "safeguarding_lead"}
)
CATEGORIES = ("fundraising", "data_protection", "safeguarding", "mentor_behaviour", "service")
# outside-remit: "it may fall outside of our responsibilities" (both procedures, Closing a complaint).
SUSPENSION_DECISIONS = ("upheld", "not-upheld")
OUTCOMES = ("upheld", "partly-upheld", "not-upheld", "limited-disclosure", "outside-remit")
# How a request about personal data ends (domain.data_requests): done as asked, or refused with the reasons.
REQUEST_OUTCOMES = ("answered", "refused")
DATA_REQUEST_KINDS = ("access", "erasure")
# How a restricted or terminated complainant's mail is handled: acknowledged, or placed on file unanswered.
CONTACT_MODES = ("acknowledge-only", "silent")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# --- what each command carries: one small type per shape of arguments ---------------------------------------


@dataclass(frozen=True)
class NoArgs:
    pass


@dataclass(frozen=True)
class Reason:
    reason: str


@dataclass(frozen=True)
class Email:
    email: str


@dataclass(frozen=True)
class Mentor:
    email: str | None  # None: the mentor this case already acted on


@dataclass(frozen=True)
class Suspension:
    email: str | None
    reason: str


@dataclass(frozen=True)
class SuspensionDecision:
    upheld: bool  # upheld: the mentor is excluded from the programme; not upheld: the suspension ends
    reason: str


@dataclass(frozen=True)
class Category:
    category: str


@dataclass(frozen=True)
class Outcome:
    outcome: str


@dataclass(frozen=True)
class DataRequest:
    kind: str  # access or erasure


@dataclass(frozen=True)
class NotAComplaint:
    spam: bool  # spam gets no letter; anything else a short one saying what happens instead


@dataclass(frozen=True)
class ContactMode:
    mode: str


@dataclass(frozen=True)
class Extension:
    until: date
    reason: str


@dataclass(frozen=True)
class CaseRef:
    ref: str


@dataclass(frozen=True)
class RestrictionTerms:
    mode: str
    months: int
    reason: str
    exceptional: str | None


@dataclass(frozen=True)
class PhoneHours:
    days: tuple[str, ...]
    start: time
    end: time


@dataclass(frozen=True)
class AgreementText:
    text: str | None


Arguments = Union[
    NoArgs, Reason, Email, Mentor, Suspension, SuspensionDecision, Category, Outcome, NotAComplaint, ContactMode,
    Extension, CaseRef, RestrictionTerms, PhoneHours, AgreementText, DataRequest,
]
A = TypeVar("A", bound=Arguments)


@dataclass(frozen=True)
class Command:
    name: str  # canonical, e.g. "not-a-complaint"
    args: Arguments
    line: str  # the line as the member of staff wrote it

    def arguments(self, kind: type[A]) -> A:
        """The arguments as the type this command's row in ``COMMANDS`` parses to (a mismatch is a bug here)."""
        if not isinstance(self.args, kind):
            raise TypeError(f"#{self.name} carries {type(self.args).__name__}, not {kind.__name__}")
        return self.args


@dataclass(frozen=True)
class CommandError:
    line: str
    message: str  # what was wrong and how to write it


@dataclass(frozen=True)
class ParsedReply:
    commands: tuple[Command, ...]
    errors: tuple[CommandError, ...]
    body: str


class _ArgumentError(ValueError):
    """What is wrong with a command's arguments, in words for the member of staff."""


ArgumentParser = Callable[[str], Arguments]


@dataclass(frozen=True)
class CommandSpec:
    usage: str
    summary: str
    parse: ArgumentParser
    roles: frozenset[str] | None  # None: any member of staff


# --- argument parsers -----------------------------------------------------------------------------------------

_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_RESTRICT = re.compile(
    r"(?P<mode>\S+)\s+for\s+(?P<months>\S+)\s+months?\s+because\b\s*(?P<reason>.*?)"
    r"(?:\s*\bexceptional:\s*(?P<exceptional>.*))?",
    re.IGNORECASE | re.DOTALL,
)


def _no_arguments(text: str) -> NoArgs:
    if text:
        raise _ArgumentError(f"it takes nothing after the command, but got '{text}'")
    return NoArgs()


def _reason(text: str) -> Reason:
    if not text:
        raise _ArgumentError("a reason is required")
    return Reason(text)


def _address(text: str) -> str:
    address = text.strip("<>")
    if not _EMAIL.fullmatch(address):
        raise _ArgumentError(f"it needs one email address, not '{text}'" if text else "an email address is required")
    return address.lower()


def _email(text: str) -> Email:
    return Email(_address(text))


def _word(text: str, choices: tuple[str, ...], separator: str) -> str:
    """One word from a fixed list; "_" and "-" are interchangeable because people type either."""
    word = text.lower().replace("_", separator).replace("-", separator)
    if word not in choices:
        shown = f"'{text}' is not one of" if text else "it needs one of"
        raise _ArgumentError(f"{shown}: {', '.join(choices)}")
    return word


def _category(text: str) -> Category:
    return Category(_word(text, CATEGORIES, "_"))


def _outcome(text: str) -> Outcome:
    # Which of the two lists fits depends on the case (a complaint or a request about personal data): the
    # handler says so when the word is the other list's.
    return Outcome(_word(text, OUTCOMES + REQUEST_OUTCOMES, "-"))


def _data_request(text: str) -> DataRequest:
    return DataRequest(_word(text, DATA_REQUEST_KINDS, "-"))


def _not_a_complaint(text: str) -> NotAComplaint:
    if text and text.lower() != "spam":
        raise _ArgumentError(f"'{text}' is not 'spam' (write #not-a-complaint alone for a genuine enquiry)")
    return NotAComplaint(bool(text))


def _contact_mode(text: str) -> ContactMode:
    return ContactMode(_word(text, CONTACT_MODES, "-"))


def _extend(text: str) -> Extension:
    first, _, rest = text.partition(" ")
    if not first:
        raise _ArgumentError("a new date and a reason are required")
    if not _ISO_DATE.fullmatch(first):
        raise _ArgumentError(f"the date must be written YYYY-MM-DD, not '{first}'")
    try:
        until = date.fromisoformat(first)
    except ValueError:
        raise _ArgumentError(f"{first} is not a real date") from None
    if not rest.strip():
        raise _ArgumentError("a reason is required after the date")
    return Extension(until, rest.strip())


def _merge(text: str) -> CaseRef:
    ref = text.strip("[]")
    if not REF_PATTERN.fullmatch(ref):
        raise _ArgumentError(f"it needs a case reference like 1MM-2026-0042, not '{text}'" if text else "a case reference is required")
    return CaseRef(ref.upper())


def _restrict(text: str) -> RestrictionTerms:
    match = _RESTRICT.fullmatch(text)
    if match is None:
        raise _ArgumentError("it needs a contact mode, a number of months and a 'because' reason")
    mode = _word(match["mode"], CONTACT_MODES, "-")
    if not match["months"].isdigit() or int(match["months"]) < 1:
        raise _ArgumentError(f"the number of months must be a whole number above 0, not '{match['months']}'")
    if not match["reason"].strip():
        raise _ArgumentError("a reason is required after 'because'")
    exceptional = match["exceptional"]
    if exceptional is not None and not exceptional.strip():
        raise _ArgumentError("'exceptional:' must be followed by the exceptional circumstances")
    return RestrictionTerms(mode, int(match["months"]), match["reason"].strip(), exceptional.strip() if exceptional else None)


def _phone(text: str) -> PhoneHours:
    days_text, _, times_text = text.partition(" ")
    if not times_text.strip():
        raise _ArgumentError("it needs days and a time range")
    days: list[str] = []
    for day in days_text.split(","):
        canonical = day.strip()[:3].title()
        if canonical not in WEEKDAYS or not _is_day_name(day.strip()):
            raise _ArgumentError(f"'{day}' is not a day; use {','.join(WEEKDAYS)}")
        days.append(canonical)
    times = _TIME_RANGE.fullmatch(times_text.strip())
    if times is None:
        raise _ArgumentError(f"the times must be written like 10:00-12:00, not '{times_text.strip()}'")
    try:
        start = time(int(times[1]), int(times[2]))
        end = time(int(times[3]), int(times[4]))
    except ValueError:
        raise _ArgumentError(f"'{times_text.strip()}' is not a real time range") from None
    if start >= end:
        raise _ArgumentError("the start time must be before the end time")
    return PhoneHours(tuple(days), start, end)


def _is_day_name(word: str) -> bool:
    full = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    return any(name.startswith(word.lower()) and len(word) >= 3 for name in full)


def _optional_mentor(text: str) -> Mentor:
    """An optional mentor address: needed the first time a case acts on a mentor, remembered after."""
    return Mentor(_address(text) if text else None)


def _suspend(text: str) -> Suspension:
    first, _, rest = text.partition(" ")
    if _EMAIL.fullmatch(first.strip("<>")):
        return Suspension(_address(first), _reason(rest.strip()).reason)
    return Suspension(None, _reason(text).reason)


def _suspension_decision(text: str) -> SuspensionDecision:
    first, _, rest = text.partition(" ")
    word = _word(first, SUSPENSION_DECISIONS, "-")
    return SuspensionDecision(word == "upheld", rest.strip())


def _optional_text(text: str) -> AgreementText:
    return AgreementText(text or None)


# --- a complaint logged by staff for someone who phoned, wrote or came in ----------------------------------

CHANNELS = ("phone", "post", "in-person")
ON_BEHALF = "#on-behalf-of"
_ON_BEHALF_ADDRESS = re.compile(r"<\s*([^<>\s]+@[^<>\s]+)\s*>|(?<![\w.+-])([\w.+'-]+@[\w-]+(?:\.[\w-]+)+)")


# Who has no email address: the case's complainant is a placeholder at this reserved domain (RFC 2606), so
# no letter can ever be sent to it; their letters go to staff to post (``Correspondence.queue``).
POSTAL_DOMAIN = "post.invalid"


@dataclass(frozen=True)
class OnBehalf:
    name: str
    email: str  # "" when they gave a postal address instead
    channel: str  # one of CHANNELS
    postal_address: str = ""


def on_behalf_line(text: str) -> str | None:
    """The first line of a message when it is an #on-behalf-of line (case and spacing as people type them)."""
    first = next((line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()), "")
    return first if first.lower().replace("_", "-").startswith(ON_BEHALF) else None


def complaint_text_on_behalf(text: str) -> str:
    """The complaint as the member of staff recorded it: everything below the #on-behalf-of line."""
    lines = text.replace("\r\n", "\n").split("\n")
    for index, line in enumerate(lines):
        if line.strip():
            return "\n".join(lines[index + 1:]).strip()
    return ""


def parse_on_behalf(line: str) -> OnBehalf:
    """``#on-behalf-of Name <email> [phone|post|in-person]``; ValueError saying what is wrong otherwise."""
    rest = line.strip()[len(ON_BEHALF):].strip()
    words = rest.split()
    channel = "phone"
    if words and words[-1].lower().replace("_", "-") in CHANNELS:
        channel = words[-1].lower().replace("_", "-")
        rest = rest[: rest.lower().rfind(words[-1].lower())].strip()
    found = _ON_BEHALF_ADDRESS.search(rest)
    if found is None:
        # No email: a name and a postal address, "Pat Smith, 12 High Street, Leeds LS1 1AA".
        name, _, postal = rest.partition(",")
        if not name.strip() or not postal.strip():
            raise ValueError(f"{ON_BEHALF} needs the person's email address, or their name and postal address: "
                             f"{ON_BEHALF} Name <email> [{'|'.join(CHANNELS)}], or {ON_BEHALF} Name, postal "
                             f"address [{'|'.join(CHANNELS)}]")
        return OnBehalf(" ".join(name.split())[:200], "", channel, " ".join(postal.split())[:500])
    email = (found.group(1) or found.group(2)).strip().lower()
    name = (rest[: found.start()] + rest[found.end():]).strip().strip(",").strip().strip('"')
    return OnBehalf(" ".join(name.split())[:200], email, channel)


# --- the command table ----------------------------------------------------------------------------------------

_SENIOR = frozenset({"smt", "ceo"})
# The mentee procedure: "the Regional Manager, the Senior Management Team ... will investigate".
_MENTOR_DECIDERS = frozenset({"regional_manager", "head_of_delivery", "smt", "ceo"})
_CEO = frozenset({"ceo"})

COMMANDS: dict[str, CommandSpec] = {
    "note": CommandSpec("#note", "keep this reply as an internal note; nothing is sent", _no_arguments, None),
    "full": CommandSpec("#full", "this reply is the full response", _no_arguments, None),
    "assign": CommandSpec("#assign EMAIL", "make a member of staff the case owner", _email, None),
    "category": CommandSpec(
        "#category " + "|".join(CATEGORIES), "set the complaint category", _category, None
    ),
    "extend": CommandSpec("#extend YYYY-MM-DD reason...", "move the response deadline, with a reason", _extend, None),
    "resolve": CommandSpec(
        "#resolve " + "|".join(OUTCOMES + REQUEST_OUTCOMES), "close the case with an outcome (a request about "
        "personal data: " + "|".join(REQUEST_OUTCOMES) + ")", _outcome, None
    ),
    "data-request": CommandSpec(
        "#data-request access|erasure", "this is a request for a copy or the erasure of the person's data: it gets a "
        "case of its own on the law's one-month clock", _data_request, None
    ),
    "escalate": CommandSpec("#escalate", "move the case to the next stage", _no_arguments, None),
    "stay": CommandSpec("#stay", "decline the escalation request; your reply is the explanation", _no_arguments, None),
    "reopen": CommandSpec("#reopen", "reopen a closed case", _no_arguments, None),
    "merge": CommandSpec("#merge REF", "merge this case into another case", _merge, None),
    "safeguarding": CommandSpec("#safeguarding", "treat as a safeguarding concern", _no_arguments, None),
    "not-a-complaint": CommandSpec(
        "#not-a-complaint [spam]", "close as not a complaint: your words tell them what happens instead (spam: "
        "no letter)", _not_a_complaint, None
    ),
    "mentor-meeting": CommandSpec(
        "#mentor-meeting [MENTOR-EMAIL]", "invite the mentor to a formal meeting about their behaviour",
        _optional_mentor, None
    ),
    "informal-warning": CommandSpec(
        "#informal-warning [MENTOR-EMAIL]", "after the meeting: record an informal warning, with the steps agreed",
        _optional_mentor, None
    ),
    "formal-warning": CommandSpec(
        "#formal-warning [MENTOR-EMAIL]", "record a formal warning (another one means leaving the programme)",
        _optional_mentor, None
    ),
    "mentor-excluded": CommandSpec(
        "#mentor-excluded [MENTOR-EMAIL] reason...", "the mentor leaves or is excluded from the programme",
        _suspend, _MENTOR_DECIDERS
    ),
    "suspend": CommandSpec(
        "#suspend [MENTOR-EMAIL] reason...", "suspend the mentor (theft, bullying, violence)", _suspend, None
    ),
    "suspension-decision": CommandSpec(
        "#suspension-decision upheld|not-upheld [reason...]",
        "decide a suspension within 14 days (upheld: the mentor is excluded)", _suspension_decision, _MENTOR_DECIDERS
    ),
    "warn": CommandSpec("#warn reason...", "warn the complainant of possible restrictions", _reason, _SENIOR),
    "restrict": CommandSpec(
        "#restrict acknowledge-only|silent for N months because reason... [exceptional: reason...]",
        "restrict an unreasonably persistent complainant",
        _restrict,
        _CEO,
    ),
    "named-contact": CommandSpec("#named-contact EMAIL", "contact only through this member of staff", _email, _CEO),
    "letters-only": CommandSpec("#letters-only", "contact by letter only", _no_arguments, _CEO),
    "phone": CommandSpec("#phone DAYS TIMES", "calls only then, e.g. #phone Tue,Thu 10:00-12:00", _phone, _CEO),
    "agreement": CommandSpec("#agreement [text]", "record an agreement about future contact", _optional_text, _CEO),
    "lift": CommandSpec("#lift reason...", "lift a restriction", _reason, _CEO),
    "terminate": CommandSpec(
        "#terminate acknowledge-only|silent", "end contact about a closed case", _contact_mode, _CEO
    ),
    "fresh-evidence": CommandSpec("#fresh-evidence", "this message has fresh evidence; handle it normally", _no_arguments, None),
    "lesson": CommandSpec("#lesson text...", "record what was learned from this case, for the annual review",
                          _reason, None),
    "hold": CommandSpec("#hold reason...", "keep this case out of retention (a legal claim, a safeguarding matter)",
                        _reason, None),
    "release": CommandSpec("#release", "let retention remove this case's personal data when its time comes",
                           _no_arguments, None),
    "new-status-link": CommandSpec(
        "#new-status-link", "replace the complainant's private status page link (the old one stops working)",
        _no_arguments, None
    ),
}

ROLES_ALLOWED: dict[str, frozenset[str] | None] = {name: spec.roles for name, spec in COMMANDS.items()}

COMMAND_REFERENCE: str = "\n".join(f"{spec.usage}  - {spec.summary}" for spec in COMMANDS.values())

# The commands a staff notification shows, by the case's status: the few that fit what the case needs now.
COMMANDS_BY_STATUS: dict[str, tuple[str, ...]] = {
    "open": ("note", "full", "resolve", "extend", "assign", "safeguarding", "not-a-complaint"),
    "awaiting_staff": ("escalate", "stay", "note", "assign"),
    "resolved": ("escalate", "reopen", "note"),
}
_CLOSED_COMMANDS = ("reopen", "note")


def command_reference_for(status: str) -> str:
    """A few lines: the commands that fit a case in this status, then the names of the others."""
    shown = COMMANDS_BY_STATUS.get(status, _CLOSED_COMMANDS)
    lines = [f"{COMMANDS[name].usage}  - {COMMANDS[name].summary}" for name in shown]
    others = [f"#{name}" for name in COMMANDS if name not in shown]
    lines.append(f"Also: {' '.join(others)} (a command that cannot be carried out is answered with them all)")
    return "\n".join(lines)


# A command line: "#" and a word; one space after "#" is tolerated for known commands only, so that a
# "# Heading" in the reply is not mistaken for a mistyped command.
_COMMAND_LINE = re.compile(r"#(?P<space>\s?)(?P<word>[A-Za-z][\w-]*)(?P<rest>.*)", re.DOTALL)


def parse_commands(text: str) -> ParsedReply:
    """Commands and errors from the top block of a staff reply, and the text that follows them."""
    lines = text.replace("\r\n", "\n").split("\n")
    commands: list[Command] = []
    errors: list[CommandError] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if line:
            match = _COMMAND_LINE.fullmatch(line)
            name = _canonical(match["word"]) if match else ""
            if match is None or (match["space"] and name not in COMMANDS):
                break
            outcome = _parse_line(line, name, match["rest"].strip())
            (commands if isinstance(outcome, Command) else errors).append(outcome)
        index += 1
    body_lines = lines[index:]
    while body_lines and not body_lines[0].strip():
        body_lines.pop(0)
    return ParsedReply(tuple(commands), tuple(errors), "\n".join(body_lines).rstrip())


def check_permission(command: Command, roles: frozenset[str]) -> str | None:
    """Why this member of staff may not use the command, or None when they may."""
    if not roles & STAFF_ROLES:
        return f"#{command.name} can only be used by 1MM staff."
    if command.name not in ROLES_ALLOWED:
        return f"#{command.name} is not a command."
    allowed = ROLES_ALLOWED[command.name]
    if allowed is None or roles & allowed:
        return None
    needed = " or ".join(sorted(allowed))
    yours = ", ".join(sorted(roles & STAFF_ROLES))
    # The procedure gives these decisions to senior people; the message says who can act instead.
    return f"#{command.name} needs the {needed} role; your roles are: {yours}. Ask them to send it."


def _canonical(word: str) -> str:
    return word.lower().replace("_", "-")


def _parse_line(line: str, name: str, rest: str) -> Command | CommandError:
    spec = COMMANDS.get(name)
    if spec is None:
        known = ", ".join(f"#{known}" for known in COMMANDS)
        return CommandError(line, f"unknown command #{name}; the commands are: {known}")
    try:
        args = spec.parse(rest)
    except _ArgumentError as problem:
        return CommandError(line, f"#{name}: {problem}. Write it as: {spec.usage}")
    return Command(name=name, args=args, line=line)
