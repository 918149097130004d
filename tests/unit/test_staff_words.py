"""A member of staff's words as a letter's body: their greeting and sign-off kept once, their client's
contact block dropped. Table-driven over the shapes mail clients and people produce."""

from __future__ import annotations

import pytest

from mailbot.domain.staff_words import StaffWords, staff_words

OUTLOOK_BLOCK = ("Kind regards,\nPriya Shah\nComplaints Officer | One Million Mentors\n"
                 "T: 020 7946 0000 | M: 07700 900123\nwww.1mm.org.uk\n[cid:image001.png@01DA0000.00000000]")
CASES = [
    ("plain words, nothing around them", "We have moved your session to Thursday.",
     StaffWords("", "We have moved your session to Thursday.", False)),
    ("a greeting and a first-name sign-off", "Dear Pat,\n\nWe have moved your session.\n\nThanks,\nPriya",
     StaffWords("Dear Pat,", "We have moved your session.\n\nThanks,\nPriya", True)),
    ("an Outlook signature block below the sign-off", f"Hi Pat,\n\nWe have moved your session.\n\n{OUTLOOK_BLOCK}",
     StaffWords("Hi Pat,", "We have moved your session.\n\nKind regards,\nPriya Shah", True)),
    ("just the name at the end", "Hello Pat\nWe have moved your session.\nPriya Shah",
     StaffWords("Hello Pat", "We have moved your session.\nPriya Shah", True)),
    ("Apple Mail: a closing with no name", "Good morning Pat,\n\nAll sorted now.\n\nBest wishes",
     StaffWords("Good morning Pat,", "All sorted now.\n\nBest wishes", True)),
    ("thanks inside a sentence is not a sign-off", "Thanks for your patience. We have moved your session.",
     StaffWords("", "Thanks for your patience. We have moved your session.", False)),
    ("a greeting-like word in the text is not a greeting", "Hi-vis vests are now provided at every event.",
     StaffWords("", "Hi-vis vests are now provided at every event.", False)),
    ("yours sincerely with the full name", "Dear Ms Smith,\n\nWe uphold your complaint.\n\nYours sincerely,\n"
     "Priya Shah\nOne Million Mentors",
     StaffWords("Dear Ms Smith,", "We uphold your complaint.\n\nYours sincerely,\nPriya Shah", True)),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_staff_words(text: str, expected: StaffWords) -> None:
    assert staff_words(text, "Priya Shah") == expected
