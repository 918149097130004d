"""Hostile mail through the whole intake: every message is filed, and every letter it causes can be delivered.

Each message below is built to break something: NUL and undecodable bytes in bodies and names, MIME nested
deeper than Python recurses, thousands of parts or headers, names and types thousands of characters long. None
may stop intake, none may be dropped, and no letter it causes may carry a line over RFC 5322's 998 characters
(Microsoft 365 refuses one: 5.6.211) or a NUL.
"""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Callable

import pytest
from sqlmodel import select

from mailbot.store.db import session as new_session
from mailbot.store.models import MailMessage
from tests.services.conftest import World


def _head(n: int, extra: bytes = b"", content_type: bytes = b"text/plain; charset=utf-8",
          frm: bytes | None = None) -> bytes:
    return (b"From: " + (frm or b"sender%d@example.org" % n) + b"\r\nTo: complaints@1mm.org.uk\r\n"
            b"Subject: Complaint %d\r\nMessage-ID: <hostile%d@example.org>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: " % (n, n) + content_type + b"\r\n" + extra)


def _nested(n: int, depth: int) -> bytes:
    body, content_type = b"text\r\n", b"text/plain"
    for level in range(depth):
        boundary = b"b%d" % level
        body = (b"--" + boundary + b"\r\nContent-Type: " + content_type + b"\r\n\r\n" + body + b"\r\n--" + boundary
                + b"--\r\n")
        content_type = b'multipart/mixed; boundary="' + boundary + b'"'
    return _head(n, content_type=content_type) + b"\r\n" + body


def _with_file(n: int, part_headers: bytes) -> bytes:
    return (_head(n, content_type=b'multipart/mixed; boundary="X"') + b"\r\n--X\r\nContent-Type: text/plain\r\n\r\n"
            b"My complaint is attached.\r\n--X\r\n" + part_headers + b"\r\n\r\nJVBERi0xLjQ=\r\n--X--\r\n")


