"""A member of staff's words as the body of a letter: their own greeting and sign-off kept, never doubled.

Staff write as people write: "Dear Pat, ... Thanks, Priya", often with their mail client's signature block
below. The letter around their words adds a greeting only when they wrote none and a sign-off only when
they signed nothing, and their client's contact block (job title, phone numbers, web address, logo text)
is dropped once, below their own sign-off. The "-- " delimiter and "Sent from my iPhone" lines are already
gone (``quotes.strip_signature``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# "Dear Ms Smith," "Hi Pat" "Good morning all": the word and at most a few names, alone on the line.
_GREETING = re.compile(
    r"^\s*(?:dear|hi|hello|hey|good (?:morning|afternoon|evening)|greetings)(?:\s+[^\s.!?,:;]+){0,4}\s*[,!.:]?\s*$",
    re.IGNORECASE)
_CLOSING = re.compile(
    r"^\s*(?:(?:with )?(?:kind|kindest|best|warm|warmest|many|all the best|with best)?\s*"
    r"(?:regards|wishes|thanks|thank you|cheers)|yours(?: sincerely| faithfully| truly)?|sincerely|best|"
    r"all the best|take care|speak soon)\b[^.?\n]{0,30}[,.!]?\s*$",
    re.IGNORECASE)
# The longest a sign-off's name line is, and how far from the end a closing line may stand (with the
# client's contact block below it).
_NAME_LINE_MAX = 40
_CLOSING_WINDOW = 12


@dataclass(frozen=True)
class StaffWords:
    greeting: str  # their own greeting line ("Dear Pat,"), or "" when they wrote none
    body: str  # their words after the greeting, down to their sign-off
    signed: bool  # whether they signed off themselves


def staff_words(text: str, staff_name: str) -> StaffWords:
    lines = text.strip().split("\n")
    greeting = ""
    if lines and _GREETING.match(lines[0]) and len(lines[0].strip()) <= 70:
        greeting = lines[0].strip()
        lines = lines[1:]
        while lines and not lines[0].strip():
            lines = lines[1:]
    lines, signed = _sign_off(lines, staff_name)
    return StaffWords(greeting, "\n".join(lines).strip(), signed)


def _sign_off(lines: list[str], staff_name: str) -> tuple[list[str], bool]:
    """The lines down to the writer's own sign-off (closing line and name), and whether there is one."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    if not filled:
        return lines, False
    for i in reversed(filled[-_CLOSING_WINDOW:]):
        if _CLOSING.match(lines[i]) and i != filled[0]:
            after = [j for j in filled if j > i]
            end = i + 1
            if after and len(lines[after[0]].strip()) <= _NAME_LINE_MAX:
                end = after[0] + 1  # the name under "Kind regards,"
            return lines[:end], True
    last = lines[filled[-1]].strip().rstrip(".,!").lower()
    names = {staff_name.lower(), *(part.lower() for part in staff_name.split()[:1])}
    if last in names or (last.startswith(tuple(names)) and len(last) <= _NAME_LINE_MAX and len(filled) > 1):
        return lines[:filled[-1] + 1], True
    return lines, False
