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
