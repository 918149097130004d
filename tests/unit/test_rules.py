"""classify_automated: the bot must never answer a machine, and must always answer a person."""

from __future__ import annotations

import pytest

from mailbot.domain.mail import parse_mail
from mailbot.domain.rules import (
    RULES,
    AutomatedVerdict,
    classify_automated,
    is_own_address,
)
from tests.samples import dsn_bounce

OWN = frozenset({"complaints@1mm.org.uk", "staff@1mm.org.uk"})
SUFFIX = "@mailbot.1mm.org.uk"


def classify(raw: bytes) -> AutomatedVerdict:
    return classify_automated(parse_mail(raw), own_addresses=OWN, own_message_id_suffix=SUFFIX)


def mail(extra_headers: str = "", *, sender: str = "Jane Doe <jane@example.org>", subject: str = "Re: My complaint",
         body: str = "Thank you, I will wait.\n") -> bytes:
    headers = f"From: {sender}\nTo: complaints@1mm.org.uk\nSubject: {subject}\nMessage-ID: <p1@example.org>\n"
    return (headers + extra_headers.strip("\n") + ("\n" if extra_headers else "") + "\n" + body).encode()


DSN = b"""From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: complaints@1mm.org.uk
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn1@mx.example.net>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.
--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Original-Recipient: rfc822;Gone@Example.org
Final-Recipient: rfc822;gone-alias@example.org
Action: failed
Status: 5.1.1

Final-Recipient: rfc822;slow@example.org
Action: delayed
Status: 4.4.1
--B
Content-Type: message/rfc822

From: complaints@1mm.org.uk
To: gone@example.org
Subject: Your complaint 1MM-2026-0042
Message-ID: <letter-42@mailbot.1mm.org.uk>

We have received your complaint.
--B--
"""

HEADERS_ONLY_DSN = b"""From: postmaster@example.net
Subject: Delivery Status Notification (Failure)
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Delivery failed.
--B
Content-Type: text/rfc822-headers

From: complaints@1mm.org.uk
Message-ID: <letter-7@mailbot.1mm.org.uk>
Subject: Your complaint
--B--
"""

EXIM_TEXT_BOUNCE = b"""From: Mail Delivery System <Mailer-Daemon@mail.example.net>
To: complaints@1mm.org.uk
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: nobody@example.net

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  nobody@example.net
    SMTP error from remote mail server after RCPT TO:<nobody@example.net>:
    550 5.1.1 User unknown

------ This is a copy of the message, including all the headers. ------

Message-ID: <letter-9@mailbot.1mm.org.uk>
From: complaints@1mm.org.uk
Subject: Your complaint
"""

READ_RECEIPT = b"""From: Jane Doe <jane@example.org>
Subject: Read: Your complaint
Content-Type: multipart/report; report-type=disposition-notification; boundary="B"

--B
Content-Type: text/plain

Your message was read.
--B
Content-Type: message/disposition-notification

Final-Recipient: rfc822;jane@example.org
Disposition: manual-action/MDN-sent-manually; displayed
--B--
"""


