"""The persistent-complainant policy's pure parts: months, what a restricted person's mail gets, the options."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from mailbot.domain.restrictions import (
    add_months,
    contact_option,
    inbound_action,
    persistent_suggestion,
)


@pytest.mark.parametrize(
    "start, months, expected",
    [
        (datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc), 6, datetime(2027, 5, 16, 10, 0, tzinfo=timezone.utc)),
        (datetime(2026, 8, 31, 9, 0, tzinfo=timezone.utc), 6, datetime(2027, 2, 28, 9, 0, tzinfo=timezone.utc)),
        (datetime(2027, 8, 31, 9, 0, tzinfo=timezone.utc), 6, datetime(2028, 2, 29, 9, 0, tzinfo=timezone.utc)),
        (datetime(2026, 1, 31, 9, 0, tzinfo=timezone.utc), 1, datetime(2026, 2, 28, 9, 0, tzinfo=timezone.utc)),
        (datetime(2026, 12, 5, 9, 0, tzinfo=timezone.utc), 13, datetime(2028, 1, 5, 9, 0, tzinfo=timezone.utc)),
    ],
)
def test_add_months_keeps_the_day_or_takes_the_months_last(start: datetime, months: int, expected: datetime) -> None:
    assert add_months(start, months) == expected


TODAY = date(2026, 11, 16)


@pytest.mark.parametrize(
    "mode, last_ack, text, expected",
    [
        ("acknowledge-only", None, "More about my complaint", "acknowledge"),
        ("acknowledge-only", TODAY, "And another thing", "file"),
        ("acknowledge-only", date(2026, 11, 15), "Next day", "acknowledge"),
        ("silent", None, "Anything", "file"),
        ("silent", None, "I want to challenge this decision", "notify"),
        ("acknowledge-only", TODAY, "Please review the restriction", "notify"),
    ],
)
def test_what_a_restricted_persons_mail_gets(mode: str, last_ack: date | None, text: str, expected: str) -> None:
    assert inbound_action(mode, last_ack, TODAY, text) == expected


@pytest.mark.parametrize(
    "option, words",
    [
        ({"kind": "letters_only"}, "by letter only, not by email"),
        ({"kind": "named_contact", "email": "tom@1mm.org.uk", "name": "Tom Okafor"}, "only through Tom Okafor"),
        ({"kind": "phone", "days": "Tue,Thu", "start": "10:00", "end": "12:00"}, "on Tue,Thu between 10:00 and 12:00"),
        ({"kind": "agreement", "text": "one email a week"}, "agreement about your future contact with us: one email"),
    ],
)
def test_contact_options_in_a_letters_words(option: dict, words: str) -> None:
    assert words in contact_option(option)


@pytest.mark.parametrize("count, threshold, suggested", [(10, 10, False), (11, 10, True), (0, 1, False)])
def test_the_digest_only_suggests_above_the_threshold(count: int, threshold: int, suggested: bool) -> None:
    assert persistent_suggestion(count, threshold) is suggested
