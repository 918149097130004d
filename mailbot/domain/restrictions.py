"""The unreasonably persistent complainants policy, as pure functions.

The procedure: a prior warning first (except in exceptional cases), a restriction decided by the
CEO, proportionate, in writing, reviewed after six months while the investigation goes on, and
all correspondence still read. The bot never restricts anyone by itself.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime

ACKNOWLEDGE_ONLY = "acknowledge-only"
SILENT = "silent"
# Words that mark a restricted person's message as a challenge to the decision, which staff must see.
CHALLENGE_WORDS = ("challenge", "appeal against the restriction", "disagree with the decision", "review the restriction")


def add_months(moment: datetime, months: int) -> datetime:
    """The same time ``months`` calendar months later, on the last day of the month where the day is missing."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def inbound_action(mode: str, last_acknowledged: date | None, today: date, text: str) -> str:
    """What to do with a restricted person's mail on the restricted matter.

    Returns "notify" (a challenge to the decision: staff must see it as usual), "acknowledge" (one
    short acknowledgement, at most once a day per case) or "file" (kept and read, no letter).
    """
    lowered = text.lower()
    if any(word in lowered for word in CHALLENGE_WORDS):
        return "notify"
    if mode == ACKNOWLEDGE_ONLY and last_acknowledged != today:
        return "acknowledge"
    return "file"


def contact_option(option: dict[str, object]) -> str:
    """One contact option, in the words a letter to the complainant uses."""
    kind = option.get("kind")
    if kind == "letters_only":
        return "please contact us by letter only, not by email, telephone or in person"
    if kind == "named_contact":
        return f"please contact us only through {option.get('name') or option.get('email')}, who will handle your contact"
    if kind == "phone":
        return f"telephone calls only on {option.get('days')} between {option.get('start')} and {option.get('end')}"
    if kind == "agreement":
        text = str(option.get("text") or "").strip()
        return "an agreement about your future contact with us" + (f": {text}" if text else "")
    return str(kind)


def persistent_suggestion(messages_last_week: int, threshold: int) -> bool:
    """Only a suggestion for the digest: staff decide; the bot never restricts anyone by itself."""
    return messages_last_week > threshold
