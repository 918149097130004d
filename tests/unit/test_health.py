"""Healthy, degraded or failing, from what the store records (the rule `mailbot status` and /healthz share)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mailbot.domain.health import DEGRADED, FAILING, HEALTHY, Facts, Mailbox, assess

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
]


@pytest.mark.parametrize("facts, state, reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_assess(facts: Facts, state: str, reason: str) -> None:
    found, reasons = assess(facts)
    assert found == state
    assert (reason in " ".join(reasons)) if reason else reasons == []
