"""Issue 17, the annual review: a year of cases made on the one clock, and the report's figures against a hand count.

The year (2025; GMT until 30 March, BST until 26 October):
  A  Mon 6 Jan 10:00, email. Answered with #full at 14:00 (day 0); resolved upheld Wed 8 Jan (2 working days);
     a lesson recorded.
  B  Mon 3 Mar 10:00, email. First answered Thu 6 Mar (3 working days: late); resolved not upheld Mon 24 Mar (15
     working days: full response and resolution late); escalated Tue 25 Mar; the CEO's review not upheld Thu 27 Mar
     (stage 2, 2 working days after the escalation: on time); a persistence warning from the CEO.
  C  Mon 30 Jun 23:30 BST (22:30 UTC), logged by staff from a phone call: June, not July. Never answered.
  G  Mon 1 Sep 10:00 BST, email, fundraising. Extended on Tue 2 Sep to Fri 26 Sep; resolved partly upheld Thu
     25 Sep (18 working days: the full response and the resolution on time against the extended deadline).
  D  Wed 31 Dec 23:30 GMT: the last day, included. Its deadlines are not yet due when the report is made.
  Outside: 31 Dec 2024 23:59 GMT and 1 Jan 2026 00:30 GMT.
  Filed on no case: one out-of-office reply (May).
The report is made on Fri 2 Jan 2026 at 09:00.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import date, datetime, timezone

from mailbot.services import annual_report
from tests.services.conftest import World, mail

PRIYA = "priya.shah@1mm.org.uk"
CEO = "alex.morgan@1mm.org.uk"
UTC = timezone.utc


def at(world: World, *when: int) -> None:
    world.app.fixed_now = datetime(*when, tzinfo=UTC)  # type: ignore[misc]


def complaint(world: World, frm: str, subject: str, *when: int) -> str:
    at(world, *when)
    outcome = world.receive(mail(frm=frm, subject=subject, date=world.now))
    assert outcome.ref, outcome
    return outcome.ref


def reply(world: World, ref: str, body: str, *when: int, frm: str = PRIYA) -> None:
    at(world, *when)
    outcome = world.staff_reply(ref, body, frm=frm)
    assert outcome.kind == "staff_reply", outcome


def make_year(world: World) -> dict[str, str]:
    world.app.route_config = replace(world.app.route_config, trusted_authserv_id="mx.1mm.org.uk")
    world.app.ingestor.route_config = world.app.route_config
    refs = {"before": complaint(world, "Old Timer <old@example.com>", "Last year", 2024, 12, 31, 23, 59)}
    refs["A"] = complaint(world, "Jane Doe <jane@example.com>", "Missed session", 2025, 1, 6, 10, 0)
    reply(world, refs["A"], "#full\nDear Jane, we have looked into it and will call you.", 2025, 1, 6, 14, 0)
    reply(world, refs["A"], "#resolve upheld\nWe are sorry: the session should have gone ahead.", 2025, 1, 8, 11, 0)
    reply(world, refs["A"], "#lesson Call back on the same day when a session is missed.", 2025, 1, 8, 11, 5)

    refs["B"] = complaint(world, "Ken Lee <ken@example.com>", "Rude coordinator", 2025, 3, 3, 10, 0)
    reply(world, refs["B"], "Dear Ken, we are looking into this.", 2025, 3, 6, 10, 0)
    reply(world, refs["B"], "#resolve not-upheld\nWe found the coordinator polite throughout.", 2025, 3, 24, 10, 0)
    reply(world, refs["B"], "#escalate", 2025, 3, 25, 10, 0)
    reply(world, refs["B"], "#resolve not-upheld\nI have reviewed the case and agree.", 2025, 3, 27, 10, 0, frm=CEO)
    reply(world, refs["B"], "#warn Twelve messages a day about a closed matter.", 2025, 3, 28, 10, 0, frm=CEO)

    at(world, 2025, 5, 12, 9, 0)
    world.receive(mail(frm="Away <away@example.org>", subject="Automatic reply: Out of office", date=world.now,
                       Auto_Submitted="auto-replied"))

    at(world, 2025, 6, 30, 22, 30)
    logged = world.receive(mail(
        frm=f"Priya Shah <{PRIYA}>", subject="Phone call from Pat", date=world.now,
        body="#on-behalf-of Pat Smith <pat@example.com> phone\n\nShe says the coordinator missed three sessions.",
        Authentication_Results="mx.1mm.org.uk; dkim=pass header.d=1mm.org.uk; dmarc=pass header.from=1mm.org.uk"))
    assert logged.ref
    refs["C"] = logged.ref

    refs["G"] = complaint(world, "Sue Park <sue@example.com>", "Direct debit", 2025, 9, 1, 9, 0)
    reply(world, refs["G"], "#category fundraising\n#extend 2025-09-26 waiting for the bank's records", 2025, 9, 2, 9, 0)
    reply(world, refs["G"], "#resolve partly-upheld\nThe second payment was taken in error; it is refunded.",
          2025, 9, 25, 9, 0)

    refs["D"] = complaint(world, "Dee Vine <dee@example.com>", "New year's eve", 2025, 12, 31, 23, 30)
    refs["after"] = complaint(world, "New Year <new@example.com>", "Too late", 2026, 1, 1, 0, 30)
    return refs


def report(world: World, fmt: str = "json") -> tuple[dict, str]:
    now = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
    data, cases = annual_report.build(world.app.engine, world.app.calendar, date(2025, 1, 1), date(2025, 12, 31), now)
    text = annual_report.render(fmt, data, cases, world.app.calendar, now, world.app.settings.templates_dir,
                                "One Million Mentors")
    return data, text


def counts(rows: list[dict]) -> dict[str, int]:
    return {r["key"]: r["count"] for r in rows}


def test_a_years_report_matches_the_hand_count(world: World) -> None:
    refs = make_year(world)
    data, text = report(world)
    assert json.loads(text) == data
    assert data["cases"] == 5 and data["open"] == 2 and data["merged"] == 0
    months = counts(data["by_month"])
    assert list(months) == [f"2025-{m:02d}" for m in range(1, 13)]
    assert months == {**{k: 0 for k in months}, "2025-01": 1, "2025-03": 1, "2025-06": 1, "2025-09": 1, "2025-12": 1}
    assert counts(data["by_channel"]) == {"email": 4, "phone": 1} and data["on_behalf"] == 1
    assert counts(data["by_category"])["fundraising"] == 1 and sum(counts(data["by_category"]).values()) == 5
    assert sum(counts(data["by_procedure"]).values()) == 5
    assert counts(data["outcomes"]) == {"upheld": 1, "not-upheld": 1, "partly-upheld": 1, "still open": 2}

    first, full, resolution = data["responses"]
    # First response: A day 0 on time, B 3 days late, C never (late), G (the extension letter is not an
    # answer) answered when resolved at 18 days, late; D not yet due.
    assert (first["on_time"], first["late"], first["pending"]) == (1, 3, 1), first
    assert first["median_working_days"] == 3 and first["p90_working_days"] == 18
    # Full response: A day 0 on time; B 15 late; C late; G 18, on time: the extension moved it with the resolution
    # (#extend moves every open deadline but the first response); D pending.
    assert (full["on_time"], full["late"], full["pending"], full["on_time_pct"]) == (2, 2, 1, 50), full
    assert full["median_working_days"] == 15 and full["p90_working_days"] == 18
    # Resolution: A 2 on time; B 15 late; C late (never); G 18, on time against the extended deadline; D pending.
    assert (resolution["on_time"], resolution["late"], resolution["pending"]) == (2, 2, 1), resolution
    assert resolution["median_working_days"] == 15 and resolution["p90_working_days"] == 18
    stage2, stage3 = data["reviews"]
    assert (stage2["on_time"], stage2["late"], stage2["median_working_days"]) == (1, 0, 2)
    assert stage3["due"] == 0 and stage3["median_working_days"] is None

    assert data["escalations"][0] == {"stage": 2, "reached": 1, "results": [{"key": "not-upheld", "count": 1}]}
    assert data["escalations"][1]["reached"] == 0
    assert data["extensions"] == {"given": 1, "cases": 1}
    assert counts(data["restrictions"])["Warnings given"] == 1
    assert counts(data["unfiled"]) == {"auto_reply": 1}
    assert data["lessons"] == [{"ref": refs["A"], "date": "2025-01-08", "removed": False,
                                "text": "Call back on the same day when a session is missed."}]


def test_the_csv_is_one_row_per_case_with_figures_and_no_names(world: World) -> None:
    refs = make_year(world)
    _, text = report(world, "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["ref"] for r in rows] == [refs[k] for k in ("A", "B", "C", "G", "D")]
    a, b, c, g, d = rows
    assert (a["first_response_on_time"], a["first_response_working_days"], a["resolution_working_days"]) == \
        ("yes", "0", "2")
    assert (b["outcome"], b["stage_reached"], b["escalated"], b["resolution_on_time"]) == ("not-upheld", "2", "yes", "no")
    assert (c["opened"], c["month"], c["channel"], c["on_behalf"], c["first_response_on_time"]) == \
        ("2025-06-30", "2025-06", "phone", "yes", "no")
    assert (g["extensions"], g["resolution_due"], g["resolution_on_time"]) == ("1", "2025-09-26", "yes")
    assert (d["opened"], d["first_response_on_time"], d["lessons"]) == ("2025-12-31", "not yet due", "0")
    assert a["lessons"] == "1"
    for needle in ("jane@example.com", "Jane", "Missed session", "Call back"):
        assert needle not in text


def test_the_html_report_draws_its_charts_in_the_page_and_runs_no_script(world: World) -> None:
    make_year(world)
    data, html = report(world, "html")
    assert html.count("<svg ") == 5 and "<script" not in html.lower()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") \
        .replace('xmlns:xlink="http://www.w3.org/1999/xlink"', "")
    assert "Complaints report: Wednesday 1 January 2025 to Wednesday 31 December 2025" in html
    assert "Call back on the same day when a session is missed." in html
    assert "Phone (logged by staff)" in html and "Jun 2025" in html


def test_erasing_a_person_leaves_the_reports_totals_as_they_were(world: World) -> None:
    from mailbot.store import erasure
    from mailbot.store.db import session as new_session

    make_year(world)
    before, _ = report(world)
    with new_session(world.app.engine) as s:
        erasure.erase_person(s, "jane@example.com", ["Jane Doe"], world.now, reason="asked in writing")
        s.commit()
    after, _ = report(world)
    assert after["lessons"][0]["removed"] is True and after["lessons"][0]["text"] == ""
    for key in ("cases", "by_month", "by_channel", "by_category", "outcomes", "responses", "reviews",
                "escalations", "extensions", "restrictions"):
        assert after[key] == before[key], key


def test_requests_about_personal_data_are_counted_apart_from_complaints(world: World) -> None:
    make_year(world)
    at(world, 2025, 7, 1, 10, 0)
    request = world.receive(mail(frm="Rob Roe <rob@example.com>", subject="SAR", body="A subject access request.",
                                 date=world.now)).ref
    assert request
    reply(world, request, "#resolve answered\nYour data is attached.", 2025, 7, 20, 10, 0)
    data, html = report(world)
    assert data["cases"] == 5  # the complaints, as before
    requests = data["data_requests"]
    assert requests["total"] == 1 and requests["by_kind"] == [{"key": "access", "count": 1}]
    assert requests["outcomes"] == [{"key": "answered", "count": 1}]
    assert (requests["on_time"]["on_time"], requests["on_time"]["due"]) == (1, 1)
    _, html = report(world, "html")
    assert "Requests about personal data" in html and "For a copy of the data" in html


def test_drawing_the_charts_leaves_no_import_hook_behind(world: World) -> None:
    """pygal adds an old-style import finder for its map plugins; left in place, every later import in the
    process (the daemon's, the tests') warns."""
    import sys

    make_year(world)
    report(world, "html")
    assert not [f for f in sys.meta_path if type(f).__name__ == "PluginImportFixer"]
