"""Finding the original sender of a forwarded message, as the common clients forward."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from mailbot.domain.forwards import forwarded
from mailbot.domain.mail import parse_mail


def message(subject: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alex Morgan <alex.morgan@1mm.org.uk>"
    msg["To"] = "complaints@1mm.org.uk"
    msg["Subject"] = subject
    msg["Message-ID"] = "<fwd-1@1mm.org.uk>"
    msg.set_content(body)
    return msg.as_bytes()


GMAIL = ("Please handle.\n\n---------- Forwarded message ---------\nFrom: Pat Smith <pat@example.com>\n"
         "Date: Mon, 16 Nov 2026 at 10:00\nSubject: Still unhappy\nTo: <alex.morgan@1mm.org.uk>\n\n"
         "I am writing to you directly because nothing has changed.")
OUTLOOK = ("For the complaints team.\n\n________________________________\nFrom: Pat Smith <pat@example.com>\n"
           "Sent: 16 November 2026 10:00\nTo: Alex Morgan <alex.morgan@1mm.org.uk>\nSubject: Still unhappy\n\n"
           "I am writing to you directly.")
OUTLOOK_MAILTO = ("FYI\n\n-----Original Message-----\nFrom: Pat Smith [mailto:pat@example.com]\n"
                  "Sent: Monday, November 16, 2026 10:00 AM\nSubject: RE: [1MM-2026-0001] Outcome\n\nStill unhappy.")
APPLE = ("\n\nBegin forwarded message:\n\nFrom: \"Pat Smith\" <pat@example.com>\nSubject: Still unhappy\n"
         "Date: 16 November 2026 at 10:00:00 GMT\nTo: alex.morgan@1mm.org.uk\n\nPlease look at this again.")


@pytest.mark.parametrize(
    "subject, body, sender, words",
    [
        ("Fwd: Still unhappy", GMAIL, "pat@example.com", "nothing has changed"),
        ("FW: Still unhappy", OUTLOOK, "pat@example.com", "writing to you directly"),
        ("FW: RE: [1MM-2026-0001] Outcome", OUTLOOK_MAILTO, "pat@example.com", "Still unhappy"),
        ("Fwd: Still unhappy", APPLE, "pat@example.com", "look at this again"),
        ("Re: Still unhappy", "Thanks, I will look at it.", None, None),  # a reply, not a forward
        ("Fwd: notes", "Fwd with nothing forwarded in it.", None, None),
    ],
)
def test_inline_forwards(subject: str, body: str, sender: str | None, words: str | None) -> None:
    found = forwarded(parse_mail(message(subject, body)))
    assert (found.sender if found else None) == sender
    if found is not None and words is not None:
        assert words in found.text and "Sent:" not in found.text and "To:" not in found.text


def test_a_message_forwarded_as_an_attachment() -> None:
    inner = EmailMessage()
    inner["From"] = "Pat Smith <pat@example.com>"
    inner["To"] = "alex.morgan@1mm.org.uk"
    inner["Subject"] = "Re: [1MM-2026-0001] The outcome"
    inner["Message-ID"] = "<pat-2@example.com>"
    inner["In-Reply-To"] = "<outcome-1.mailbot@1mm.org.uk>"
    inner.set_content("Please review this yourself.")
    outer = EmailMessage()
    outer["From"] = "alex.morgan@1mm.org.uk"
    outer["To"] = "complaints@1mm.org.uk"
    outer["Subject"] = "Fwd: Re: [1MM-2026-0001] The outcome"
    outer.set_content("See attached.")
    outer.add_attachment(inner)
    found = forwarded(parse_mail(outer.as_bytes()))
    assert found is not None and (found.sender, found.name) == ("pat@example.com", "Pat Smith")
    assert found.message_ids == ("pat-2@example.com", "outcome-1.mailbot@1mm.org.uk")
    assert "review this yourself" in found.text
