"""Issue 6 end to end: `mailbot digest` previews and sends the managers' digest, and the scheduler sends it once a day."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

from tests.integration.bot import Bot, make_mail
from tests.probes import run_once_probe

# Dovecot ignores an APPEND date in the future, so the tests live in the recent past (November is GMT).
MONDAY_7 = datetime(2026, 11, 16, 7, 0, tzinfo=timezone.utc)
DIGEST_ROLES = {"sam.carter@1mm.org.uk", "jo.mensah@1mm.org.uk", "alex.morgan@1mm.org.uk",
                "hannah.reid@1mm.org.uk", "gareth.lewis@1mm.org.uk"}


def text_of(message) -> str:  # type: ignore[no-untyped-def]
    return message.get_body(preferencelist=("plain",)).get_content()


def test_digest_by_hand_preview_then_send_then_once_a_day_on_schedule(bot: Bot) -> None:
    bot.extra["MAILBOT_DIGEST_TIME"] = "08:00"
    # A London mentee complains early on Monday, before the digest time: no digest yet.
    bot.append(make_mail(frm="Amira Khan <amira.khan@example.org>", subject="My mentor <never> came"),
               internaldate=MONDAY_7)
    bot.once(now=MONDAY_7 + timedelta(seconds=1))
    assert bot.cases_json()[0]["ref"] == "1MM-2026-0001"
    assert bot.letters("digest") == []

    preview = bot.root / "out.html"
    result = bot.cli("digest", "--now", "2026-11-16T08:30", "--preview", str(preview))
    assert "preview" in result.stdout
    html = preview.read_text()
    assert "1MM-2026-0001" in html and 'href="mailto:complaints+1mm-2026-0001.' in html
    assert "My mentor &lt;never&gt; came" in html
    assert bot.letters("digest") == []

    # By hand at 08:30 on a working day: everyone with a digest role gets one, and it is the day's digest.
    result = bot.cli("digest", "--now", "2026-11-16T08:30")
    assert "digest: queued 5, sent 5" in result.stdout
    digests = bot.letters("digest")
    assert {r for d in digests for r in d.rcpt_tos} == DIGEST_ROLES
    by_rcpt = {d.rcpt_tos[0]: d.message for d in digests}
    london = text_of(by_rcpt["hannah.reid@1mm.org.uk"])
    assert "[1MM-2026-0001]" in london and "DUE SOON" in london and "NEW CASES (1)" in london
    # Her staff.toml entry has no digest_subjects: the category stands in for the complainant's subject line.
    assert "My mentor <never> came" not in london and "(service complaint)" in london
    assert "My mentor <never> came" in text_of(by_rcpt["alex.morgan@1mm.org.uk"])  # digest_subjects = true
    assert text_of(by_rcpt["gareth.lewis@1mm.org.uk"]).startswith("Nothing needs you today.")
    assert by_rcpt["sam.carter@1mm.org.uk"]["Auto-Submitted"] == "auto-generated"

    # The scheduler's run later that morning sends nothing more; the next working day it sends again.
    bot.once(now=datetime(2026, 11, 16, 9, 0, tzinfo=timezone.utc))
    assert len(bot.letters("digest")) == 5
    bot.once(now=datetime(2026, 11, 17, 7, 59, tzinfo=timezone.utc))
    assert len(bot.letters("digest")) == 5
    bot.once(now=datetime(2026, 11, 17, 8, 0, tzinfo=timezone.utc))
    bot.once(now=datetime(2026, 11, 17, 8, 5, tzinfo=timezone.utc))
    assert len(bot.letters("digest")) == 10
    assert len(bot.letters("digest", to="hannah.reid@1mm.org.uk")) == 2
    # A pass later that day finds every digest recorded without building the digest (or the ORM) to ask.
    probe = run_once_probe(("mailbot.services.digest", "sqlmodel"), args=("--now", "2026-11-17T08:10:00+00:00"))
    done = subprocess.run([sys.executable, "-c", probe], env=bot.env(), cwd=bot.root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 []"
    assert len(bot.letters("digest")) == 10


def test_digest_time_off_sends_no_scheduled_digest(bot: Bot) -> None:
    assert bot.env()["MAILBOT_DIGEST_TIME"] == "off"
    bot.append(make_mail(subject="A complaint"), internaldate=MONDAY_7)
    bot.once(now=MONDAY_7 + timedelta(hours=3))  # well after 08:00 on a working day
    assert bot.letters("digest") == []
    assert len(bot.letters("acknowledgement")) == 1
