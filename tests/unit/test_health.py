"""Healthy, degraded or failing, from what the store records (the rule `mailbot status` and /healthz share)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mailbot.domain.health import DEGRADED, FAILING, HEALTHY, Facts, Mailbox, alert_conditions, assess

NOW = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)
BOX = "complaints@imap.example/INBOX"


def box(success_ago: float | None, error_ago: float | None = None, error: str = "OSError: refused") -> Mailbox:
    def ago(minutes: float | None) -> datetime | None:
        return NOW - timedelta(minutes=minutes) if minutes is not None else None
    return Mailbox(BOX, ago(success_ago), error if error_ago is not None else None, ago(error_ago))


CASES = [
    ("read a minute ago, nothing waiting", Facts(NOW, True, (box(1),), None, 0), HEALTHY, ""),
    ("local mode has no mailbox to watch", Facts(NOW, False, (), None, 0), HEALTHY, ""),
    ("the last read failed, but one worked 5 minutes ago", Facts(NOW, True, (box(5, 1),), None, 0), DEGRADED,
     "the last read failed"),
    ("not read for 16 minutes", Facts(NOW, True, (box(16, 1),), None, 0), FAILING, "not read since"),
    ("sign-in refused", Facts(NOW, True, (box(2, 1, "LoginError: [AUTHENTICATIONFAILED]"),), None, 0), FAILING,
     "sign-in refused"),
    ("a token that could not be had", Facts(NOW, True, (box(2, 1, "TokenError: no token"),), None, 0), FAILING,
     "sign-in refused"),
    ("a letter waiting 61 minutes", Facts(NOW, True, (box(1),), NOW - timedelta(minutes=61), 0), FAILING,
     "waited 61 minutes"),
    ("a letter waiting 59 minutes", Facts(NOW, True, (box(1),), NOW - timedelta(minutes=59), 0), HEALTHY, ""),
    ("a letter failed for good today", Facts(NOW, True, (box(1),), None, 2), DEGRADED, "2 letter(s) failed"),
    ("never read yet", Facts(NOW, True, (), None, 0), DEGRADED, "not been read yet"),
    ("the SMTP server refused sign-in", Facts(NOW, True, (box(1),), None, 0, smtp_refused="sign-in refused: 535"),
     FAILING, "the SMTP server refused sign-in"),
    ("the SMTP server refused the bot's address",
     Facts(NOW, True, (box(1),), None, 0, smtp_refused="sender refused: 550 5.7.60 may not send as this sender"),
     FAILING, "will not take letters from the bot's address (sender refused: 550 5.7.60"),
    ("no bot running, read 16 minutes ago", Facts(NOW, True, (box(16),), None, 0, running=False), FAILING,
     "no mailbot is running"),
    ("no bot running, read 5 minutes ago (cron runs --once)", Facts(NOW, True, (box(5),), None, 0, running=False),
     HEALTHY, ""),
    ("a bot running, nothing new to read for an hour", Facts(NOW, True, (box(60),), None, 0, running=True), HEALTHY,
     ""),
]


@pytest.mark.parametrize("facts, state, reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_assess(facts: Facts, state: str, reason: str) -> None:
    found, reasons = assess(facts)
    assert found == state
    assert (reason in " ".join(reasons)) if reason else reasons == []


ALERTS = [
    ("healthy: nothing to say", Facts(NOW, True, (box(1),), None, 0), {}),
    ("one failed read is not yet an alert", Facts(NOW, True, (box(5, 1),), None, 0), {}),
    ("sign-in refused", Facts(NOW, True, (box(2, 1, "LoginError: x"),), None, 0), {f"sign-in:{BOX}"}),
    ("unread for 16 minutes", Facts(NOW, True, (box(16, 1),), None, 0), {f"unread:{BOX}"}),
    ("the SMTP server refused", Facts(NOW, True, (box(1),), None, 0, smtp_refused="sign-in refused: 535"),
     {"smtp-sign-in"}),
    ("the SMTP server refused the bot's address",
     Facts(NOW, True, (box(1),), None, 0, smtp_refused="sender refused: 550 5.4.5 Daily user sending limit exceeded"),
     {"smtp-sender"}),
    ("letters failed", Facts(NOW, True, (box(1),), None, 3), {"letters-failed"}),
    ("a letter waiting an hour is on status, not mailed (the SMTP alert covers why)",
     Facts(NOW, True, (box(1),), NOW - timedelta(minutes=61), 0), set()),
]


@pytest.mark.parametrize("facts, conditions", [c[1:] for c in ALERTS], ids=[c[0] for c in ALERTS])
def test_alert_conditions(facts: Facts, conditions: set[str]) -> None:
    assert set(alert_conditions(facts)) == set(conditions)


def test_a_condition_keeps_its_name_while_it_lasts() -> None:
    """So it is mailed once, not again each minute as the count of failures or the minutes unread grow."""
    assert set(alert_conditions(Facts(NOW, True, (box(1),), None, 1))) == \
        set(alert_conditions(Facts(NOW, True, (box(1),), None, 7)))
    assert set(alert_conditions(Facts(NOW, True, (box(16, 1),), None, 0))) == \
        set(alert_conditions(Facts(NOW, True, (box(300, 1),), None, 0)))