@pytest.mark.parametrize(
    ("raw", "kind", "reason"),
    [
        (mail(), "human", None),
        (mail("Auto-Submitted: no"), "human", None),
        (mail(f"In-Reply-To: <letter-1{SUFFIX}>\nReferences: <letter-1{SUFFIX}>"), "human", None),
        (mail(subject="Complaint about my mentor's out of office behaviour"), "human", None),
        (mail("X-MS-Exchange-Inbox-Rules-Loop: jane@example.org"), "human", None),
        (mail(sender="complaints@1mm.org.uk"), "own_mail", "own address as sender: complaints@1mm.org.uk"),
        (mail(sender="Staff <Complaints+case42@1MM.org.uk>"), "own_mail", "own address as sender: complaints+case42@1mm.org.uk"),
        (mail("X-Mailbot-Letter: acknowledgement"), "loop", "our own letter: X-Mailbot-Letter header"),
        (mail().replace(b"<p1@example.org>", f"<x{SUFFIX}>".encode()), "loop", f"our own letter: Message-ID x{SUFFIX}"),
        (mail("X-Loop: helpdesk@example.org"), "loop", "loop header: x-loop: helpdesk@example.org"),
        (mail("X-OTRS-Loop: yes"), "loop", "loop header: x-otrs-loop: yes"),
        (DSN, "bounce", "delivery status notification: multipart/report; report-type=delivery-status"),
        (HEADERS_ONLY_DSN, "bounce", "delivery status notification: multipart/report; report-type=delivery-status"),
        (EXIM_TEXT_BOUNCE, "bounce", "delivery status notification: X-Failed-Recipients"),
        (READ_RECEIPT, "delivery_report", "read receipt: multipart/report; report-type=disposition-notification"),
        (mail("Auto-Submitted: auto-replied"), "auto_reply", "auto-submitted: auto-replied"),
        (mail("Auto-Submitted: auto-generated"), "auto_reply", "auto-submitted: auto-generated"),
        (mail('Auto-Submitted: auto-replied; owner-email="jane@example.org"'), "auto_reply", "auto-submitted: auto-replied"),
        (mail("X-Autoreply: yes"), "auto_reply", "auto-reply header: x-autoreply: yes"),
        (mail("X-Autorespond: yes"), "auto_reply", "auto-reply header: x-autorespond: yes"),
        (mail("X-Auto-Response-Suppress: All"), "auto_reply", "auto-reply header: x-auto-response-suppress: All"),
        (mail("Precedence: auto_reply"), "auto_reply", "auto-reply header: precedence: auto_reply"),
        (mail(subject="Out of Office: Re: complaint"), "auto_reply", "out-of-office subject: Out of Office: Re: complaint"),
        (mail(subject="Automatic reply: Your complaint"), "auto_reply", "out-of-office subject: Automatic reply: Your complaint"),
        (mail(subject="Auto: Your complaint"), "auto_reply", "out-of-office subject: Auto: Your complaint"),
        (mail(subject="Abwesenheitsnotiz: Ihre Beschwerde"), "auto_reply", "out-of-office subject: Abwesenheitsnotiz: Ihre Beschwerde"),
        (mail(subject="=?utf-8?q?R=C3=A9ponse_automatique?="), "auto_reply", "out-of-office subject: Réponse automatique"),
        (mail(subject="Autosvar: Klagomål"), "auto_reply", "out-of-office subject: Autosvar: Klagomål"),
        (mail("Precedence: list"), "list", "precedence: list"),
        (mail("List-Id: <mentors.lists.example.org>"), "list", "mailing-list header: list-id"),
        (mail("List-Unsubscribe: <mailto:leave@example.org>"), "list", "mailing-list header: list-unsubscribe"),
        (mail("Precedence: bulk"), "bulk", "precedence: bulk"),
        (mail("Precedence: junk"), "bulk", "precedence: junk"),
        (mail(sender="noreply@service.example.com"), "robot_sender", "robot sender: noreply@service.example.com"),
        (mail(sender="no-reply@service.example.com"), "robot_sender", "robot sender: no-reply@service.example.com"),
        (mail(sender="do-not-reply@service.example.com"), "robot_sender", "robot sender: do-not-reply@service.example.com"),
        (mail(sender="DoNotReply@service.example.com"), "robot_sender", "robot sender: donotreply@service.example.com"),
        (mail(sender="bounces@lists.example.com"), "robot_sender", "robot sender: bounces@lists.example.com"),
        (mail(sender="postmaster@example.com"), "robot_sender", "robot sender: postmaster@example.com"),
        (mail("Return-Path: <>"), "robot_sender", "null return path: Return-Path: <>"),
        (mail(sender="MAILER-DAEMON@example.com", subject="Returned mail: see transcript for details"), "bounce",
         "bounce from mail system: bounce subject from mailer-daemon@example.com"),
    ],
)
def test_classification(raw: bytes, kind: str, reason: str | None) -> None:
    verdict = classify(raw)
    assert verdict.kind == kind
    assert verdict.automated is (kind != "human")
    if reason is None:
        assert verdict.reasons == ()
    else:
        assert reason in verdict.reasons


def test_first_kind_wins_but_every_reason_is_kept() -> None:
    verdict = classify(mail("Auto-Submitted: auto-replied\nPrecedence: bulk\nList-Id: <x.example.org>",
                            subject="Out of office"))
    assert verdict.kind == "auto_reply"
    assert verdict.reasons == (
        "auto-submitted: auto-replied",
        "out-of-office subject: Out of office",
        "mailing-list header: list-id",
        "precedence: bulk",
    )


@pytest.mark.parametrize(
    ("raw", "failed", "bounced_ids"),
    [
        (DSN, ("gone@example.org",), ("letter-42@mailbot.1mm.org.uk",)),
        (HEADERS_ONLY_DSN, (), ("letter-7@mailbot.1mm.org.uk",)),
        (EXIM_TEXT_BOUNCE, ("nobody@example.net",), ("letter-9@mailbot.1mm.org.uk",)),
    ],
)
def test_bounce_details(raw: bytes, failed: tuple[str, ...], bounced_ids: tuple[str, ...]) -> None:
    verdict = classify(raw)
    assert verdict.failed_recipients == failed
    assert verdict.bounced_message_ids == bounced_ids


