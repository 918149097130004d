"""What a complainant's reply to an outcome asks for, table-driven over the ways people write."""

from __future__ import annotations

import pytest

from mailbot.domain.replies import ESCALATE, THANKS, UNCLEAR, reply_intent

CASES = [
    # Plain requests for a review.
    ("I am not satisfied with this outcome.", ESCALATE),
    ("Please escalate my complaint.", ESCALATE),
    ("I wish to appeal against this decision.", ESCALATE),
    ("I want this to go to the next stage.", ESCALATE),
    # Dissatisfaction said differently (these used to wait for staff).
    ("Frankly this is a whitewash.", ESCALATE),
    ("I do not accept your findings.", ESCALATE),
    ("I don't agree with any of this.", ESCALATE),
    ("That isn't fair at all.", ESCALATE),
    ("I'm really not happy with how this was handled.", ESCALATE),
    ("Im not happy", ESCALATE),
    ("It wasn\u2019t resolved.", ESCALATE),
    ("This is not good enough. I want someone more senior to look at it.", ESCALATE),
    ("I am very disappointed by your response.", ESCALATE),
    ("Thanks, but I am disappointed.", ESCALATE),
    ("I would like the Chief Executive to review this.", ESCALATE),
    ("I want to take this further.", ESCALATE),
    ("Please reconsider the decision.", ESCALATE),
    ("Nothing has changed since I complained.", ESCALATE),
    ("I feel fobbed off.", ESCALATE),
    # A plain thank-you.
    ("Thank you for looking into it.", THANKS),
    ("Many thanks, that's fine.", THANKS),
    ("I am happy with the outcome, thank you", THANKS),
    ("No need to escalate, thanks.", THANKS),
    ("Thanks - I won't be taking this further.", THANKS),
    # Neither: a question or a remark waits for staff.
    ("Thanks. One question about the rota.", UNCLEAR),
    ("When will the new rota start?", UNCLEAR),
    ("Could you send me a copy of the policy", UNCLEAR),
    ("I am not unhappy with this.", UNCLEAR),
    ("Noted.", UNCLEAR),
    ("", UNCLEAR),
]


@pytest.mark.parametrize("text, intent", CASES, ids=[c[0][:40] or "(empty)" for c in CASES])
def test_reply_intent(text: str, intent: str) -> None:
    assert reply_intent(text) == intent