HOSTILE = {
    "NUL in the body": lambda n: _head(n) + b"\r\nI have a \x00 complaint.\r\n",
    "Latin-1 declared as UTF-8": lambda n: _head(n) + b"\r\nCaf\xe9 \xff\xfe complaint.\r\n",
    "an unknown charset": lambda n: _head(n, content_type=b"text/plain; charset=x-unknown-42") + b"\r\nhi \xe9\r\n",
    "broken UTF-16": lambda n: _head(n, content_type=b"text/plain; charset=utf-16") + b"\r\n\xff\xfeh\x00i\x00\x00\r\n",
    "base64 of NUL": lambda n: _head(n, b"Content-Transfer-Encoding: base64\r\n") + b"\r\nAAAAAGhpAAA=\r\n",
    "broken base64": lambda n: _head(n, b"Content-Transfer-Encoding: base64\r\n") + b"\r\n!!!!AAA=A==\x00\r\n",
    "quoted-printable NUL": lambda n: _head(n, b"Content-Transfer-Encoding: quoted-printable\r\n")
    + b"\r\nhi=00there=ZZ=\r\n",
    "MIME nested 400 deep": lambda n: _nested(n, 400),
    "MIME nested 2,000 deep": lambda n: _nested(n, 2000),
    "3,000 parts": lambda n: _head(n, content_type=b'multipart/mixed; boundary="X"') + b"\r\n" + b"".join(
        b"--X\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"f%d.txt\"\r\n\r\nx\r\n" % k
        for k in range(3000)) + b"--X--\r\n",
    "20,000 headers": lambda n: _head(n, b"".join(b"X-H%d: v\r\n" % k for k in range(20000))) + b"\r\nbody\r\n",
    "a file name of 5,000 characters": lambda n: _with_file(
        n, b'Content-Type: application/pdf; name="' + b"a" * 5000 + b'.pdf"\r\nContent-Disposition: attachment'),
    "a file name of 300 emoji": lambda n: _with_file(
        n, b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''"
        + b"%F0%9F%98%80" * 300 + b".pdf"),
    "a file name with NUL and slashes": lambda n: _with_file(
        n, b"Content-Type: application/pdf\r\nContent-Disposition: attachment; "
        b"filename*=utf-8''..%2F..%2Fetc%00%2Fpasswd"),
    "a media type of 3,000 characters": lambda n: _with_file(
        n, b"Content-Type: application/" + b"p" * 3000 + b"\r\nContent-Disposition: attachment; filename=a.pdf"),
    "a media type with quotes": lambda n: _with_file(
        n, b'Content-Type: application/pdf\\";\x7f="x\r\nContent-Disposition: attachment; filename=a.pdf'),
    "a subject of 200,000 characters": lambda n: _head(n, b"Subject: " + b"x" * 200000 + b"\r\n") + b"\r\nbody\r\n",
    "a subject of one long UTF-8 word": lambda n: _head(n, ("Subject: " + "\u00e9" * 3000 + "\r\n").encode())
    + b"\r\nbody\r\n",
    "an encoded subject of one long word": lambda n: _head(
        n, b"Subject: =?utf-8?b?" + base64.b64encode(("\u00fc" * 2000).encode()) + b"?=\r\n") + b"\r\nbody\r\n",
    "a name of 50,000 characters": lambda n: _head(n, frm=b'"' + b"N" * 50000 + b'" <big@example.org>')
    + b"\r\nbody\r\n",
    "a name of one long UTF-8 word": lambda n: _head(n, frm=('"' + "\u0141" * 3000 + '" <nm@example.org>').encode())
    + b"\r\nbody\r\n",
    "a Reply-To of 300 characters": lambda n: _head(n, b"Reply-To: " + b"r" * 300 + b"@example.org\r\n")
    + b"\r\nbody\r\n",
    "5,000 References": lambda n: _head(n, b"References: " + b" ".join(b"<r%d@x>" % k for k in range(5000))
                                        + b"\r\nIn-Reply-To: <" + b"z" * 5000 + b"@x>\r\n") + b"\r\nbody\r\n",
    "NUL in a reference in the subject": lambda n: _head(n, b"Subject: Re: [1MM-2026-0001\x00] hi\r\n")
    + b"\r\nbody\r\n",
    "no header at all": lambda n: b"\r\n\r\njust a body\x00\r\n",
    "every byte value": lambda n: bytes(range(256)) * 40,
    "a delivery report with hostile fields": lambda n: _head(
        n, content_type=b'multipart/report; report-type=delivery-status; boundary="X"',
        frm=b"MAILER-DAEMON@example.org") + b"\r\n--X\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--X\r\n"
    b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; "
    + b"a" * 400 + b"@x\r\nAction: failed\r\nStatus: 5.0.0\r\n\r\n--X\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Message-ID: <" + b"q" * 4000 + b"@x>\r\n\r\nx\r\n--X--\r\n",
    "an enclosed message with NUL": lambda n: _head(n, content_type=b'multipart/mixed; boundary="X"')
    + b"\r\n--X\r\nContent-Type: message/rfc822\r\n\r\nFrom: a\x00@b\r\nSubject: \xff\x00\r\n\r\ninner \x00\r\n--X--\r\n",
    "5,000 Content-Type parameters": lambda n: _head(n, content_type=b"text/plain; " + b"; ".join(
        b"p%d=v" % k for k in range(5000))) + b"\r\nbody\r\n",
    "a broken RFC 2231 name": lambda n: _with_file(
        n, b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename*0*=x-bad''%FF%00; "
        b"filename*1=b.pdf"),
}


@pytest.mark.parametrize("build", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_mail_is_filed_and_every_letter_it_causes_can_be_delivered(
        world: World, build: Callable[[int], bytes]) -> None:
    raw = build(7)
    outcome = world.receive(raw)
    assert outcome.action in {"new_case", "unreadable", "automated"}, outcome
    after = world.receive(_head(8) + b"\r\nAn ordinary complaint after it.\r\n")
    assert after.action == "new_case"  # intake goes on
    with new_session(world.app.engine) as s:
        kept = s.exec(select(MailMessage.raw).where(MailMessage.direction == "in")).all()
        letters = s.exec(select(MailMessage.kind, MailMessage.raw).where(MailMessage.direction == "out")).all()
    assert raw in [bytes(r) for r in kept]  # kept as it came
    assert letters  # the ordinary complaint's, at least
    for kind, letter in letters:
        letter = bytes(letter)
        assert max(len(line) for line in letter.split(b"\r\n")) <= 998, kind
        assert b"\x00" not in letter and b"\n" not in letter.replace(b"\r\n", b""), kind
        parsed = email.message_from_bytes(letter, policy=email.policy.default)
        assert parsed["To"] and parsed["X-Mailbot-Letter"] == kind
