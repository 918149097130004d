"""Whether the bot is doing its job, from what the store records: healthy, degraded or failing.

Failing: the mailbox refused sign-in, or has not been read for 15 minutes (and the last attempt failed), or a
letter has waited an hour. Degraded: a letter failed for good in the last day, or the last read of the
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


def assess(facts: Facts) -> tuple[str, list[str]]:
    """The state and the reasons for it, in words an operator acts on."""
    failing: list[str] = []
    degraded: list[str] = []
    for box in facts.mailboxes:
        erring = box.last_error_at is not None and (box.last_success is None or box.last_error_at > box.last_success)
        refused = (box.last_error or "").startswith(SIGN_IN_ERRORS)
        if erring and refused:
            failing.append(f"{box.name}: sign-in refused ({box.last_error})")
        elif erring and (box.last_success is None or facts.now - box.last_success > UNREAD_FOR):
            failing.append(f"{box.name}: not read since "
                           f"{box.last_success.isoformat() if box.last_success else 'it was configured'}"
                           f" ({box.last_error})")
        elif erring:
            degraded.append(f"{box.name}: the last read failed ({box.last_error})")
    if facts.reads_a_mailbox and not facts.mailboxes:
        degraded.append("the mailbox has not been read yet")
    if facts.oldest_pending is not None and facts.now - facts.oldest_pending > LETTER_WAITING:
        minutes = int((facts.now - facts.oldest_pending).total_seconds() // 60)
        failing.append(f"a letter has waited {minutes} minutes to be sent")
    if facts.failed_last_day:
        degraded.append(f"{facts.failed_last_day} letter(s) failed for good in the last day")
    if failing:
        return FAILING, failing + degraded
    if degraded:
        return DEGRADED, degraded
    return HEALTHY, []
