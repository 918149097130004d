"""Who receives the daily digest, and what each of them may see: pure functions of the directory (data/staff.toml).

Read by the digest itself (``services.digest``) and by the scheduled work's look at whether any digest is still to
go today (``services.jobs``), which must not load the digest to find out.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailbot.domain.directory import Directory, StaffMember

# Roles that receive a digest, most senior first: the order decides whose digest a bare preview shows.
SENIORITY = ("ceo", "head_of_delivery", "smt", "safeguarding_lead", "regional_manager")
ALL_CASES_ROLES = frozenset({"ceo", "head_of_delivery", "smt"})


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str
    roles: frozenset[str]
    region: str
    # Subscribed with `digest = true`: the cases they hold, on top of whatever their roles show them.
    own_cases: bool = False
    # `digest_subjects = true`: complainants' subject lines; otherwise the category stands in for them.
    subjects: bool = False

    @property
    def sees_all(self) -> bool:
        return bool(self.roles & ALL_CASES_ROLES)

    @property
    def scope_label(self) -> str:
        if self.sees_all:
            return "every case"
        parts = []
        if "regional_manager" in self.roles:
            parts.append(f"cases in {self.region}" if self.region else "cases in your region")
        if "safeguarding_lead" in self.roles:
            parts.append("safeguarding cases")
        if self.own_cases:
            parts.append("the cases you hold")
        return " and ".join(parts)

    def sees(self, region: str, safeguarding: bool) -> bool:
        if self.sees_all:
            return True
        if "safeguarding_lead" in self.roles and safeguarding:
            return True
        return ("regional_manager" in self.roles and bool(self.region) and bool(region)
                and region.strip().lower() == self.region.strip().lower())


def digest_recipients(directory: Directory) -> list[Recipient]:
    """Everyone with a digest role, most senior first (then in file order)."""
    def rank(member: StaffMember) -> int:
        return min(SENIORITY.index(r) for r in member.roles if r in SENIORITY)

    members = [m for m in directory.staff if m.roles & set(SENIORITY)]
    members.sort(key=rank)
    subscribed = [m for m in directory.staff if m.digest and m not in members]
    return [Recipient(m.email, m.name, m.roles, m.region, own_cases=m.digest, subjects=m.digest_subjects)
            for m in (*members, *subscribed)]
