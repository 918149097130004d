"""Who is who: the staff directory (data/staff.toml) and the participant directory (data/participants.csv).

Parsing is pure (text in, Directory out) and strict: a file that does not parse raises
DirectoryError naming the file, the line and the reason, which stops start-up.
"""

from __future__ import annotations

import csv
import io
import tomllib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

STAFF_ROLES = frozenset(
    {"complaints_team", "coordinator", "regional_manager", "head_of_delivery", "smt", "ceo", "safeguarding_lead"}
)
PARTICIPANT_HEADER = ["email", "name", "role", "status", "region", "coordinator_email"]


class DirectoryError(Exception):
    """A directory file that cannot be used, with file, line and reason in the message."""


@dataclass(frozen=True)
class StaffMember:
    name: str
    email: str
    roles: frozenset[str]
    region: str = ""
    # `digest = true` in staff.toml: a daily digest of the cases they hold, whatever their role.
    digest: bool = False
    # `digest_subjects = true`: their digest shows complainants' subject lines (which often carry names and
    # health details); otherwise it shows each case's reference and category.
    digest_subjects: bool = False


@dataclass(frozen=True)
class Participant:
    email: str
    name: str
    role: str  # mentee | mentor
    status: str  # current | alumni
    region: str
    coordinator_email: str


@dataclass(frozen=True)
class Directory:
    staff: tuple[StaffMember, ...] = ()
    participants: tuple[Participant, ...] = ()
    _staff_by_email: dict[str, StaffMember] = field(default_factory=dict, compare=False, repr=False)
    _participant_by_email: dict[str, Participant] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._staff_by_email.update({s.email: s for s in self.staff})
        self._participant_by_email.update({p.email: p for p in self.participants})

    def staff_member(self, email: str) -> StaffMember | None:
        return self._staff_by_email.get(email.lower())

    def participant(self, email: str) -> Participant | None:
        return self._participant_by_email.get(email.lower())

    def with_role(self, role: str, region: str | None = None) -> list[StaffMember]:
        return [s for s in self.staff if role in s.roles and (region is None or s.region.lower() == region.lower())]

    def first_with_role(self, role: str, region: str | None = None) -> StaffMember | None:
        found = self.with_role(role, region)
        return found[0] if found else None


def parse_staff(text: str, source: str = "staff.toml") -> tuple[StaffMember, ...]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DirectoryError(f"{source}: {exc}") from None
    entries = data.get("staff", [])
    if not isinstance(entries, list):
        raise DirectoryError(f"{source}: 'staff' must be an array of [[staff]] tables")
    lines = _table_lines(text)
    members: list[StaffMember] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{source}, line {lines[index] if index < len(lines) else '?'}"
        if not isinstance(entry, dict):
            raise DirectoryError(f"{where}: each [[staff]] entry must be a table")
        name, email, roles = entry.get("name"), entry.get("email"), entry.get("roles", [])
        if not isinstance(name, str) or not name.strip():
            raise DirectoryError(f"{where}: 'name' is required")
        if not isinstance(email, str) or "@" not in email:
            raise DirectoryError(f"{where}: 'email' must be an email address")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise DirectoryError(f"{where}: 'roles' must be a list of role names")
        unknown = sorted(set(roles) - STAFF_ROLES)
        if unknown:
            raise DirectoryError(f"{where}: unknown role {unknown[0]!r} (roles: {', '.join(sorted(STAFF_ROLES))})")
        email = email.strip().lower()
        if email in seen:
            raise DirectoryError(f"{where}: {email} is listed twice")
        seen.add(email)
        region = entry.get("region", "")
        digest = entry.get("digest", False)
        if not isinstance(digest, bool):
            raise DirectoryError(f"{where}: 'digest' must be true or false")
        subjects = entry.get("digest_subjects", False)
        if not isinstance(subjects, bool):
            raise DirectoryError(f"{where}: 'digest_subjects' must be true or false")
        members.append(StaffMember(name.strip(), email, frozenset(roles), str(region or ""), digest, subjects))
    return tuple(members)


def _table_lines(text: str) -> list[int]:
    """Line numbers of each [[staff]] header, so errors can point at the right entry."""
    return [n for n, line in enumerate(text.splitlines(), start=1) if line.strip().startswith("[[staff]]")]


def parse_participants(text: str, source: str = "participants.csv") -> tuple[Participant, ...]:
    reader = csv.reader(io.StringIO(text))
    rows = list(reader)
    if not rows:
        return ()
    header = [h.strip().lower() for h in rows[0]]
    if header != PARTICIPANT_HEADER:
        raise DirectoryError(f"{source}, line 1: the header must be {','.join(PARTICIPANT_HEADER)}")
    people: list[Participant] = []
    seen: set[str] = set()
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{source}, line {number}"
        if len(row) != len(PARTICIPANT_HEADER):
            raise DirectoryError(f"{where}: expected {len(PARTICIPANT_HEADER)} fields, found {len(row)}")
        email, name, role, status, region, coordinator = (cell.strip() for cell in row)
        if "@" not in email:
            raise DirectoryError(f"{where}: {email!r} is not an email address")
        if role not in ("mentee", "mentor"):
            raise DirectoryError(f"{where}: role must be mentee or mentor, not {role!r}")
        if status not in ("current", "alumni"):
            raise DirectoryError(f"{where}: status must be current or alumni, not {status!r}")
        if coordinator and "@" not in coordinator:
            raise DirectoryError(f"{where}: coordinator_email {coordinator!r} is not an email address")
        email = email.lower()
        if email in seen:
            raise DirectoryError(f"{where}: {email} is listed twice")
        seen.add(email)
        people.append(Participant(email, name, role, status, region, coordinator.lower()))
    return tuple(people)


