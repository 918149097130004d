"""Issue 13 from outside (real Dovecot, SMTP sink, --now): the reviewer each stage names, letters written as
people write them, and the ways a complaint comes in besides a person's own email."""

from __future__ import annotations

import email.policy
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

from tests.integration.bot import Bot, make_mail, staff_reply

UK = ZoneInfo("Europe/London")
T0 = datetime(2026, 11, 16, 10, 0, tzinfo=UK)  # a Monday
PRIYA = "Priya Shah <priya.shah@1mm.org.uk>"
TOM = "Tom Okafor <tom.okafor@1mm.org.uk>"
CEO = "alex.morgan@1mm.org.uk"
AUTHENTICATED = "mx.1mm.org.uk; dkim=pass header.d=1mm.org.uk; dmarc=pass header.from=1mm.org.uk"


def plain(letter) -> str:
    return " ".join(letter.message.get_body(preferencelist=("plain",)).get_content().split())


def test_an_external_escalation_reaches_the_ceo_at_once_and_her_outcome_names_the_stage(bot: Bot) -> None:
    bot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="Missed call", body="Nobody called me back."),
               internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    note = bot.letters("staff-notification")[0]
    bot.append(staff_reply(note, PRIYA, "#resolve not-upheld\nWe called on the day; the number was wrong."))
    bot.once(now=T0 + timedelta(days=1))
    outcome = bot.letters("outcome")[0]
    bot.append(make_mail(frm="jane@example.com", subject=f"Re: {outcome.message['Subject']}",
                         body="That simply is not good enough.", In_Reply_To=outcome.message["Message-ID"]),
               internaldate=T0 + timedelta(days=2))
    bot.once(now=T0 + timedelta(days=2))
    review = bot.letters("escalation-review")
    assert len(review) == 1 and review[0].rcpt_tos == [CEO, "priya.shah@1mm.org.uk"]
    text = plain(review[0])
    assert "Nobody called me back." in text and "the number was wrong" in text and "not good enough" in text
    assert bot.case_json("1MM-2026-0001")["assignee"] == CEO

    bot.append(staff_reply(review[0], f"Alex Morgan <{CEO}>", "#resolve not-upheld\nI have reviewed the case."))
    bot.once(now=T0 + timedelta(days=3))
    final = plain(bot.letters("outcome")[-1])
    assert "at Stage 1 (escalated to the CEO) of our External Complaints Procedure" in final
    assert "reviewed by our Chief Executive" not in final and "escalated to our Chief Executive" not in final
    assert "Charity Commission" in final


