"""Issue 11.3 and 11.4: Reply-To never names one of our own people, never escapes a restriction, and a robot
that changes its Reply-To on every message still meets the cap on automatic letters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.integration.bot import Bot, make_mail

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)  # Monday


def test_a_reply_to_naming_our_ceo_opens_the_case_for_the_real_sender(bot: Bot) -> None:
    bot.append(make_mail(frm="Mallory <mallory@example.net>", subject="About my mentor",
                         Reply_To="Alveena Malik <alveena.malik@1mm.org.uk>"), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    (case,) = bot.cases_json()
    assert case["complainant"] == "mallory@example.net"
    assert case["status"] == "open" and case["procedure"] == "external"  # not a staff grievance redirect
    assert case["from_addr"] == "mallory@example.net" and case["reply_to"] == "alveena.malik@1mm.org.uk"
    (ack,) = bot.letters("acknowledgement")
    assert ack.rcpt_tos == ["mallory@example.net"]
    assert bot.letters("staff-redirect") == []


def test_any_address_at_our_domain_in_reply_to_is_not_the_complainant(bot: Bot) -> None:
    bot.append(make_mail(frm="someone@example.net", Reply_To="nobody-listed@1mm.org.uk"), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    assert bot.cases_json()[0]["complainant"] == "someone@example.net"


def test_a_foreign_reply_to_is_still_the_complainant_as_web_forms_need(bot: Bot) -> None:
    bot.append(make_mail(frm="forms@example.org", Reply_To="Jane Doe <jane@example.com>"), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    (case,) = bot.cases_json()
    assert case["complainant"] == "jane@example.com" and case["from_addr"] == "forms@example.org"
    assert bot.letters("acknowledgement")[0].rcpt_tos == ["jane@example.com"]


def test_a_restricted_complainant_cannot_escape_by_adding_a_reply_to(bot: Bot) -> None:
    from tests.integration.test_restrictions import open_case, restrict

    note = open_case(bot)
    restrict(bot, note, "silent")
    assert bot.case_json("1MM-2026-0001")["restriction"]["state"] == "restricted"
    before = len(bot.letters("staff-notification"))
    bot.append(make_mail(frm="Jane <jane@example.com>", subject="Re: [1MM-2026-0001] again",
                         body="Still waiting.", Reply_To="jane.other@example.org"))
    bot.once(now=T0 + timedelta(hours=3))
    assert len(bot.letters("staff-notification")) == before  # filed, as the restriction says
    events = [e["type"] for e in bot.case_json("1MM-2026-0001")["events"]]
    assert "restricted_mail_filed" in events


def test_a_robot_that_changes_its_reply_to_every_time_meets_the_cap(bot: Bot) -> None:
    bot.extra["MAILBOT_AUTO_REPLY_CAP"] = "5"
    for n in range(12):
        bot.append(make_mail(frm="responder@example.net", subject=f"Ticket {n}",
                             Reply_To=f"ticket-{n}@example.net"), internaldate=T0 + timedelta(minutes=n))
    bot.once(now=T0 + timedelta(minutes=30))
    assert len(bot.letters("acknowledgement")) == 5
    capped = [e for c in bot.cases_json()[5:] for e in bot.case_json(c["ref"])["events"]
              if e["type"] == "auto_reply_capped"]
    assert len(capped) == 7 and "responder@example.net" in capped[0]["detail"]["reason"]


def test_form_senders_are_not_capped_by_their_from(bot: Bot) -> None:
    bot.extra.update({"MAILBOT_AUTO_REPLY_CAP": "2", "MAILBOT_FORM_SENDERS": "forms@example.org"})
    for n in range(4):
        bot.append(make_mail(frm="forms@example.org", Reply_To=f"person{n}@example.com", subject=f"Form {n}"),
                   internaldate=T0 + timedelta(minutes=n))
    bot.once(now=T0 + timedelta(minutes=10))
    assert len(bot.letters("acknowledgement")) == 4
