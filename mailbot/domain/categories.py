"""Complaint categories guessed from the words of a message, and the safeguarding words that alert a person.

The category is a first guess that staff can change; it decides which regulators the outcome
letter signposts. The safeguarding check is different: a youth charity cannot afford to miss a
young person at risk, so it errs on the side of alerting and reading a false alarm is the price.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

SAFEGUARDING = "safeguarding"
DATA_PROTECTION = "data_protection"
FUNDRAISING = "fundraising"
MENTOR_BEHAVIOUR = "mentor_behaviour"
SERVICE = "service"

# In precedence order: when several match, the first one wins.
CATEGORIES = (SAFEGUARDING, DATA_PROTECTION, FUNDRAISING, MENTOR_BEHAVIOUR, SERVICE)
DEFAULT_CATEGORY = SERVICE

CATEGORY_LABELS = {
    SAFEGUARDING: "Safeguarding",
    DATA_PROTECTION: "Data protection",
    FUNDRAISING: "Fundraising",
    MENTOR_BEHAVIOUR: "Mentor behaviour",
    SERVICE: "Our service",
}

# (term reported to staff, regular expression). Every pattern is lower case, matched on lower-cased text
# between word boundaries, so "harm" never fires inside "pharmacy", "harmony" or "charmed", nor "rapist" inside
# "therapist". Longer phrases come first so "self-harm" is reported as itself rather than as "harm".
# Decisions, all erring towards alerting:
# - Negation is not understood: "I am not suicidal" still alerts, because a person should read it.
# - Every form of "threat" alerts, including "I will threaten to complain to the regulator": keywords
#   cannot tell that apart from "he threatened to tell my parents unless...".
# - "hurt" alerts only with a person after it ("hurt me", "hurting her"), so "my feelings were hurt"
#   about a late reply does not page the safeguarding lead; "hurt myself" is caught as self-harm.
# - "scared", "frightened" and "terrified" alert on their own; "afraid" only as "afraid of/to/for", because
#   "I'm afraid the event was badly run" is everyday British politeness, not fear.
# - "neglected to reply" is a service complaint; every other "neglect" alerts.
SAFEGUARDING_TERMS: tuple[tuple[str, str], ...] = (
    ("self-harm", r"self[- ]?harm(?:s|ed|ing)?|harm(?:ing)? myself|hurt(?:ing)? myself|cut(?:ting)? myself"),
    ("suicide", r"suicid(?:e|al)|kill(?:ing)? myself|end(?:ing)? my (?:own )?life|want(?:ed)? to die"),
    ("harm", r"harm(?:s|ed|ing|ful)?"),
    ("abuse", r"abus(?:e|es|ed|er|ers|ing|ive)"),
    ("unsafe", r"unsafe|(?:do not|don't|dont|didn't|didnt|not) feel safe|not safe|in danger|dangerous"),
    ("threat", r"threat(?:s|en|ens|ened|ening)?"),
    ("grooming", r"groom(?:s|ed|ing)?"),
    ("assault", r"assault(?:s|ed|ing)?"),
    ("sexual", r"sexual(?:ly)?|rape[ds]?|rapist|indecent|touched me|touching me|nudes?|naked"),
    ("hurt", r"(?:hurt(?:s|ing)?|hit|hits|hitting|punched|kicked|slapped) (?:me|him|her|them|us|you)"),
    ("violence", r"violen(?:ce|t)"),
    ("bullying", r"bull(?:y|ied|ies|ying)"),
    ("scared", r"scared|frightened|terrified|afraid (?:of|to|for)"),
    ("exploitation", r"exploit(?:s|ed|ing|ation)?"),
    ("blackmail", r"blackmail(?:s|ed|ing)?|stalk(?:s|ed|ing|er)?"),
    ("radicalisation", r"radicali[sz](?:e|ed|ing|ation)|extremis[mt]"),
    ("neglect", r"neglect(?:s|ed|ing)?(?! to\b)"),
    ("safeguarding", r"safeguarding"),
)

DATA_PROTECTION_WORDS = (
    # Not "my details": complainants are asked for their contact details and give them in the same breath.
    r"my (?:personal )?data|my personal information",
    r"personal data|personal information",
    r"subject access",
    r"uk gdpr|gdpr",
    r"data protection",
    # Spelt out rather than "(?:delete|erase|remove) ...": an alternative that starts with a letter is passed
    # over at a glance where the word starts with another, one that starts with a group is not.
    r"delete (?:all )?(?:of )?my (?:data|details|information|account|records)",
    r"erase (?:all )?(?:of )?my (?:data|details|information|account|records)",
    r"remove (?:all )?(?:of )?my (?:data|details|information|account|records)",
    r"right to (?:be forgotten|erasure)",
    r"privacy",
    r"information commissioner|\bico",
)
FUNDRAISING_WORDS = (
    r"donat(?:e|es|ed|ing|ion|ions|or)",
    r"direct debits?",
    r"gift aid",
    r"fundrais(?:e|er|ers|ing)",
    r"standing orders?",
    r"sponsor(?:ed|ship)?",
)
MENTOR_WORDS = (r"mentors?",)
BEHAVIOUR_WORDS = (
    r"rude(?:ly|ness)?",
    r"late",
    r"inappropriate(?:ly)?",
    r"unprofessional",
    r"no[- ]shows?",
    r"(?:did not|didn't|didnt|never) (?:show|turn) up",
    r"(?:ignored|ignores|ignoring) (?:me|my)",
    r"shout(?:s|ed|ing)?|swore|swearing|aggressive|disrespectful|dismissive",
    r"cancel(?:s|led|ling)",
)
# The charity's own name and staff job titles contain "mentor" without being about a mentor.
NOT_A_MENTOR = r"one million mentors|mentee project coordinator|mentor coordinator"


# Every pattern above begins with a lower-case ASCII letter at a word boundary. Written plainly, as
# ``\b(?:...)\b``, the engine tries the expression at every character of the text, the word boundary first. The
# category expressions are written instead as the letters a match can begin with, the word boundary checked just
# after that letter (``(?<!\w.)``: the character before it is not a word character), then what may follow each
# letter (``[dfgs](?<!\w.)(?:(?<=d)(?:onate|irect debits?)|(?<=f)undraise|...)``). Knowing the letters a match
# begins with, the engine runs through the text to the next of them in C, and tries nothing in between. The four
# category expressions take a third less time on a 20-line complaint, and half over the shared corpus
# (``bench/README.md``, sixteenth look). The safeguarding terms begin with 18 different letters, most words'
# first letters, so checking the word boundary first remains quicker for them (WORD_START).
# tests/unit/test_corpus.py checks that both forms find what the plain form finds over the shared corpus.
WORD_START = r"\b(?=[a-z])"


def _structure(pattern: str) -> Iterator[tuple[int, str, int]]:
    """(index, character, depth before it) of each bracket and bar of a pattern that is structure: not escaped, not
    inside a character class."""
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 1  # an escaped character is never structure
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch in "()|":
            yield i, ch, depth
            depth += (ch == "(") - (ch == ")")
        i += 1


def _branches(pattern: str) -> list[str]:
    """The top-level alternatives of a pattern (``|`` outside any group or character class)."""
    bars = [i for i, ch, depth in _structure(pattern) if ch == "|" and depth == 0]
    return [pattern[start + 1:end] for start, end in zip([-1, *bars], [*bars, len(pattern)])]


def _by_first_letter(branch: str) -> list[str]:
    """``branch`` as alternatives that each begin with a literal lower-case letter, in the order the engine would
    try them: a leading group's alternatives are distributed over what follows it (``(?:a|b)c`` is ``ac|bc``),
    and a leading ``\\b`` dropped (the word start is checked for every alternative)."""
    if branch.startswith("\\b"):
        return _by_first_letter(branch[2:])
    if branch.startswith("(?:"):
        # The group's own closing bracket: the first that brings the depth back to the top level.
        end = next((i for i, ch, depth in _structure(branch) if ch == ")" and depth == 1), None)
        if end is None:
            raise ValueError(f"a group that is never closed: {branch!r}")
        inner, rest = branch[3:end], branch[end + 1:]
        if rest[:1] in ("?", "*", "+", "{"):
            raise ValueError(f"a leading group with a quantifier cannot be split by its first letter: {branch!r}")
        return [spread for alternative in _branches(inner) for spread in _by_first_letter(alternative + rest)]
    if not ("a" <= branch[:1] <= "z") or branch[1:2] in ("?", "*", "+", "{"):
        raise ValueError(f"a category pattern must begin with a lower-case letter, once: {branch!r}")
    return [branch]


def _by_first_letters(patterns: tuple[str, ...]) -> str:
    """The alternation of ``patterns``, matched only where a word begins, in the form described above."""
    following: dict[str, list[str]] = {}
    branches = (b for pattern in patterns for alternative in _branches(pattern) for b in _by_first_letter(alternative))
    for branch in branches:
        # Only branches that begin with one letter can match where that letter is, and among those the order
        # is kept, so the alternation chooses as the plain form would.
        following.setdefault(branch[0], []).append(branch[1:])
    return (f"[{''.join(sorted(following))}](?<!\\w.)(?:"
            + "|".join(f"(?<={letter})(?:{'|'.join(rests)})" for letter, rests in following.items()) + ")")


def _words(patterns: tuple[str, ...]) -> re.Pattern[str]:
    # No IGNORECASE: the text is lower-cased once instead, which makes matching about twice as fast.
    return re.compile(_by_first_letters(patterns) + r"\b")


# The terms' patterns in one alternation with no group around each term: the engine passes over an alternative
# that starts with another letter at a glance, but it enters every capturing group, so the grouped form took twice
# as long (85 against 43 us on a 20-line complaint). Which term matched is asked only of the few matches there are:
# the first term whose own pattern matches there, as the alternation itself chose.
@dataclass(frozen=True)
class _Patterns:
    safeguarding: re.Pattern[str]
    terms: tuple[re.Pattern[str], ...]
    data_protection: re.Pattern[str]
    fundraising: re.Pattern[str]
    mentor: re.Pattern[str]
    behaviour: re.Pattern[str]
    not_a_mentor: re.Pattern[str]


# Compiled when a message is first read, not at import: they take 10-15 ms to compile, which every command that
# imports the intake (an idle `run --once`, the daemon's start) paid whether or not any mail came.
@functools.cache
def _patterns() -> _Patterns:
    return _Patterns(
        safeguarding=re.compile(WORD_START + "(?:" + "|".join(pattern for _, pattern in SAFEGUARDING_TERMS) + r")\b"),
        terms=tuple(re.compile(f"(?:{pattern})\\b") for _, pattern in SAFEGUARDING_TERMS),
        data_protection=_words(DATA_PROTECTION_WORDS), fundraising=_words(FUNDRAISING_WORDS),
        mentor=_words(MENTOR_WORDS), behaviour=_words(BEHAVIOUR_WORDS), not_a_mentor=re.compile(NOT_A_MENTOR))


def warm() -> None:
    """Compile the patterns now (the daemon does at start, so its first complaint does not wait for them)."""
    _patterns()


def _normalise(subject: str, text: str) -> str:
    # Curly apostrophes from phones would otherwise defeat "don't feel safe"; runs of whitespace and line
    # breaks would defeat every two-word phrase.
    joined = f"{subject}\n{text}".lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(joined.split())  # str.split's whitespace is re's \s; twice as fast as re.sub


@dataclass(frozen=True)
class Reading:
    category: str
    safeguarding: tuple[str, ...]


def read(subject: str, text: str) -> Reading:
    """One pass over a message's words for both its category and its safeguarding terms (a message reads them
    once: ``InboundMail.reading``)."""
    words = _normalise(subject, text)
    terms = _safeguarding_terms(words)
    return Reading(_category(words, terms), terms)


def safeguarding_concern(subject: str, text: str) -> tuple[str, ...]:
    """The safeguarding terms found, each once, in the order they first appear; empty means none."""
    return read(subject, text).safeguarding


def _term_matches(words: str) -> Iterator[tuple[int, int, int]]:
    """(start, end, index in SAFEGUARDING_TERMS) of each safeguarding match, in order."""
    patterns = _patterns()
    for match in patterns.safeguarding.finditer(words):
        start = match.start()
        for index, term in enumerate(patterns.terms):
            if term.match(words, start):
                yield start, match.end(), index
                break


def _safeguarding_terms(words: str) -> tuple[str, ...]:
    found: list[str] = []
    for _, _, index in _term_matches(words):
        term = SAFEGUARDING_TERMS[index][0]
        if term not in found:
            found.append(term)
    return tuple(found)


def guess_category(subject: str, text: str) -> str:
    """The most serious category the message's words suggest; "service" when nothing more specific fits."""
    return read(subject, text).category


def _category(words: str, safeguarding: tuple[str, ...]) -> str:
    if safeguarding:
        return SAFEGUARDING
    patterns = _patterns()
    if patterns.data_protection.search(words):
        return DATA_PROTECTION
    if patterns.fundraising.search(words):
        return FUNDRAISING
    about_people = patterns.not_a_mentor.sub(" ", words)
    if patterns.mentor.search(about_people) and patterns.behaviour.search(about_people):
        return MENTOR_BEHAVIOUR
    return DEFAULT_CATEGORY
