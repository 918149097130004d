"""Issue 4: staff work by replying in the thread — relays, notes, commands, and forged staff mail."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.integration.bot import Bot, make_mail, staff_reply

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)  # Monday
PRIYA = "Priya Shah <priya.shah@1mm.org.uk>"


def open_case(bot: Bot, **kwargs) -> object:
    bot.append(make_mail(subject="Nobody called me back", body="I was promised a call.", **kwargs), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    notes = bot.letters("staff-notification")
    assert len(notes) == 1
    return notes[-1]


def plain(letter) -> str:
    return letter.message.get_body(preferencelist=("plain",)).get_content()


def test_the_assignee_is_notified_with_a_signed_reply_address_and_escaped_html(bot: Bot) -> None:
    note = open_case(bot, frm="Jane <jane@example.com>")
    assert note.rcpt_tos == ["priya.shah@1mm.org.uk"]
    reply_to = note.message["Reply-To"]
    assert reply_to.startswith("complaints+1mm-2026-0001.") and reply_to.endswith("@1mm.org.uk")
    text = plain(note)
    assert "I was promised a call." in text and "first response" in text and "#resolve" in text
    bot.append(make_mail(subject="Re: [1MM-2026-0001] x", body="<script>alert(1)</script> <b>bold</b>"))
    bot.once(now=T0 + timedelta(minutes=1))
    html = bot.letters("staff-notification")[-1].message.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_staff_reply_reaches_the_complainant_without_the_quote_and_meets_first_response(bot: Bot) -> None:
    note = open_case(bot)
    bot.append(staff_reply(note, PRIYA, "Hello Jane,\n\nI am sorry nobody called. I will ring you today.\n\nPriya"))
    bot.once(now=T0 + timedelta(hours=1))
    relayed = bot.letters("staff-reply")
    assert len(relayed) == 1 and relayed[0].rcpt_tos == ["jane@example.com"]
    msg = relayed[0].message
    text = plain(relayed[0])
    assert "I will ring you today." in text
    assert "wrote:" not in text and "> " not in text and "promised a call" not in text
    assert "[1MM-2026-0001]" in msg["Subject"]
    assert msg["From"].endswith("<complaints@1mm.org.uk>") and "Priya Shah" in msg["From"]
    ack = bot.letters("acknowledgement")[0].message
    assert ack["Message-ID"] in msg["References"]
    case = bot.case_json("1MM-2026-0001")
    met = [e for e in case["events"] if e["type"] == "deadlines_met"]
    assert met and met[0]["detail"]["deadlines"] == ["first_response"]


def test_a_note_reaches_nobody_but_is_kept(bot: Bot) -> None:
    note = open_case(bot)
    bot.append(staff_reply(note, PRIYA, "#note\nCalled her, no answer. Will try tomorrow."))
    bot.once(now=T0 + timedelta(hours=1))
    assert bot.letters("staff-reply") == []
    assert [l.rcpt_tos for l in bot.letters("command-result")] == [["priya.shah@1mm.org.uk"]]
    events = bot.case_json("1MM-2026-0001")["events"]
    assert any(e["type"] == "internal_note" and "no answer" in e["detail"]["text"] for e in events)


def test_resolve_sends_the_outcome_with_signposting_and_confirms(bot: Bot) -> None:
    note = open_case(bot)
    bot.append(staff_reply(note, PRIYA, "#resolve upheld\nWe are sorry. Your call was missed because of a rota error."))
    bot.once(now=T0 + timedelta(days=1))
    outcome = bot.letters("outcome")
    assert len(outcome) == 1 and outcome[0].rcpt_tos == ["jane@example.com"]
    text = plain(outcome[0])
    assert "rota error" in text and "0845 300 0218" in text and "charitycommission.gov.uk" in text
    assert "ico.org.uk" not in text and "Fundraising Regulator" not in text
    assert "at Stage 1 of our External Complaints Procedure" in text  # the stage the outcome was given at
    assert "escalated to our Chief Executive, who will respond within 7 working days" in " ".join(text.split())
    assert bot.letters("staff-reply") == []  # the words went in the outcome letter, not twice
    confirm = plain(bot.letters("command-result")[-1])
    assert "Resolved the case as upheld" in confirm
    case = bot.case_json("1MM-2026-0001")
    assert case["status"] == "resolved" and case["outcome"] == "upheld"


def test_fundraising_outcome_gives_the_regulator_and_its_eight_week_date(bot: Bot) -> None:
    note = open_case(bot)
    bot.append(staff_reply(note, PRIYA, "#category fundraising\n#resolve not-upheld\nThe direct debit was correct."))
    bot.once(now=datetime(2026, 11, 17, 12, 0, tzinfo=timezone.utc))
    text = plain(bot.letters("outcome")[0])
    assert "0300 999 3407" in text and "Tuesday 12 January 2027" in text


def test_commands_assign_extend_escalate_and_bad_commands(bot: Bot) -> None:
    note = open_case(bot)
    bot.append(staff_reply(note, PRIYA, "#assign hannah.reid@1mm.org.uk\n#extend 2026-12-04 waiting for the coordinator"))
    bot.once(now=T0 + timedelta(hours=2))
    case = bot.case_json("1MM-2026-0001")
    assert case["assignee"] == "hannah.reid@1mm.org.uk"
    assert case["deadlines"]["full_response"].startswith("2026-12-04T17:30")
    ext = bot.letters("extension")
    assert len(ext) == 1 and "Friday 4 December 2026" in plain(ext[0]) and "waiting for the coordinator" in plain(ext[0])
    assert any("hannah.reid@1mm.org.uk" in l.rcpt_tos for l in bot.letters("staff-notification"))

    before = len(bot.sink.messages())
    bot.append(staff_reply(note, PRIYA, "#extnd 2026-12-10 typo\n#assign nobody@nowhere.example"))
    bot.once(now=T0 + timedelta(hours=3))
    new = bot.sink.messages()[before:]
    assert [m.message["X-Mailbot-Letter"] for m in new] == ["command-result"]
    text = new[0].message.get_body(preferencelist=("plain",)).get_content()
    assert "Nothing was changed" in text and "unknown command #extnd" in text
    assert bot.case_json("1MM-2026-0001")["assignee"] == "hannah.reid@1mm.org.uk"


def test_a_role_that_may_not_restrict_is_refused(bot: Bot) -> None:
    note = open_case(bot)
    bot.append(staff_reply(note, PRIYA, "#warn you wrote 40 times this week"))
    bot.once(now=T0 + timedelta(hours=1))
    text = plain(bot.letters("command-result")[-1])
    assert "Nothing was changed" in text and "smt" in text
    assert bot.letters("restriction-warning") == []


def test_forged_staff_mail_changes_nothing_and_warns_the_assignee(bot: Bot) -> None:
    open_case(bot)
    forged = make_mail(frm=PRIYA, subject="Re: [1MM-2026-0001] Nobody called me back",
                       body="#resolve not-upheld\nClosed.")
    bot.append(forged)
    bot.once(now=T0 + timedelta(hours=1))
    case = bot.case_json("1MM-2026-0001")
    assert case["status"] == "open" and bot.letters("outcome") == []
    warning = plain(bot.letters("staff-notification")[-1])
    assert "WARNING" in warning and "ignored" in warning


def test_a_signature_from_another_case_is_refused(bot: Bot) -> None:
    first = open_case(bot)
    bot.append(make_mail(frm="bob@example.org", subject="Second complaint"), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=2))
    other_sig = first.message["Reply-To"].split(".")[1].split("@")[0]
    forged_to = f"complaints+1mm-2026-0002.{other_sig}@1mm.org.uk"
    bot.append(make_mail(frm=PRIYA, to=forged_to, subject="Re: [1MM-2026-0002] x", body="#resolve upheld\nDone."))
    bot.once(now=T0 + timedelta(hours=1))
    assert bot.case_json("1MM-2026-0002")["status"] == "open"
    assert bot.letters("outcome") == []


def test_an_authenticated_staff_reply_without_the_signed_address_is_trusted(bot: Bot) -> None:
    bot.extra["MAILBOT_TRUSTED_AUTHSERV_ID"] = "mx.1mm.org.uk"
    open_case(bot)
    bot.append(make_mail(frm=PRIYA, subject="Re: [1MM-2026-0001] x", body="#not-a-complaint",
                         Authentication_Results="mx.1mm.org.uk; dkim=pass header.d=1mm.org.uk; "
                                                "dmarc=pass header.from=1mm.org.uk"))
    bot.once(now=T0 + timedelta(hours=1))
    case = bot.case_json("1MM-2026-0001")
    assert case["status"] == "closed" and case["outcome"] == "not-a-complaint"


def test_a_forged_authentication_results_above_or_below_ours_is_not_obeyed(bot: Bot) -> None:
    bot.extra["MAILBOT_TRUSTED_AUTHSERV_ID"] = "mx.1mm.org.uk"
    open_case(bot)
    ours = "mx.1mm.org.uk; spf=fail smtp.mailfrom=1mm.org.uk; dkim=none; dmarc=fail header.from=1mm.org.uk"
    forged = "mx.1mm.org.uk; dkim=pass header.d=1mm.org.uk; dmarc=pass header.from=1mm.org.uk"
    for order in ((ours, forged), (forged, ours)):
        raw = make_mail(frm=PRIYA, subject="Re: [1MM-2026-0001] x", body="#not-a-complaint")
        headers = "".join(f"Authentication-Results: {value}\r\n" for value in order).encode()
        bot.append(headers + raw)
        bot.once(now=T0 + timedelta(hours=1))
        case = bot.case_json("1MM-2026-0001")
        assert case["status"] == "open" and case["outcome"] is None
        assert any(e["type"] == "unverified_staff_mail" for e in case["events"])


def test_a_reply_to_a_resolved_case_asking_plainly_escalates_it(bot: Bot) -> None:
    note = open_case(bot)
    bot.append(staff_reply(note, PRIYA, "#resolve not-upheld\nWe found no fault."))
    bot.once(now=T0 + timedelta(days=1))
    asked = datetime(2026, 11, 18, 9, 0, tzinfo=timezone.utc)
    bot.append(make_mail(subject="Re: [1MM-2026-0001] The outcome of your complaint",
                         body="I am not satisfied with this and want it escalated."), internaldate=asked)
    bot.once(now=asked + timedelta(hours=3))
    case = bot.case_json("1MM-2026-0001")
    assert case["stage"] == 2 and case["status"] == "open"
    # 7 working days from Wednesday 18 November: Friday 27 November.
    assert case["deadlines"]["stage_response"].startswith("2026-11-27T17:30")
    esc = plain(bot.letters("escalation")[0])
    assert "Chief Executive" in esc and "Friday 27 November 2026" in esc


def test_a_vague_reply_to_a_resolved_case_waits_for_staff_and_stay_declines(bot: Bot) -> None:
    note = open_case(bot)
    bot.append(staff_reply(note, PRIYA, "#resolve partly-upheld\nPartly our fault."))
    bot.once(now=T0 + timedelta(days=1))
    bot.append(make_mail(subject="Re: [1MM-2026-0001] The outcome", body="Thanks. One question about the rota."))
    bot.once(now=T0 + timedelta(days=2))
    assert bot.case_json("1MM-2026-0001")["status"] == "awaiting_staff"
    latest = bot.letters("staff-notification")[-1]
    assert "#escalate" in plain(latest)
    bot.append(staff_reply(latest, PRIYA, "#stay\nThe rota has been fixed; there is nothing more to review."))
    bot.once(now=T0 + timedelta(days=2, hours=1))
    assert bot.case_json("1MM-2026-0001")["status"] == "resolved"
    assert "nothing more to review" in plain(bot.letters("escalation-declined")[0])


def test_a_staff_reply_keeps_its_attachments(bot: Bot) -> None:
    note = open_case(bot)
    raw = staff_reply(note, PRIYA, "Please see the attached timetable.")
    import email as email_lib
    import email.policy

    msg = email_lib.message_from_bytes(raw, policy=email.policy.default)
    msg.add_attachment(b"%PDF-1.4 timetable", maintype="application", subtype="pdf", filename="timetable.pdf")
    bot.append(msg.as_bytes())
    bot.once(now=T0 + timedelta(hours=1))
    relayed = bot.letters("staff-reply")[0].message
    names = [part.get_filename() for part in relayed.iter_attachments()]
    assert names == ["timetable.pdf"]


def test_mentor_warnings_and_suspension_follow_the_mentee_procedure(bot: Bot) -> None:
    bot.append(make_mail(frm="amira.khan@example.org", subject="My mentor", body="He keeps missing sessions."),
               internaldate=T0)
    bot.once(now=T0)
    note = bot.letters("staff-notification")[0]
    tom = "Tom Okafor <tom.okafor@1mm.org.uk>"
    bot.append(staff_reply(note, tom, "#informal-warning"))
    bot.once(now=T0 + timedelta(hours=1))
    assert "name the mentor" in plain(bot.letters("command-result")[-1])

    # A warning follows the formal meeting, never instead of it.
    bot.append(staff_reply(note, tom, "#informal-warning daniel.price@example.com"))
    bot.once(now=T0 + timedelta(hours=1, minutes=30))
    assert "invite them first" in " ".join(plain(bot.letters("command-result")[-1]).split())

    bot.append(staff_reply(note, tom, "#mentor-meeting daniel.price@example.com\nWould Thursday at 4pm suit you?"))
    bot.once(now=T0 + timedelta(hours=2))
    meeting = bot.letters("mentor-meeting")
    assert len(meeting) == 1 and meeting[0].rcpt_tos == ["daniel.price@example.com"]
    text = plain(meeting[0])
    assert "right to be accompanied" in text and "Thursday at 4pm" in text and "warning" not in text
    assert bot.letters("staff-reply") == []  # the words went to the mentor, not to the mentee

    bot.append(staff_reply(note, tom, "#informal-warning\nWe agreed you will confirm sessions a day ahead."))
    bot.once(now=T0 + timedelta(hours=2, minutes=30))
    warning = plain(bot.letters("mentor-warning")[0])
    assert "an informal warning" in warning and "confirm sessions a day ahead" in warning

    bot.append(staff_reply(note, tom, "#suspend he took money from the mentee"))
    bot.once(now=T0 + timedelta(hours=3))
    alert = bot.letters("mentor-suspension-alert")
    assert len(alert) == 1
    # The Regional Manager, the Senior Management Team and the Safeguarding Lead, as the procedure names them.
    assert sorted(alert[0].rcpt_tos) == ["alex.morgan@1mm.org.uk", "hannah.reid@1mm.org.uk", "jo.mensah@1mm.org.uk",
                                         "sam.carter@1mm.org.uk"]
    suspension = plain(bot.letters("mentor-suspension")[0])
    assert "Monday 30 November 2026" in suspension and "accompanied" in suspension
    case = bot.case_json("1MM-2026-0001")
    assert [a["action"] for a in case["mentor_actions"]] == ["mentor-meeting", "informal-warning", "suspend"]
    assert case["deadlines"]["suspension_decision"].startswith("2026-11-30")

    # The decision within the 14 days: upheld means exclusion, and the mentee hears as far as may be disclosed.
    hannah = "Hannah Reid <hannah.reid@1mm.org.uk>"
    bot.append(staff_reply(note, hannah, "#suspension-decision upheld he admitted taking the money"))
    bot.once(now=T0 + timedelta(days=5))
    assert bot.letters("mentor-excluded")[0].rcpt_tos == ["daniel.price@example.com"]
    told = bot.letters("mentor-decision")
    assert told[0].rcpt_tos == ["amira.khan@example.org"]
    told_text = plain(told[0])
    assert "appropriate action taken" in told_text and "right to be accompanied" in told_text
    assert "money" not in told_text  # the finding itself is not disclosed
    case = bot.case_json("1MM-2026-0001")
    assert "suspension_decision" not in case["deadlines"] or any(
        e["type"] == "deadlines_met" and "suspension_decision" in e["detail"]["deadlines"] for e in case["events"])
