"""Categories and safeguarding alerts: real phrases must be caught, false friends must not page anyone."""

from __future__ import annotations

import pytest

from mailbot.domain.categories import (
    CATEGORIES,
    CATEGORY_LABELS,
    guess_category,
    safeguarding_concern,
)


@pytest.mark.parametrize(
    ("subject", "text", "terms"),
    [
        ("Worried", "My mentor has been abusive to me on WhatsApp.", ("abuse",)),
        ("", "I was abused by someone at the event", ("abuse",)),
        ("", "He threatened me after the session.", ("threat",)),
        ("", "I don't feel safe meeting him alone.", ("unsafe",)),
        ("", "I don\u2019t feel safe around my mentor", ("unsafe",)),  # a phone's curly apostrophe
        ("", "I have been self-harming again", ("self-harm",)),
        ("", "I keep thinking about self harm", ("self-harm",)),
        ("", "sometimes I want to hurt myself", ("self-harm",)),
        # "harm" matches here too: the longer phrase, listed first, names it.
        ("", "I have been harming myself again", ("self-harm",)),
        ("", "I want to harm myself", ("self-harm",)),
        ("", "I feel suicidal", ("suicide",)),
        ("", "I want to end my life", ("suicide",)),
        ("", "I think he is grooming my daughter", ("grooming",)),
        ("", "She was sexually assaulted", ("sexual", "assault")),
        ("", "He hurt me when nobody was looking", ("hurt",)),
        ("", "My mentor punched him in the car park", ("hurt",)),
        ("", "I am scared of my mentor", ("scared",)),
        ("", "I'm afraid of what he'll do", ("scared",)),
        ("", "They are exploiting young people for money", ("exploitation",)),
        ("Harm", "", ("harm",)),  # the subject line counts too
        ("", "This could cause real harm", ("harm",)),
        ("", "He keeps sending threats and I'm scared", ("threat", "scared")),
        ("", "A safeguarding concern about a mentee", ("safeguarding",)),
        ("", "He has been bullying me at school", ("bullying",)),
        # Erring on the side of alerting: negation and threats of complaint still reach a person.
        ("", "I am not suicidal, but I am very upset", ("suicide",)),
        ("", "I threaten to complain to the regulator", ("threat",)),
    ],
)
def test_safeguarding_phrases_alert(subject: str, text: str, terms: tuple[str, ...]) -> None:
    assert safeguarding_concern(subject, text) == terms


@pytest.mark.parametrize(
    "text",
    [
        "I collected my prescription from the pharmacy next to the venue",
        "The choir sang in harmony at the celebration evening",
        "I was charmed by the welcome",
        "My therapist suggested I get a mentor",
        "No one has replied and I'm afraid the event was badly organised",
        "You neglected to reply to my last two emails",
        "My feelings were hurt that nobody called back",
        "The session was at Harmsworth House in Leeds",
        "Please send the certificate to my school",
    ],
)
def test_false_friends_do_not_alert(text: str) -> None:
    assert safeguarding_concern("Complaint", text) == ()


def test_each_term_is_reported_once() -> None:
    assert safeguarding_concern("abuse", "more abuse, and abused again") == ("abuse",)


@pytest.mark.parametrize(
    ("subject", "text", "category"),
    [
        ("Refund of my donation", "Please refund it.", "fundraising"),
        ("", "You took my direct debit twice this month", "fundraising"),
        ("", "Can you stop claiming gift aid on my payments", "fundraising"),
        ("Standing order", "I cancelled my standing order but you still took money", "fundraising"),
        ("", "Your fundraising team phoned me at dinner", "fundraising"),
        ("Subject access request", "Please send me everything you hold.", "data_protection"),
        ("", "Please delete my information from your systems", "data_protection"),
        ("", "I never agreed to you sharing my personal data", "data_protection"),
        ("GDPR", "", "data_protection"),
        ("", "This breaches data protection law", "data_protection"),
        ("", "Your privacy notice is wrong", "data_protection"),
        ("", "My mentor was rude to me", "mentor_behaviour"),
        ("", "Our mentor turned up late three times", "mentor_behaviour"),
        ("Mentor no-show", "He missed the session", "mentor_behaviour"),
        ("", "My mentor didn't show up again", "mentor_behaviour"),
        ("", "The mentor's comments were unprofessional", "mentor_behaviour"),
        ("", "The event was cancelled at short notice", "service"),
        ("", "The certificate took ages to arrive", "service"),
        ("", "My mentor is wonderful but the app keeps crashing", "service"),
        # The charity's own name is not a mentor, even in a complaint about something late.
        ("", "I am writing to One Million Mentors because my certificate is late", "service"),
        ("", "The Mentor Coordinator was late to the induction", "service"),
        # My contact details, as the procedure asks for them, are not a data protection complaint.
        ("", "My details are below. The venue was cold.", "service"),
        ("", "", "service"),
    ],
)
def test_guess_category(subject: str, text: str, category: str) -> None:
    assert guess_category(subject, text) == category


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("My mentor was rude and I feel unsafe", "safeguarding"),
        ("Delete my data and cancel my direct debit", "data_protection"),
        ("My mentor was rude when I asked about my donation", "fundraising"),
        ("My mentor was late and my personal data was shared", "data_protection"),
        ("Please stop my direct debit, the fundraiser threatened me", "safeguarding"),
    ],
)
def test_the_most_serious_category_wins(text: str, category: str) -> None:
    assert guess_category("", text) == category


