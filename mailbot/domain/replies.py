"""What a complainant's reply to an outcome asks for: a review (escalate), nothing more (thanks), or unclear.

The procedures promise "Your complaint will be escalated" to anyone who is not happy with the resolution,
so a reply that says so in any ordinary way escalates at once; a plain thank-you does not (it is passed on
and changes nothing), and anything else (a question, a remark) waits for staff to decide (#escalate or
#stay). Only the words the complainant wrote this time are read (``quotes.extract_new_text``): our own
outcome letter, quoted below, says "if you are not happy" and must never count.
"""

from __future__ import annotations

import re

ESCALATE, THANKS, UNCLEAR = "escalate", "thanks", "unclear"

_NOT = r"(?:\bnot|n't|\bnever|\bhardly|\bfar from)"
_DISSATISFIED = [
    rf"{_NOT}\s+(?:at all\s+|really\s+|very\s+|entirely\s+|completely\s+|fully\s+)?"
    r"(?:satisfied|happy|content|pleased|acceptable|good enough|resolved|fair|right|ok|okay"
    r"|the end of (?:it|this|the matter))\b",
    r"\b(?:dis|un)satisf(?:ied|actory)\b",
    r"\bunhappy\b",
    r"\bdisappoint(?:ed|ing)\b",
    r"\bunacceptable\b",
    r"\b(?:disagree|dispute|reject)\b",
    r"\b(?:do|does|can)\s*(?:not|n't)\s+(?:agree|accept)\b",
    r"\bescalat(?:e|ed|ion|ing)\b",
    r"\bappeal\b",
    r"\bnext stage\b",
    r"\b(?:take|taking|push|pursue|pursuing)\s+(?:this|it|the matter|my complaint)\s+(?:further|higher)\b",
    r"\b(?:review|reconsider|look (?:at|into)) (?:this|it|my complaint|the (?:decision|outcome|matter))\s*(?:again)?\b",
    r"\bhave (?:this|it|my complaint) reviewed\b",
    r"\b(?:chief executive|ceo|senior management|someone more senior|your manager|a manager)\b",
    r"\b(?:whitewash|fobbed off|brushed off|ridiculous|outrageous|insulting|a joke)\b",
    r"\bnot what i (?:asked|wanted|hoped|expected)\b",
    r"\bnothing (?:has|was) (?:changed|done)\b",
    r"\b(?:still|remain)s? (?:unresolved|waiting|not resolved|a problem)\b",
    r"\bcomplain (?:further|again|to)\b",
]
# A dissatisfied phrase cancelled by what surrounds it: "no need to escalate", "I am not unhappy".
_CANCELLED = [
    r"\b(?:no need|don't need|do not need|not necessary|no wish|don't want|do not want|not want|not looking)\s+"
    r"(?:to\s+)?(?:for\s+)?(?:\w+\s+){0,2}(?:escalat\w*|take (?:this|it) further|appeal|a review|reviewed)",
    r"\bnot (?:unhappy|dissatisfied|disappointed)\b",
    r"\bwon't (?:be )?(?:escalat\w*|appeal\w*|tak\w* (?:this|it) further)",
    r"\bwill not (?:be )?(?:escalat\w*|appeal\w*|tak\w* (?:this|it) further)",
]
_THANKS = [
    r"\bthank(?:s| you)\b", r"\bmany thanks\b", r"\bappreciate\b", r"\bgrateful\b",
    r"\b(?:happy|satisfied|content|pleased) with\b", r"\b(?:that'?s|that is|all) (?:fine|great|good|sorted)\b",
]
# A question wants an answer from staff, even inside a thank-you.
_QUESTION = [
    r"\?", r"\bquestions?\b", r"\b(?:can|could|would|will) you\b",
    r"\b(?:when|how|why|what|where) (?:will|do|does|did|is|are|can|should)\b",
]
_QUESTION_RE = re.compile("|".join(_QUESTION))
_DISSATISFIED_RE = re.compile("|".join(_DISSATISFIED))
_CANCELLED_RE = re.compile("|".join(_CANCELLED))
_THANKS_RE = re.compile("|".join(_THANKS))


def reply_intent(text: str) -> str:
    """ESCALATE, THANKS or UNCLEAR for the words a complainant wrote in reply to an outcome."""
    lowered = " ".join(text.lower().replace("\u2019", "'").split())
    if not lowered:
        return UNCLEAR
    remaining = _CANCELLED_RE.sub(" ", lowered)
    if _DISSATISFIED_RE.search(remaining):
        return ESCALATE
    if _THANKS_RE.search(lowered) and not _QUESTION_RE.search(lowered):
        return THANKS
    return UNCLEAR
