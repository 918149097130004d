"""Issue 5: unreasonably persistent complainants — warning, the CEO's decision, filing, reviews and expiry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.integration.bot import Bot, make_mail, staff_reply

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)  # Monday
SMT = "Jo Mensah <jo.mensah@1mm.org.uk>"
CEO = "Alex Morgan <alex.morgan@1mm.org.uk>"


def plain(letter) -> str:
    return letter.message.get_body(preferencelist=("plain",)).get_content()


def open_case(bot: Bot):
    bot.append(make_mail(subject="The programme", body="I want answers."), internaldate=T0)
    bot.once(now=T0)
    return bot.letters("staff-notification")[0]


def restrict(bot: Bot, note, mode: str, months: int = 6, at: datetime = T0 + timedelta(hours=2)) -> None:
    bot.append(staff_reply(note, SMT, "#warn You have sent us 30 emails this week, some of them abusive."))
    bot.once(now=at - timedelta(hours=1))
    bot.append(staff_reply(note, CEO, f"#restrict {mode} for {months} months because the volume of emails is "
                                      f"stopping us investigating\n#letters-only"))
    bot.once(now=at)


def from_jane(n: int, subject: str = "Re: [1MM-2026-0001] The programme") -> bytes:
    return make_mail(subject=subject, body=f"Message number {n}.")


def test_warn_then_restrict_by_the_ceo_writes_the_four_things(bot: Bot) -> None:
    note = open_case(bot)
    restrict(bot, note, "acknowledge-only")
    warning = bot.letters("restriction-warning")
    assert len(warning) == 1 and warning[0].rcpt_tos == ["jane@example.com"]
    notice = plain(bot.letters("restriction-notice")[0])
    assert "Why: the volume of emails" in notice
    assert "short acknowledgement" in notice  # what action
    assert "until Sunday 16 May 2027" in notice  # how long
    assert "How to challenge this decision" in notice
    assert "by letter only, not by email" in notice  # the contact option chosen, as chosen
    r = bot.case_json("1MM-2026-0001")["restriction"]
    assert r["state"] == "restricted" and r["mode"] == "acknowledge-only"
    assert r["decided_by"] == "alex.morgan@1mm.org.uk" and r["warned_at"] and r["since"] and r["until"]
    assert r["options"] == [{"kind": "letters_only"}]


def test_restriction_by_anyone_but_the_ceo_or_without_warning_is_refused(bot: Bot) -> None:
    note = open_case(bot)
    bot.append(staff_reply(note, SMT, "#restrict silent for 3 months because too many emails"))
    bot.once(now=T0 + timedelta(hours=1))
    assert "ceo" in plain(bot.letters("command-result")[-1])
    bot.append(staff_reply(note, CEO, "#restrict silent for 3 months because too many emails"))
    bot.once(now=T0 + timedelta(hours=2))
    refusal = plain(bot.letters("command-result")[-1])
    assert "Nothing was changed" in refusal and "prior warning" in refusal and "exceptional:" in refusal
    assert bot.case_json("1MM-2026-0001")["restriction"] is None
    assert bot.letters("restriction-notice") == []
    bot.append(staff_reply(note, CEO, "#restrict silent for 3 months because threats to staff "
                                      "exceptional: threatened to harm a coordinator"))
    bot.once(now=T0 + timedelta(hours=3))
    assert len(bot.letters("restriction-notice")) == 1
    assert bot.case_json("1MM-2026-0001")["restriction"]["state"] == "restricted"


def test_acknowledge_only_answers_a_burst_once_a_day_and_tells_no_staff(bot: Bot) -> None:
    note = open_case(bot)
    restrict(bot, note, "acknowledge-only")
    notifications = len(bot.letters("staff-notification"))
    for n in range(4):
        bot.append(from_jane(n))
    bot.once(now=T0 + timedelta(hours=5))
    assert len(bot.letters("acknowledge-only")) == 1
    bot.append(from_jane(5))
    bot.once(now=T0 + timedelta(days=1, hours=1))
    assert len(bot.letters("acknowledge-only")) == 2
    assert len(bot.letters("staff-notification")) == notifications
    kinds = [m["kind"] for m in bot.case_json("1MM-2026-0001")["messages"] if m["direction"] == "in"
             and m["kind"].startswith("restricted")]
    assert kinds.count("restricted_acknowledged") == 2 and kinds.count("restricted_filed") == 3


def test_silent_mode_sends_nothing_and_keeps_everything(bot: Bot) -> None:
    note = open_case(bot)
    restrict(bot, note, "silent")
    before = len(bot.sink.messages())
    for n in range(3):
        bot.append(from_jane(n))
    bot.once(now=T0 + timedelta(hours=5))
    assert len(bot.sink.messages()) == before
    inbound = [m for m in bot.case_json("1MM-2026-0001")["messages"] if m["kind"] == "restricted_filed"]
    assert len(inbound) == 3


def test_a_new_unthreaded_complaint_is_acknowledged_and_flagged(bot: Bot) -> None:
    note = open_case(bot)
    restrict(bot, note, "silent")
    bot.append(make_mail(subject="A different problem", body="The venue was locked."))
    bot.once(now=T0 + timedelta(hours=5))
    acks = bot.letters("acknowledgement")
    assert len(acks) == 2 and "[1MM-2026-0002]" in acks[-1].message["Subject"]
    flagged = plain(bot.letters("staff-notification")[-1])
    assert "under a restriction on 1MM-2026-0001" in flagged and "#merge 1MM-2026-0001" in flagged


def test_merge_brings_a_new_case_under_the_restriction(bot: Bot) -> None:
    note = open_case(bot)
    restrict(bot, note, "silent")
    bot.append(make_mail(subject="Same thing again", body="Still angry."))
    bot.once(now=T0 + timedelta(hours=5))
    second = bot.letters("staff-notification")[-1]
    bot.append(staff_reply(second, CEO, "#merge 1MM-2026-0001"))
    bot.once(now=T0 + timedelta(hours=6))
    assert "restriction" in plain(bot.letters("command-result")[-1])
    before = len(bot.sink.messages())
    bot.append(make_mail(subject="Re: [1MM-2026-0002] Same thing again", body="More."))
    bot.once(now=T0 + timedelta(hours=7))
    assert len(bot.sink.messages()) == before
    assert any(m["kind"] == "restricted_filed" for m in bot.case_json("1MM-2026-0001")["messages"])


def test_the_ceo_is_reminded_to_review_after_six_months_and_the_term_ends_with_a_letter(bot: Bot) -> None:
    note = open_case(bot)
    restrict(bot, note, "acknowledge-only", months=9)
    bot.once(now=datetime(2027, 5, 15, 9, 0, tzinfo=timezone.utc))
    assert bot.letters("restriction-staff-note") == []
    bot.once(now=datetime(2027, 5, 17, 9, 0, tzinfo=timezone.utc))
    bot.once(now=datetime(2027, 5, 18, 9, 0, tzinfo=timezone.utc))
    reviews = [l for l in bot.letters("restriction-staff-note") if "review" in l.message["Subject"].lower()]
    assert len(reviews) == 1 and reviews[0].rcpt_tos == ["alex.morgan@1mm.org.uk"]
    bot.once(now=datetime(2027, 8, 17, 9, 0, tzinfo=timezone.utc))
    expired = bot.letters("restriction-expired")
    assert len(expired) == 1 and expired[0].rcpt_tos == ["jane@example.com"]
    assert "Monday 16 August 2027" in plain(expired[0])
    assert bot.case_json("1MM-2026-0001")["restriction"]["state"] == "expired"
    bot.once(now=datetime(2027, 8, 18, 9, 0, tzinfo=timezone.utc))
    assert len(bot.letters("restriction-expired")) == 1


def test_a_challenge_to_the_decision_always_reaches_staff(bot: Bot) -> None:
    note = open_case(bot)
    restrict(bot, note, "silent")
    notes = len(bot.letters("staff-notification"))
    bot.append(from_jane(1, subject="Challenge: Re: [1MM-2026-0001] A decision about your contact with us"))
    bot.once(now=T0 + timedelta(hours=5))
    assert len(bot.letters("staff-notification")) == notes + 1
