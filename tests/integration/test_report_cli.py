"""Issue 17, `mailbot report` from outside: cases made with `run --once --now`, the report in each format, and a
period that is not one refused in one line. (The hand-counted year is tests/services/test_annual_report.py; the
PDF check is in test_web_browser.py.)"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.integration.bot import Bot, make_mail, staff_reply

UTC = timezone.utc


def test_the_report_counts_the_periods_cases_in_each_format(bot: Bot, tmp_path: Path) -> None:
    # 31 March 2026 23:30 BST is still March in the UK (22:30 UTC); 1 April 00:30 BST is April (23:30 UTC on 31 March).
    march, april = datetime(2026, 3, 31, 22, 30, tzinfo=UTC), datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    bot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="March"), internaldate=march)
    bot.cli("run", "--once", "--now", (march + timedelta(seconds=1)).isoformat())
    bot.append(make_mail(frm="Ken Lee <ken@example.com>", subject="April"), internaldate=april)
    bot.cli("run", "--once", "--now", (april + timedelta(seconds=1)).isoformat())
    [note] = bot.letters("staff-notification", case="1MM-2026-0001")
    bot.append(staff_reply(note, "Priya Shah <priya.shah@1mm.org.uk>", "#resolve upheld\nWe are sorry."))
    bot.cli("run", "--once", "--now", "2026-04-02T10:00:00+01:00")

    data = json.loads(bot.cli("report", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "json",
                              "--now", "2026-04-03T09:00:00+01:00").stdout)
    assert data["cases"] == 1 and data["by_month"] == [{"key": "2026-03", "count": 1}]
    assert data["outcomes"] == [{"key": "upheld", "count": 1}]
    assert data["responses"][2]["on_time"] == 1 and data["responses"][2]["median_working_days"] == 2

    out = tmp_path / "spring.csv"
    done = bot.cli("report", "--from", "2026-03-01", "--to", "2026-04-30", "--out", str(out))
    assert "wrote the csv report on 2 complaint(s)" in done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["ref"], r["month"]) for r in rows] == [("1MM-2026-0001", "2026-03"), ("1MM-2026-0002", "2026-04")]

    html = bot.cli("report", "--from", "2026-04-01", "--to", "2026-04-30").stdout
    assert html.startswith("<!DOCTYPE html>") and "<strong>1</strong> complaint<" in html


def test_a_period_that_is_not_one_is_refused_in_one_line(bot: Bot) -> None:
    backwards = bot.cli("report", "--from", "2026-05-01", "--to", "2026-04-30", check=False)
    assert backwards.returncode == 2 and backwards.stderr.strip() == \
        "mailbot: --to 2026-04-30 is before --from 2026-05-01"
    bad = bot.cli("report", "--from", "2026-02-30", "--to", "2026-04-30", check=False)
    assert bad.returncode == 2 and "'2026-02-30' is not a date: give YYYY-MM-DD" in bad.stderr
