"""Mail that tests build more than once: kept here so every test sends the same thing."""

from __future__ import annotations

from mailbot.domain.mail import InboundMail


def dsn_bounce(original_message_id: str, recipient: str, ref: str) -> bytes:
    """A Postfix-style delivery status notification saying our letter ``original_message_id`` to ``recipient``
    failed for good (5.1.1), quoting the letter's headers as text/rfc822-headers."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
        "To: complaints@1mm.org.uk\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{original_message_id}>\r\n"
        f"From: complaints@1mm.org.uk\r\nTo: {recipient}\r\nSubject: [{ref}] x\r\n\r\n--B--\r\n"
    ).encode()


def every_text(mail: InboundMail) -> list[str]:
    """Every piece of text a parsed message carries (what the store may write into text columns)."""
    texts = [mail.message_id, mail.subject, mail.from_addr, mail.from_name, mail.date or "", mail.text,
             mail.html or "", *mail.reply_to, *mail.to, *mail.cc, *mail.delivered_to, *mail.in_reply_to,
             *mail.references, *mail.defects, *mail.part_types]
    for name, values in mail.headers.items():
        texts += [name, *values]
    for attachment in mail.attachments:
        texts += [attachment.filename, attachment.content_type]
    return texts
