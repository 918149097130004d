"""Requests about one's own personal data (UK GDPR): recognising them in a new message, and their clock.

A person asking for a copy of what we hold about them (a subject access request, Article 15) or for it to be
erased (Article 17) is owed an answer within one calendar month of receipt, extendable by two further months
where the request is complex or one of many (Article 12(3)). Such a request is its own case, on its own clock,
whatever else the message says; staff can also mark one the words below miss (``#data-request``).

The words are a person's, not a lawyer's: "send me all the data you hold about me", "delete my details", "right
to be forgotten". A complaint about how we used someone's data ("you shared my details with my school") is a
data-protection complaint, not a request, and is left to the complaints procedure.
"""

from __future__ import annotations

import re

ACCESS, ERASURE = "access", "erasure"
KINDS = (ACCESS, ERASURE)
PROCEDURE = "data_request"
DEADLINE = "data_request_response"
# Article 12(3): "extended by two further months where necessary".
EXTENSION_MONTHS = 2

_MY = r"(?:my|all\s+my|all\s+of\s+my|any\s+of\s+my)"
_DATA = r"(?:personal\s+)?(?:data|information|details|records?|file)"
_HELD = r"(?:(?:that\s+)?(?:do\s+|does\s+)?(?:you|1mm|your\s+organi[sz]ation|the\s+charity)\s+(?:hold|have|keep|store|process)s?)"

_ACCESS = re.compile("|".join((
    r"\bsubject[\s-]+access(?:\s+request)?\b",
    r"\bSAR\b",
    r"\bright\s+of\s+access\b",
    r"\barticle\s+15\b",
    rf"\b(?:a\s+)?cop(?:y|ies)\s+of\s+{_MY}\s+{_DATA}",
    rf"\b(?:all\s+)?(?:the\s+)?(?:personal\s+)?(?:data|information)\s+(?:about\s+me\s+)?{_HELD}\s+(?:about|on|for)\s+me\b",
    rf"\bwhat\s+(?:personal\s+)?(?:data|information)\s+{_HELD}\s+(?:about|on)\s+me\b",
)), re.IGNORECASE)

_ERASURE = re.compile("|".join((
    r"\bright\s+to\s+(?:erasure|be\s+forgotten)\b",
    r"\barticle\s+17\b",
    rf"\b(?:delete|erase|remove|destroy|wipe)\s+{_MY}\s+{_DATA}",
    rf"\b(?:delete|erase|remove|destroy|wipe)\s+(?:all\s+)?(?:the\s+)?(?:personal\s+)?(?:data|information|details)\s+"
    rf"{_HELD}\s+(?:about|on|for)\s+me\b",
    rf"\b{_MY}\s+{_DATA}\s+(?:to\s+be\s+|be\s+|being\s+)?(?:deleted|erased|removed|destroyed|wiped)\b",
)), re.IGNORECASE)
# "Please don't delete my records until..." is not a request to delete them.
_NOT = re.compile(r"\b(?:do\s+not|don'?t|never|without)\s+(?:\w+\s+){0,2}(?:delete|erase|remove|destroy|wipe)",
                  re.IGNORECASE)


# Every pattern above needs one of these (lower case): most complaints have none, and are answered by a few
# substring tests instead of the patterns (a third of a millisecond on a 20-line complaint).
_ACCESS_CUES = ("access", "sar", "article", "cop", "about me", "on me", "for me")
_ERASURE_CUES = ("erasure", "forgotten", "article", "delet", "erase", "remov", "destroy", "wipe")


def recognise(subject: str, text: str) -> str | None:
    """``erasure``, ``access`` or None for a new message's words (the first 4,000 characters of the body: a
    request says so early; the rest may be quoted history)."""
    words = " ".join(f"{subject}\n{text[:4000]}".split())
    lower = words.lower()
    if any(cue in lower for cue in _ERASURE_CUES) and _ERASURE.search(words) and not _NOT.search(words):
        return ERASURE
    if any(cue in lower for cue in _ACCESS_CUES) and _ACCESS.search(words):
        return ACCESS
    return None


def label(kind: str) -> str:
    return {ACCESS: "a copy of their personal data", ERASURE: "erasure of their personal data"}.get(kind, kind)
