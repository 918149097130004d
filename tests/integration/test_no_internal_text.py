"""Issue 11.1: nothing from a staff-only letter ever reaches a complainant, whatever the staff member's client
did to the quote. Each reply below is written the way a real client writes it, around the real notification
the bot sent (taken from the SMTP sink), and goes through Dovecot like any staff reply."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest

from tests.integration.bot import Bot, make_mail

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)  # Monday
PRIYA = "Priya Shah <priya.shah@1mm.org.uk>"
ANSWER = "Hello Jane,\n\nI am sorry nobody called. I will ring you at 3pm today.\n\nPriya"
# What only staff ever see in a notification: none of it may appear in a letter to the complainant.
INTERNAL = ("Assigned to", "Commands go on", "complaints+1mm-", "Category:", "#resolve", "#note", "Complainant:",
            "New complaint on", "The complainant wrote", "Reply to this email")

Quote = Callable[[str, str, str], str]  # (answer, notification text, notification subject) -> reply body


def gmail(answer: str, old: str, subject: str) -> str:
    quoted = "\n".join("> " + line if line else ">" for line in old.splitlines())
    return f"{answer}\n\nOn Mon, 16 Nov 2026 at 10:05, One Million Mentors <complaints@1mm.org.uk> wrote:\n\n{quoted}\n"


def outlook_desktop(answer: str, old: str, subject: str) -> str:
    return (f"{answer}\n\n________________________________\nFrom: One Million Mentors <complaints@1mm.org.uk>\n"
            f"Sent: 16 November 2026 10:05\nTo: Priya Shah <priya.shah@1mm.org.uk>\nSubject: {subject}\n\n{old}\n")


def outlook_web(answer: str, old: str, subject: str) -> str:
    return (f"{answer}\n\nFrom: One Million Mentors <complaints@1mm.org.uk>\nSent: Monday, November 16, 2026 "
            f"10:05 AM\nTo: Priya Shah <priya.shah@1mm.org.uk>\nSubject: {subject}\n\n{old}\n")


def outlook_mobile(answer: str, old: str, subject: str) -> str:
    return (f"{answer}\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n________________________________\n"
            f"From: One Million Mentors <complaints@1mm.org.uk>\nSent: Monday, November 16, 2026 10:05:12 AM\n"
            f"To: Priya Shah <priya.shah@1mm.org.uk>\nSubject: {subject}\n\n{old}\n")


def apple_mail(answer: str, old: str, subject: str) -> str:
    quoted = "\n".join("> " + line for line in old.splitlines())
    return (f"{answer}\n\nSent from my iPhone\n\n> On 16 Nov 2026, at 10:05, One Million Mentors "
            f"<complaints@1mm.org.uk> wrote:\n> \n{quoted}\n")


def thunderbird_bottom_posted(answer: str, old: str, subject: str) -> str:
    quoted = "\n".join("> " + line for line in old.splitlines())
    return f"On 16/11/2026 10:05, One Million Mentors wrote:\n{quoted}\n\n{answer}\n"


def inline_between_quoted_lines(answer: str, old: str, subject: str) -> str:
    lines = ["> " + line for line in old.splitlines()]
    at = next(i for i, line in enumerate(lines) if "promised a call" in line) + 1
    one_line = " ".join(answer.split("\n\n")[1:2]) if answer else ""
    return "\n".join(lines[:at] + ([one_line] if one_line else []) + lines[at:]) + "\n"


def forwarded(answer: str, old: str, subject: str) -> str:
    return (f"{answer}\n\n---------- Forwarded message ---------\nFrom: One Million Mentors "
            f"<complaints@1mm.org.uk>\nDate: Mon, 16 Nov 2026 at 10:05\nSubject: {subject}\n"
            f"To: <priya.shah@1mm.org.uk>\n\n\n{old}\n")


def pasted_without_any_marker(answer: str, old: str, subject: str) -> str:
    return f"{answer}\n\n{old}\n"


def rewrapped_without_prefix(answer: str, old: str, subject: str) -> str:
    wrapped = "\n".join(textwrap.fill(line, 38) if line else "" for line in old.splitlines())
    return f"{answer}\n\n-----Original Message-----\n{wrapped}\n"


CLIENTS: dict[str, Quote] = {
    "gmail top-posted": gmail,
    "outlook desktop": outlook_desktop,
    "outlook web": outlook_web,
    "outlook mobile": outlook_mobile,
    "apple mail": apple_mail,
    "thunderbird bottom-posted": thunderbird_bottom_posted,
    "inline answer between quoted lines": inline_between_quoted_lines,
    "forwarded back": forwarded,
    "quote pasted without any marker": pasted_without_any_marker,
    "quote re-wrapped without prefixes": rewrapped_without_prefix,
}


def plain(letter) -> str:  # type: ignore[no-untyped-def]
    return letter.message.get_body(preferencelist=("plain",)).get_content()


def open_case(bot: Bot):  # type: ignore[no-untyped-def]
    bot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="Nobody called me back",
                         body="I was promised a call back a week ago."), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    (note,) = bot.letters("staff-notification")
    return note


def reply(note, body: str, html: str | None = None, attachment: bytes | None = None) -> bytes:  # type: ignore[no-untyped-def]
    msg = EmailMessage()
    msg["From"], msg["To"] = PRIYA, note.message["Reply-To"]
    msg["Subject"] = f"Re: {note.message['Subject']}"
    msg["Date"] = format_datetime(T0 + timedelta(hours=1))
    msg["Message-ID"] = make_msgid(domain="1mm.org.uk")
    msg["In-Reply-To"] = msg["References"] = note.message["Message-ID"]
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="letter.pdf")
    return msg.as_bytes()


def assert_nothing_internal(text: str) -> None:
    for marker in INTERNAL:
        assert marker not in text, f"{marker!r} reached the complainant:\n{text}"


@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_reply_from_any_client_relays_only_the_staff_members_words(bot: Bot, client: str) -> None:
    note = open_case(bot)
    subject = str(note.message["Subject"])
    answer = ANSWER if client != "inline answer between quoted lines" else "Hello\n\nI will ring you at 3pm today."
    bot.append(reply(note, CLIENTS[client](answer, plain(note), subject)))
    bot.once(now=T0 + timedelta(hours=1))
    (relayed,) = bot.letters("staff-reply")
    assert relayed.rcpt_tos == ["jane@example.com"]
    text = plain(relayed)
    assert "I will ring you at 3pm today." in text
    assert_nothing_internal(text)
    assert "promised a call back" not in text  # the quoted complaint is not sent back either


@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_reply_with_nothing_new_relays_nothing_and_says_why(bot: Bot, client: str) -> None:
    note = open_case(bot)
    bot.append(reply(note, CLIENTS[client]("", plain(note), str(note.message["Subject"])), attachment=b"%PDF-1.4"))
    bot.once(now=T0 + timedelta(hours=1))
    assert [l for l in bot.sink.messages() if "jane@example.com" in l.rcpt_tos and
            l.message["X-Mailbot-Letter"] != "acknowledgement"] == []
    (confirmation,) = bot.letters("command-result")
    assert confirmation.rcpt_tos == ["priya.shah@1mm.org.uk"]
    text = plain(confirmation)
    assert "nothing was sent to the complainant" in text and "no text of its own" in text
    assert "attachment" in text
    events = bot.case_json("1MM-2026-0001")["events"]
    assert any(e["type"] == "staff_reply_not_relayed" for e in events)


def test_an_html_only_reply_quoting_the_notification_in_an_unknown_container(bot: Bot) -> None:
    note = open_case(bot)
    old_html = note.message.get_body(preferencelist=("html",)).get_content()
    html = (f"<html><body><p>I will ring you at 3pm today.</p><p>Priya</p><hr>"
            f"<div id='x-unknown-client-quote'>{old_html}</div></body></html>")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = PRIYA, note.message["Reply-To"], "RE: " + str(note.message["Subject"])
    msg["Message-ID"] = make_msgid(domain="1mm.org.uk")
    msg["In-Reply-To"] = note.message["Message-ID"]
    msg.set_content(html, subtype="html")
    bot.append(msg.as_bytes())
    bot.once(now=T0 + timedelta(hours=1))
    (relayed,) = bot.letters("staff-reply")
    text = plain(relayed)
    assert "I will ring you at 3pm today." in text
    assert_nothing_internal(text)


def test_an_outcome_typed_inline_never_carries_the_notification(bot: Bot) -> None:
    note = open_case(bot)
    body = "#resolve upheld\n" + outlook_desktop("We are sorry; the call was missed.", plain(note),
                                                 str(note.message["Subject"]))
    bot.append(reply(note, body))
    bot.once(now=T0 + timedelta(days=1))
    (outcome,) = bot.letters("outcome")
    text = plain(outcome)
    assert "the call was missed" in text
    assert_nothing_internal(text.replace("#", ""))
