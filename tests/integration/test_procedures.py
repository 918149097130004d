"""Issue 3: who is complaining decides the procedure, the contact and the dates a careful person would write."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.integration.bot import Bot, make_mail

UK = ZoneInfo("Europe/London")


def plain(letter) -> str:
    return letter.message.get_body(preferencelist=("plain",)).get_content()


def complain(bot: Bot, frm: str, when: datetime, subject: str = "A complaint", body: str = "Please help.") -> dict:
    bot.deliver(make_mail(frm=frm, subject=subject, body=body), when)
    bot.once(now=when + timedelta(seconds=2))
    return bot.cases_json()[-1]


@pytest.mark.parametrize(
    "sender, procedure, assignee",
    [
        ("member.of.public@example.com", "external", "priya.shah@1mm.org.uk"),
        ("amira.khan@example.org", "mentee", "tom.okafor@1mm.org.uk"),  # current mentee: her coordinator
        ("leo.baker@example.org", "mentee", "gareth.lewis@1mm.org.uk"),  # alumnus: regional manager
        ("chloe.ward@example.org", "mentee", "sam.carter@1mm.org.uk"),  # region without one: head of delivery
        ("daniel.price@example.com", "mentor", "tom.okafor@1mm.org.uk"),
    ],
)
def test_the_directory_decides_procedure_and_contact(bot: Bot, sender: str, procedure: str, assignee: str) -> None:
    case = complain(bot, sender, datetime(2026, 11, 16, 10, 0, tzinfo=UK))
    assert (case["procedure"], case["assignee"]) == (procedure, assignee)
    assert [l.rcpt_tos for l in bot.letters("staff-notification")] == [[assignee]]


def test_a_member_of_staff_is_pointed_to_the_grievance_procedure(bot: Bot) -> None:
    case = complain(bot, "tom.okafor@1mm.org.uk", datetime(2026, 11, 16, 10, 0, tzinfo=UK))
    assert case["procedure"] == "staff" and case["status"] == "redirected"
    letter = bot.letters("staff-redirect")
    assert len(letter) == 1 and "grievance procedure" in plain(letter[0])
    assert bot.letters("acknowledgement") == [] and bot.letters("staff-notification") == []


@pytest.mark.parametrize(
    "arrival, first, full, resolution",
    [
        # An ordinary Monday morning.
        (datetime(2026, 11, 16, 10, 0, tzinfo=UK), "Tuesday 17 November 2026", "Wednesday 18 November 2026",
         "Friday 4 December 2026"),
        # Friday before Christmas, in office hours: Christmas Day, the Boxing Day substitute and New Year's Day skipped.
        (datetime(2026, 12, 18, 11, 0, tzinfo=UK), "Monday 21 December 2026", "Tuesday 22 December 2026",
         "Tuesday 12 January 2027"),
        # Late on a Friday: "the end of the following working day" is the end of Monday, as the complainant reads it.
        (datetime(2026, 12, 18, 17, 45, tzinfo=UK), "Monday 21 December 2026", "Tuesday 22 December 2026",
         "Tuesday 12 January 2027"),
        (datetime(2026, 12, 11, 18, 0, tzinfo=UK), "Monday 14 December 2026", "Tuesday 15 December 2026",
         "Tuesday 5 January 2027"),
        # On a Saturday: the end of Monday too.
        (datetime(2026, 12, 12, 11, 0, tzinfo=UK), "Monday 14 December 2026", "Tuesday 15 December 2026",
         "Tuesday 5 January 2027"),
        # Maundy Thursday evening (BST): Good Friday and Easter Monday are bank holidays.
        (datetime(2026, 4, 2, 18, 0, tzinfo=UK), "Tuesday 7 April 2026", "Wednesday 8 April 2026",
         "Friday 24 April 2026"),
    ],
)
def test_external_dates_in_the_letter_and_the_case(bot: Bot, arrival: datetime, first: str, full: str,
                                                   resolution: str) -> None:
    case = complain(bot, "jane@example.com", arrival)
    text = plain(bot.letters("acknowledgement")[0])
    assert f"reply to you by the end of {first}" in text
    assert f"full response by the end of {full}" in text
    assert f"resolve your complaint by the end of {resolution}" in text
    for name in ("first_response", "full_response", "resolution"):
        due = datetime.fromisoformat(case["deadlines"][name]).astimezone(UK)
        assert (due.hour, due.minute) == (17, 30)


def test_a_mentee_is_promised_a_response_within_24_hours(bot: Bot) -> None:
    arrival = datetime(2026, 11, 27, 16, 40, tzinfo=UK)  # a Friday afternoon
    case = complain(bot, "amira.khan@example.org", arrival)
    # 24 hours, written as a person writes a time: down to the half hour, never later than promised.
    assert datetime.fromisoformat(case["deadlines"]["first_response"]) == arrival + timedelta(hours=23, minutes=50)
    text = plain(bot.letters("acknowledgement")[0])
    assert "4:30pm on Saturday 28 November 2026" in text
    assert "full response by the end of Tuesday 1 December 2026" in text
    assert "Mentee Complaints Procedure" in text


def test_reminders_and_overdue_alerts_come_once_to_the_right_people(bot: Bot) -> None:
    complain(bot, "jane@example.com", datetime(2026, 11, 16, 10, 0, tzinfo=UK))
    bot.once(now=datetime(2026, 11, 16, 17, 0, tzinfo=UK))
    assert bot.letters("deadline-reminder") == []
    bot.cli("run", "--once", "--now", "2026-11-16T17:31:00")  # local time, as a person types it
    reminders = bot.letters("deadline-reminder")
    assert len(reminders) == 1 and reminders[0].rcpt_tos == ["priya.shah@1mm.org.uk"]
    assert "first response" in reminders[0].message["Subject"]
    bot.cli("run", "--once", "--now", "2026-11-16T17:45:00")
    assert len(bot.letters("deadline-reminder")) == 1

    bot.once(now=datetime(2026, 11, 17, 17, 31, tzinfo=UK))
    overdue = bot.letters("deadline-overdue")
    assert len(overdue) == 1
    assert sorted(overdue[0].rcpt_tos) == ["priya.shah@1mm.org.uk", "sam.carter@1mm.org.uk"]
    assert "first response" in overdue[0].message["Subject"]
    assert len(bot.letters("deadline-reminder")) == 2  # now the full response's, due on Wednesday
    bot.once(now=datetime(2026, 11, 17, 18, 0, tzinfo=UK))
    assert len(bot.letters("deadline-overdue")) == 1


def test_safeguarding_words_alert_the_safeguarding_lead_at_once(bot: Bot) -> None:
    case = complain(bot, "amira.khan@example.org", datetime(2026, 11, 16, 10, 0, tzinfo=UK),
                    subject="My mentor", body="My mentor threatened me after the session and I feel unsafe.")
    assert case["category"] == "safeguarding"
    alerts = bot.letters("safeguarding-alert")
    assert len(alerts) == 1 and alerts[0].rcpt_tos == ["jo.mensah@1mm.org.uk"]
    assert "threatened" in plain(alerts[0])


@pytest.mark.parametrize(
    "subject, body, category",
    [
        ("Direct debit", "You took my direct debit twice this month.", "fundraising"),
        ("Subject access request", "Please send me a copy of my personal data.", "data_protection"),
        ("Booking", "The venue was locked when we arrived.", "service"),
    ],
)
def test_a_first_guess_at_the_category(bot: Bot, subject: str, body: str, category: str) -> None:
    case = complain(bot, "jane@example.com", datetime(2026, 11, 16, 10, 0, tzinfo=UK), subject=subject, body=body)
    assert case["category"] == category


def test_letters_preview_writes_every_letter(bot: Bot, tmp_path) -> None:
    out = tmp_path / "preview"
    bot.cli("letters", "--preview", str(out))
    names = {p.name for p in out.iterdir()}
    assert {"external-acknowledgement.eml", "external-acknowledgement.html", "mentee-outcome.eml",
            "staff-staff-redirect.html", "mentee-escalation.eml"} <= names
    assert all(p.stat().st_size > 200 for p in out.iterdir())