def test_a_mentee_complaint_about_the_coordinator_goes_to_the_senior_management_team(bot: Bot) -> None:
    bot.append(make_mail(frm="Amira Khan <amira.khan@example.org>", subject="My coordinator",
                         body="Tom Okafor keeps cancelling my sessions."), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    note = bot.letters("staff-notification")[0]
    assert note.rcpt_tos == ["tom.okafor@1mm.org.uk"]
    bot.append(staff_reply(note, TOM, "#resolve not-upheld\nThe sessions were cancelled by the school."))
    bot.once(now=T0 + timedelta(days=1))
    bot.append(make_mail(frm="amira.khan@example.org", subject="Re: [1MM-2026-0001] The outcome",
                         body="I am not happy with this at all."), internaldate=T0 + timedelta(days=2))
    bot.once(now=T0 + timedelta(days=2))
    review = bot.letters("escalation-review")
    assert len(review) == 1
    assert review[0].rcpt_tos == ["sam.carter@1mm.org.uk", "jo.mensah@1mm.org.uk", CEO]  # not Tom
    case = bot.case_json("1MM-2026-0001")
    assert (case["stage"], case["assignee"]) == (2, "sam.carter@1mm.org.uk")
    escalation = plain(bot.letters("escalation")[0])
    assert "Stage 2 (review by the Senior Management Team)" in escalation


def outlook_reply(notification, frm: str, words: str) -> bytes:
    """A reply as Outlook writes it: the words, the signature block, then the original under a From/Sent header."""
    original = notification.message
    old = original.get_body(preferencelist=("plain",)).get_content()
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = frm
    msg["To"] = original["Reply-To"]
    msg["Subject"] = f"RE: {original['Subject']}"
    msg["Date"] = format_datetime(T0 + timedelta(hours=1))
    msg["Message-ID"] = make_msgid(domain="1mm.org.uk")
    msg["In-Reply-To"] = original["Message-ID"]
    signature = ("Kind regards,\nPriya\n\nPriya Shah\nComplaints Officer | One Million Mentors\n"
                 "T: 020 7946 0000\nwww.1mm.org.uk\n")
    msg.set_content(f"{words}\n\n{signature}\n________________________________\n"
                    f"From: One Million Mentors <complaints@1mm.org.uk>\nSent: 16 November 2026 10:00\n"
                    f"To: Priya Shah <priya.shah@1mm.org.uk>\nSubject: {original['Subject']}\n\n{old}")
    return msg.as_bytes()


def test_a_reply_written_as_people_write_has_one_greeting_and_one_signature(bot: Bot) -> None:
    bot.append(make_mail(frm="Pat Smith <pat@example.com>", subject="Cancelled session", body="It was cancelled."),
               internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    note = bot.letters("staff-notification")[0]
    bot.append(outlook_reply(note, PRIYA, "Dear Pat,\n\nI am sorry about Tuesday; it is rearranged for Friday."))
    bot.once(now=T0 + timedelta(hours=1))
    relayed = bot.letters("staff-reply")[0]
    text = relayed.message.get_body(preferencelist=("plain",)).get_content()
    assert text.count("Dear Pat") == 1 and "Dear Pat Smith" not in text
    assert text.count("Priya") == 1 and "Complaints Officer" not in text and "020 7946" not in text
    assert "rearranged for Friday" in text and "Sent: 16 November" not in text


def test_a_web_form_mail_from_noreply_opens_a_case_and_is_acknowledged(bot: Bot) -> None:
    bot.append(make_mail(frm="1MM website <noreply@forms.1mm-web.example>", subject="Contact form: complaint",
                         body="Name: Pat Smith\nMessage: The event was cancelled without notice.",
                         Reply_To="Pat Smith <pat@example.com>"), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    assert [letter.rcpt_tos for letter in bot.letters("acknowledgement")] == [["pat@example.com"]]
    case = bot.cases_json()[0]
    assert (case["complainant"], case["channel"]) == ("pat@example.com", "web")


def test_a_phone_complaint_logged_by_staff_opens_a_case_for_the_caller(bot: Bot) -> None:
    bot.extra["MAILBOT_TRUSTED_AUTHSERV_ID"] = "mx.1mm.org.uk"
    bot.append(make_mail(frm=PRIYA, subject="Phone call", Authentication_Results=AUTHENTICATED,
                         body="#on-behalf-of Pat Smith <pat@example.com> phone\n\nPat rang: the venue was locked."),
               internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    case = bot.cases_json()[0]
    assert (case["complainant"], case["channel"], case["status"]) == ("pat@example.com", "phone", "open")
    ack = bot.letters("acknowledgement")
    assert [letter.rcpt_tos for letter in ack] == [["pat@example.com"]]
    assert plain(ack[0]).startswith("Dear Pat Smith,")
    assert bot.letters("staff-redirect") == []


def test_a_staff_members_own_new_message_is_still_redirected(bot: Bot) -> None:
    bot.append(make_mail(frm=TOM, subject="My manager", body="I want to raise a grievance."), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    assert [letter.rcpt_tos for letter in bot.letters("staff-redirect")] == [["tom.okafor@1mm.org.uk"]]


def test_a_friday_evening_complaint_is_promised_monday(bot: Bot) -> None:
    friday = datetime(2026, 11, 20, 18, 0, tzinfo=UK)
    bot.append(make_mail(frm="jane@example.com", subject="Complaint"), internaldate=friday)
    bot.once(now=friday + timedelta(seconds=1))
    assert "reply to you by the end of Monday 23 November 2026" in plain(bot.letters("acknowledgement")[0])


def test_mailbot_case_shows_uk_local_times_and_json_keeps_the_offset(bot: Bot) -> None:
    summer = datetime(2026, 6, 15, 10, 0, tzinfo=UK)  # a Monday in BST
    bot.append(make_mail(frm="jane@example.com", subject="Complaint"), internaldate=summer)
    bot.once(now=summer + timedelta(seconds=1))
    text = bot.cli("case", "1MM-2026-0001").stdout
    assert "first_response: Tue 16 Jun 2026 17:30 BST" in text
    assert "opened_at    Mon 15 Jun 2026 10:00 BST" in text
    as_json = bot.case_json("1MM-2026-0001")
    assert datetime.fromisoformat(as_json["deadlines"]["first_response"]) == datetime(2026, 6, 16, 17, 30, tzinfo=UK)
    assert as_json["deadlines"]["first_response"].endswith("+00:00")  # ISO-8601 with its offset


def test_a_complaint_the_ceo_forwards_moves_the_case_to_writing_to_the_ceo_directly(bot: Bot) -> None:
    bot.extra["MAILBOT_TRUSTED_AUTHSERV_ID"] = "mx.1mm.org.uk"
    bot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="Missed call", body="Nobody called."),
               internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    ack = bot.letters("acknowledgement")[0].message
    inner = EmailMessage()
    inner["From"] = "Jane Doe <jane@example.com>"
    inner["To"] = CEO
    inner["Subject"] = "Please help"
    inner["Message-ID"] = "<jane-to-ceo@example.com>"
    inner["In-Reply-To"] = ack["Message-ID"]
    inner.set_content("I am writing to you because nobody has called me back.")
    outer = EmailMessage()
    outer["From"] = f"Alex Morgan <{CEO}>"
    outer["To"] = "complaints@1mm.org.uk"
    outer["Subject"] = "Fwd: Please help"
    outer["Message-ID"] = "<ceo-fwd@1mm.org.uk>"
    outer["Authentication-Results"] = AUTHENTICATED
    outer.set_content("Please handle this.")
    outer.add_attachment(inner)
    bot.append(outer.as_bytes(), internaldate=T0 + timedelta(days=1))
    bot.once(now=T0 + timedelta(days=1))
    case = bot.case_json("1MM-2026-0001")
    assert (case["stage"], case["assignee"]) == (3, CEO)
    # 14 calendar days from Tuesday 17 November: the end of Tuesday 1 December.
    assert datetime.fromisoformat(case["deadlines"]["stage_response"]).astimezone(UK).date().isoformat() == "2026-12-01"
    letter = plain(bot.letters("escalation")[0])
    assert "Thank you for writing to our Chief Executive" in letter and "Tuesday 1 December 2026" in letter
    assert "nobody has called me back" in plain(bot.letters("escalation-review")[0])


def test_a_complaint_by_post_sends_nothing_to_anyone_outside_and_asks_staff_to_post_the_letters(bot: Bot) -> None:
    bot.extra["MAILBOT_TRUSTED_AUTHSERV_ID"] = "mx.1mm.org.uk"
    bot.append(make_mail(frm=PRIYA, subject="A letter came", Authentication_Results=AUTHENTICATED,
                         body="#on-behalf-of Pat Smith, 12 High Street, Leeds LS1 1AA post\n\nThe venue was locked."),
               internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    case = bot.case_json("1MM-2026-0001")
    assert (case["channel"], case["postal_address"]) == ("post", "12 High Street, Leeds LS1 1AA")
    everyone = [address for letter in bot.letters() for address in letter.rcpt_tos]
    assert all(address.endswith("@1mm.org.uk") for address in everyone)  # nothing left the charity
    post = bot.letters("post-this-letter")
    assert len(post) == 1 and post[0].rcpt_tos == ["priya.shah@1mm.org.uk"]
    assert [part.get_filename() for part in post[0].message.iter_attachments()] == \
        ["1MM-2026-0001-acknowledgement.txt"]


def test_forged_authority_over_the_ceo_stage_moves_nothing(bot: Bot) -> None:
    """From outside, through Dovecot: a forward 'from the CEO' without our server's word, and a stranger's copy to
    the CEO naming a case and quoting someone else's 'Original Message', move no case and write to nobody named."""
    bot.extra["MAILBOT_TRUSTED_AUTHSERV_ID"] = "mx.1mm.org.uk"
    bot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="Missed call"), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    forged = make_mail(frm=f"Alex Morgan <{CEO}>", subject="Fwd: [1MM-2026-0001] Missed call",
                       body="---------- Forwarded message ---------\nFrom: Jane Doe <jane@example.com>\n\nPlease.")
    stranger = make_mail(frm="mallory@example.net", to=CEO, Cc="complaints@1mm.org.uk",
                         subject="[1MM-2026-0001] Escalate", body="-----Original Message-----\n"
                         "From: Victim <victim@example.org>\nSent: Monday\n\nHelp.")
    bot.append(forged, internaldate=T0 + timedelta(minutes=1))
    bot.append(stranger, internaldate=T0 + timedelta(minutes=2))
    bot.once(now=T0 + timedelta(minutes=3))
    assert bot.case_json("1MM-2026-0001")["stage"] == 1
    assert all("victim@example.org" not in letter.rcpt_tos for letter in bot.letters())
    assert bot.letters("escalation") == [] and bot.letters("escalation-review") == []


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def exchange_stamp(tenant: str) -> dict[str, str]:
    return {"X_MS_Exchange_Organization_AuthAs": "Internal", "X_MS_Exchange_CrossTenant_AuthAs": "Internal",
            "X_MS_Exchange_CrossTenant_Id": tenant}


def test_on_microsoft_365_the_tenants_inside_stamp_proves_staff_and_a_forged_one_does_not(bot: Bot) -> None:
    """MAILBOT_TRUST_EXCHANGE_INTERNAL: a phone complaint logged by staff through Exchange Online opens a case;
    the same message from outside, with the stamp copied from a real one but naming another tenant, or
    with a second 'Internal' written above Exchange's 'Anonymous', is only a message."""
    bot.extra["MAILBOT_TRUST_EXCHANGE_INTERNAL"] = TENANT
    logged = "#on-behalf-of Pat Smith <pat@example.com> phone\n\nPat rang: the venue was locked."
    bot.append(make_mail(frm=PRIYA, subject="Phone call", body=logged, **exchange_stamp(TENANT)), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    assert [c["complainant"] for c in bot.cases_json()] == ["pat@example.com"]

    forged_other = make_mail(frm=PRIYA, subject="Phone call", body=logged.replace("Pat Smith <pat@", "Sam <sam@"),
                             **exchange_stamp("0c2a9b0e-1111-4222-8333-944455556666"))
    exchange_says = {**exchange_stamp(TENANT), "X_MS_Exchange_Organization_AuthAs": "Anonymous"}
    forged_twice = b"X-MS-Exchange-Organization-AuthAs: Internal\r\n" + make_mail(
        frm=PRIYA, subject="Phone call", body=logged.replace("Pat Smith <pat@", "Kim <kim@"), **exchange_says)
    bot.append(forged_other, internaldate=T0 + timedelta(minutes=1))
    bot.append(forged_twice, internaldate=T0 + timedelta(minutes=2))
    bot.once(now=T0 + timedelta(minutes=3))
    complainants = [c["complainant"] for c in bot.cases_json()]
    assert "sam@example.com" not in complainants and "kim@example.com" not in complainants
    assert not bot.letters("acknowledgement", to="sam@example.com")
    assert not bot.letters("acknowledgement", to="kim@example.com")