def test_every_category_has_a_label() -> None:
    assert set(CATEGORY_LABELS) == set(CATEGORIES)


# ---- the category expressions' fast form (categories._by_first_letters) -------------------------------------


@pytest.mark.parametrize(
    ("pattern", "branches"),
    [
        ("abc", ["abc"]),
        ("ab|cd", ["ab", "cd"]),
        ("a(?:b|c)d|e", ["a(?:b|c)d", "e"]),
        ("a[|(]b|c\\|d|e", ["a[|(]b", "c\\|d", "e"]),  # a bar in a class or escaped is no alternative
    ],
)
def test_branches_split_only_at_the_top_level(pattern: str, branches: list[str]) -> None:
    from mailbot.domain.categories import _branches

    assert _branches(pattern) == branches


@pytest.mark.parametrize(
    ("branch", "spread"),
    [
        ("donate", ["donate"]),
        ("\\bico", ["ico"]),
        ("(?:did not|never) show", ["did not show", "never show"]),
        ("(?:a|(?:b|c)x)y", ["ay", "bxy", "cxy"]),  # in the order the engine would try them
        ("(?:a\\)|b)c", ["a\\)c", "bc"]),  # an escaped bracket does not close the group
    ],
)
def test_a_leading_group_is_spread_over_what_follows_it(branch: str, spread: list[str]) -> None:
    from mailbot.domain.categories import _by_first_letter

    assert _by_first_letter(branch) == spread


@pytest.mark.parametrize("branch", ["(?:a|b)?c", "a?b", "Abc", "1st", "[ab]c", "(?:ab|c"])
def test_a_pattern_that_cannot_begin_with_one_letter_is_refused(branch: str) -> None:
    from mailbot.domain.categories import _by_first_letter

    with pytest.raises(ValueError):
        _by_first_letter(branch)


def test_the_fast_category_expressions_find_what_the_plain_ones_find() -> None:
    """Texts made of the expressions' own words (and of the same with other first letters), glued to letters,
    digits, underscores, accents and apostrophes so that matches may begin mid-word, between words and at either
    end: each fast expression finds exactly the matches its plain ``\\b(?:...)\\b`` form finds. The shared corpus
    is checked the same way (test_corpus)."""
    import random
    import re

    from mailbot.domain import categories as c

    rng = random.Random(15)
    for words in (c.DATA_PROTECTION_WORDS, c.FUNDRAISING_WORDS, c.MENTOR_WORDS, c.BEHAVIOUR_WORDS):
        fast = c._words(words)
        plain = re.compile(r"\b(?:" + "|".join(words) + r")\b")
        vocabulary = sorted(set(re.findall(r"[a-z']+", " ".join(words)))) + ["s", "ed", "ing", "me", "my", "the"]
        # Each word again with another first letter ("gonate"): what follows one letter must not match after another.
        firsts = sorted({word[0] for word in vocabulary})
        swapped = [letter + word[1:] for word in vocabulary for letter in firsts if letter != word[0]]
        glue = [" ", " ", " ", "", "-", "x", "9", "_", "é", "'", ".", "\n"]
        found = 0
        for _ in range(3000):
            text = "".join(rng.choice(glue) + rng.choice(vocabulary if rng.random() < 0.8 else swapped)
                           for _ in range(rng.randint(1, 6)))
            expected = [m.span() for m in plain.finditer(text)]
            assert [m.span() for m in fast.finditer(text)] == expected, text
            found += len(expected)
        assert found > 100, words  # the texts did say the words: the comparison was not over misses alone