def test_a_bounce_naming_ids_or_addresses_with_control_characters_leaves_them_out() -> None:
    # The report's parts are read as they came; a NUL there reached a text column (and PostgreSQL refuses it).
    raw = dsn_bounce("letter-1\x00@mailbot.1mm.org.uk", "gone\x00@example.org", "1MM-2026-0001").replace(
        b"Final-Recipient: rfc822; gone\x00@example.org\r\n",
        b"Final-Recipient: rfc822; gone\x00@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        b"Final-Recipient: rfc822; real@example.org\r\n")
    verdict = classify(raw)
    assert verdict.kind == "bounce"
    assert verdict.failed_recipients == ("real@example.org",)
    assert verdict.bounced_message_ids == ()


def test_delayed_recipient_is_not_reported_as_failed() -> None:
    assert "slow@example.org" not in classify(DSN).failed_recipients


def test_bounce_details_only_on_bounces() -> None:
    verdict = classify(mail("Auto-Submitted: auto-replied", body="Message-ID: <letter-1@mailbot.1mm.org.uk>\n"))
    assert (verdict.bounced_message_ids, verdict.failed_recipients) == ((), ())


@pytest.mark.parametrize(
    ("address", "own"),
    [
        ("complaints@1mm.org.uk", True),
        ("Complaints@1MM.org.uk", True),
        ("<complaints@1mm.org.uk>", True),
        ("complaints+case-42@1mm.org.uk", True),
        ("complaints+@1mm.org.uk", True),
        ("complaints@1mm.org.uk.evil.example", False),
        ("complaints@other.example", False),
        ("notcomplaints@1mm.org.uk", False),
        ("someone+complaints@1mm.org.uk", False),
        ("", False),
    ],
)
def test_is_own_address(address: str, own: bool) -> None:
    assert is_own_address(address, OWN) is own


def test_every_rule_kind_is_a_documented_kind() -> None:
    documented = {"bounce", "delivery_report", "auto_reply", "list", "bulk", "loop", "own_mail", "robot_sender"}
    assert {rule.kind for rule in RULES} == documented


@pytest.mark.parametrize("raw", [b"", b"\x00\xff" * 50, b"Content-Type: multipart/report; report-type=delivery-status\n\n--"])
def test_garbage_is_classified_without_raising(raw: bytes) -> None:
    assert isinstance(classify(raw), AutomatedVerdict)


# ---- Issue 11.11: reports, robot local parts and list servers the first wave had not met ---------------------

ARF = b"""From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>
To: complaints@1mm.org.uk
Subject: FW: Your complaint
Message-ID: <arf1@yahoo.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="A"

--A
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.1.
--A
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Yahoo!-Mail-Feedback/1.0
Version: 1
--A--
"""

BARE_FEEDBACK_PART = b"""From: Abuse Desk <reports@example.net>
To: complaints@1mm.org.uk
Subject: Abuse report
Message-ID: <arf2@example.net>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="A"

--A
Content-Type: text/plain

A report.
--A
Content-Type: message/feedback-report

Feedback-Type: abuse
--A--
"""

OTHER_REPORT = b"""From: Some MTA <reports@example.net>
To: complaints@1mm.org.uk
Subject: Report
Message-ID: <rep@example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=some-new-report; boundary="A"

--A
Content-Type: text/plain

Machine report.
--A--
"""


@pytest.mark.parametrize(
    "case, raw",
    [
        ("ARF feedback report", ARF),
        ("a message/feedback-report part", BARE_FEEDBACK_PART),
        ("any multipart/report", OTHER_REPORT),
        ("Hotmail abuse report", mail("X-HmXmrOriginalRecipient: <jane@hotmail.com>", sender="staff@hotmail.com")),
        ("post_master", mail(sender="post_master@example.jp")),
        ("Post-Master", mail(sender="Post-Master@example.de")),
        ("mail-daemon", mail(sender="mail-daemon@example.com")),
        ("majordomo owner", mail(sender="owner-parents@lists.example.org")),
        ("mailman -bounces", mail(sender="parents-bounces@lists.example.org")),
        ("list -request", mail(sender="parents-request@lists.example.org")),
        ("sympa", mail(sender="sympa@lists.example.org")),
        ("listserv", mail(sender="LISTSERV@lists.example.edu")),
        ("fml error mail", mail("X-MLServer: fml [fml 4.0.3 release (20011202/4.0.3)]\nX-ML-Name: parents\n"
                                "X-ML-Count: 1234", sender="parents@ml.example.jp")),
        ("Mailing-List (Google Groups, ezmlm)", mail("Mailing-list: list parents@googlegroups.com; contact "
                                                      "parents+owners@googlegroups.com", sender="x@example.com")),
        ("List-Subscribe only", mail("List-Subscribe: <mailto:parents-join@lists.example.org>")),
        ("List-Help only", mail("List-Help: <mailto:parents-request@lists.example.org?subject=help>")),
        ("list-server Sender", mail("Sender: owner-parents@lists.example.org")),
        ("bounce-tagged sender", mail(sender="bounce-12345-abc@mailer.example.com")),
    ],
)
def test_machines_the_first_wave_missed_are_never_answered(case: str, raw: bytes) -> None:
    verdict = classify(raw)
    assert verdict.automated, f"{case}: {verdict}"


@pytest.mark.parametrize(
    "sender, extra",
    [
        ("Jane Doe <jane@example.org>", "Sender: Jane Doe <jane@example.org>"),
        ("Business Owner <business-owner@example.co.uk>", ""),
        ("Master Chef <master.chef@example.com>", ""),
        ("Postman Pat <pat.postman@example.com>", ""),
        ("Ian Request <ian.requester@example.com>", ""),
    ],
)
def test_people_whose_addresses_look_a_little_like_robots_are_answered(sender: str, extra: str) -> None:
    assert not classify(mail(extra, sender=sender)).automated