class DirectorySource(Protocol):
    """Where the services get the directory from: the current one, as of now (``data_files.DirectoryFiles``)."""

    def get(self) -> Directory: ...

    def steady(self) -> AbstractContextManager[None]:
        """Within it, ``get`` on this thread keeps answering the directory it had on entry."""
        ...


def choose_procedure(directory: Directory, email: str) -> str:
    """Which published procedure a new complaint from this address follows."""
    if directory.staff_member(email):
        return "staff"
    person = directory.participant(email)
    if person:
        return person.role  # "mentee" or "mentor"
    return "external"


def assigned_contact(directory: Directory, email: str) -> str | None:
    """The member of staff who handles this person's complaint, as the mentee procedure names them.

    Current participants go to their coordinator; alumni to the regional manager for their region,
    or the head of delivery where the region has none; everyone else to the complaints team.
    None means nobody suitable is in the directory.
    """
    person = directory.participant(email)
    if person and person.status == "current" and person.coordinator_email:
        return person.coordinator_email
    if person and person.region:
        manager = directory.first_with_role("regional_manager", person.region)
        if manager:
            return manager.email
    if person:
        head = directory.first_with_role("head_of_delivery")
        if head:
            return head.email
    team = directory.first_with_role("complaints_team")
    return team.email if team else None


def manager_of(directory: Directory, email: str) -> StaffMember | None:
    """Whom an overdue case is escalated to inside 1MM: the next person up from the assignee."""
    member = directory.staff_member(email)
    ladder: list[tuple[str, str | None]] = []
    if member is None or "coordinator" in member.roles:
        region = member.region if member else None
        ladder = [("regional_manager", region), ("head_of_delivery", None), ("ceo", None)]
    elif "regional_manager" in member.roles or "complaints_team" in member.roles:
        ladder = [("head_of_delivery", None), ("ceo", None)]
    elif "ceo" not in member.roles:
        ladder = [("ceo", None)]
    for role, region in ladder:
        candidate = directory.first_with_role(role, region) if region else directory.first_with_role(role)
        if candidate and candidate.email != email:
            return candidate
    return None


# Roles that are a team: the first member listed takes the case and the others are copied.
TEAM_ROLES = frozenset({"smt", "complaints_team"})


@dataclass(frozen=True)
class Reviewers:
    """Who takes a case at a new stage, and who is copied on the notice."""

    assignee: str | None  # None: nobody suitable (the complaints team gets it, and is told why)
    copied: tuple[str, ...] = ()
    passed_over: tuple[str, ...] = ()  # members of the role left out because the complaint is about them


def stage_reviewers(directory: Directory, reviewer_role: str, current_assignee: str | None,
                    about: frozenset[str]) -> Reviewers:
    """The reviewer the procedure names for a stage (``reviewer_role``), from the staff directory.

    ``assigned_contact`` keeps the case's own contact. For any other role the first member listed with
    it takes the case (for a team, the others are copied); nobody the complaint is ``about`` (their
    addresses) is ever chosen. The previous assignee is copied, unless the complaint is about them.
    """
    if reviewer_role == "assigned_contact":
        return Reviewers(current_assignee)
    members = directory.with_role(reviewer_role)
    eligible = [m.email for m in members if m.email not in about]
    passed_over = tuple(m.email for m in members if m.email in about)
    assignee = eligible[0] if eligible else None
    copied = eligible[1:] if reviewer_role in TEAM_ROLES else []
    if current_assignee and current_assignee not in about and current_assignee != assignee:
        copied.append(current_assignee)
    return Reviewers(assignee, tuple(dict.fromkeys(copied)), passed_over)


def staff_named_in(directory: Directory, text: str) -> frozenset[str]:
    """Members of staff a complaint is about: named by address, by full name, or by title and surname."""
    lowered = " ".join(text.lower().split())
    found = set()
    for member in directory.staff:
        names = [member.email.lower()]
        parts = member.name.split()
        if len(parts) >= 2:
            names.append(" ".join(parts).lower())
            names += [f"{title} {parts[-1].lower()}" for title in ("mr", "mrs", "ms", "miss", "mx", "dr")]
        if any(_mentions(lowered, name) for name in names):
            found.add(member.email)
    return frozenset(found)


def _mentions(text: str, name: str) -> bool:
    """``name`` in ``text`` as whole words (so "Tom Okafor" is not found in "Tom Okaforth")."""
    start = text.find(name)
    while start != -1:
        end = start + len(name)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before in "._") and not (after.isalnum() or after == "_"):
            return True
        start = text.find(name, start + 1)
    return False
