"""Whether the bot is doing its job, from what the store records: healthy, degraded or failing.

Failing: the mailbox or the SMTP server refused sign-in, or the mailbox has not been read for 15 minutes (the
last attempt failed, or no bot is running), or a letter has waited an hour. Degraded: a letter failed for good in the last day, or the last read of the
mailbox failed though it worked within the 15 minutes. `mailbot status` exits 0, 1 or 3 for these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

HEALTHY, DEGRADED, FAILING = "healthy", "degraded", "failing"
EXIT_STATUS = {HEALTHY: 0, DEGRADED: 1, FAILING: 3}
UNREAD_FOR = timedelta(minutes=15)
LETTER_WAITING = timedelta(hours=1)
# How a refused sign-in is recorded on the mailbox (the adapter's exception names).
SIGN_IN_ERRORS = ("LoginError", "TokenError")
# How an SMTP TemporaryFailure (a letter's error) begins when the fault is the bot's own, and every letter would meet
# it: a refused password or token, or a server asking for a sign-in the bot did not give (530); or a server that will
# not take letters from the bot's address (a 5xx to MAIL FROM not about the letter itself, or Microsoft 365's
# SendAsDenied at a letter's end: not signed in as someone allowed to send as it, a day's sending quota reached).
# Delivery pauses, the letters wait without spending attempts, and the health says why (mail.smtp sorts them).
SIGN_IN_REFUSED = "sign-in refused"
SENDER_REFUSED = "sender refused"
EVERY_LETTER_HELD = (SIGN_IN_REFUSED, SENDER_REFUSED)


@dataclass(frozen=True)
class Mailbox:
    name: str
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None


@dataclass(frozen=True)
class Facts:
    now: datetime
    reads_a_mailbox: bool  # IMAP configured (local mode has no mailbox to watch)
    mailboxes: tuple[Mailbox, ...]
    oldest_pending: datetime | None  # when the oldest letter still waiting to go was written
    failed_last_day: int
    # The SMTP server's refusal of the bot's sign-in or address (EVERY_LETTER_HELD), when no letter has gone since.
    smtp_refused: str | None = None
    # Whether a bot is running on the database (None: not known, e.g. asked from inside the bot itself).
    running: bool | None = None


@dataclass(frozen=True)
class Finding:
    """One thing wrong: ``condition`` names it for alerts (the same condition stays the same name while it
    lasts), ``level`` is FAILING or DEGRADED, ``words`` say it to an operator."""

    condition: str
    level: str
    words: str


# The conditions the administrator is mailed about (MAILBOT_ADMIN_EMAIL), by their name's first part.
ALERTED = ("sign-in", "smtp-sign-in", "smtp-sender", "unread", "letters-failed")


def findings(facts: Facts) -> list[Finding]:
    found: list[Finding] = []
    for box in facts.mailboxes:
        erring = box.last_error_at is not None and (box.last_success is None or box.last_error_at > box.last_success)
        refused = (box.last_error or "").startswith(SIGN_IN_ERRORS)
        unread = box.last_success is None or facts.now - box.last_success > UNREAD_FOR
        since = box.last_success.isoformat() if box.last_success else "it was configured"
        if erring and refused:
            found.append(Finding(f"sign-in:{box.name}", FAILING, f"{box.name}: sign-in refused ({box.last_error})"))
        elif erring and unread:
            found.append(Finding(f"unread:{box.name}", FAILING, f"{box.name}: not read since {since} ({box.last_error})"))
        elif erring:
            found.append(Finding(f"read-failed:{box.name}", DEGRADED,
                                 f"{box.name}: the last read failed ({box.last_error})"))
        elif facts.running is False and unread:
            found.append(Finding(f"unread:{box.name}", FAILING,
                                 f"{box.name}: not read since {since}, and no mailbot is running on this database"))
    if facts.smtp_refused and facts.smtp_refused.startswith(SENDER_REFUSED):
        found.append(Finding("smtp-sender", FAILING,
                             f"the SMTP server will not take letters from the bot's address ({facts.smtp_refused})"))
    elif facts.smtp_refused:
        found.append(Finding("smtp-sign-in", FAILING, f"the SMTP server refused sign-in ({facts.smtp_refused})"))
    if facts.reads_a_mailbox and not facts.mailboxes:
        found.append(Finding("never-read", DEGRADED, "the mailbox has not been read yet"))
    if facts.oldest_pending is not None and facts.now - facts.oldest_pending > LETTER_WAITING:
        minutes = int((facts.now - facts.oldest_pending).total_seconds() // 60)
        found.append(Finding("letter-waiting", FAILING, f"a letter has waited {minutes} minutes to be sent"))
    if facts.failed_last_day:
        found.append(Finding("letters-failed", DEGRADED,
                             f"{facts.failed_last_day} letter(s) failed for good in the last day"))
    return found


def assess(facts: Facts) -> tuple[str, list[str]]:
    """The state and the reasons for it, in words an operator acts on (what is failing first)."""
    return verdict(findings(facts))


def verdict(found: list[Finding]) -> tuple[str, list[str]]:
    """The state the findings add up to, and their words."""
    failing = [f.words for f in found if f.level == FAILING]
    degraded = [f.words for f in found if f.level == DEGRADED]
    if failing:
        return FAILING, failing + degraded
    if degraded:
        return DEGRADED, degraded
    return HEALTHY, []


def alert_conditions(facts: Facts) -> dict[str, str]:
    """The conditions to alert the administrator about now: name -> words."""
    return {f.condition: f.words for f in findings(facts) if f.condition.split(":", 1)[0] in ALERTED}
