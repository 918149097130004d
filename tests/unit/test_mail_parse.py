"""parse_mail: what the bot reads out of raw bytes, including the ugly cases."""

from __future__ import annotations

import hashlib
import importlib
import random
from datetime import datetime, timezone
from email.utils import parseaddr

import pytest

from mailbot.domain.mail import (
    REUSED_MESSAGE_ID,
    InboundMail,
    bare_address,
    extract_message_ids,
    header_safe,
    html_to_text,
    parse_mail,
    same_message,
    with_own_id,
)
from mailbot.domain.mail.html import HTML_CUT_NOTE, HTML_TEXT_LIMIT
from mailbot.domain.mail.parse import UNSTORABLE_REPLACED, _parse
from tests.samples import every_text


def message(headers: str, body: str = "Hello.\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).encode("utf-8")


PLAIN = message(
    """
From: "Jane Doe" <Jane.Doe@Example.ORG>
To: Complaints <complaints@1mm.org.uk>, other@example.org
Cc: "Smith, John" <john@example.org>
Reply-To: jane.private@example.org
Subject: Re: My complaint
Message-ID: <abc.123@example.org>
In-Reply-To: <letter-1@mailbot.1mm.org.uk>
References: <letter-0@mailbot.1mm.org.uk>
 <letter-1@mailbot.1mm.org.uk>
Delivered-To: complaints@1mm.org.uk
X-Original-To: complaints+case42@1mm.org.uk
Date: Mon, 02 Mar 2026 10:15:00 +0000
""",
    "I am still waiting for an answer.\n",
)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("from_addr", "jane.doe@example.org"),
        ("from_name", "Jane Doe"),
        ("to", ("complaints@1mm.org.uk", "other@example.org")),
        ("cc", ("john@example.org",)),
        ("reply_to", ("jane.private@example.org",)),
        ("subject", "Re: My complaint"),
        ("message_id", "abc.123@example.org"),
        ("has_message_id", True),
        ("in_reply_to", ("letter-1@mailbot.1mm.org.uk",)),
        ("references", ("letter-0@mailbot.1mm.org.uk", "letter-1@mailbot.1mm.org.uk")),
        ("delivered_to", ("complaints@1mm.org.uk", "complaints+case42@1mm.org.uk")),
        ("date", "2026-03-02T10:15:00+00:00"),
        ("text", "I am still waiting for an answer."),
        ("html", None),
        ("attachments", ()),
        ("readable", True),
    ],
)
def test_plain_message_fields(field: str, expected: object) -> None:
    assert getattr(parse_mail(PLAIN), field) == expected


def test_headers_keep_every_value_under_a_lower_case_name() -> None:
    raw = message("From: a@example.org\nReceived: from one\nReceived: from two\nSubject: x")
    mail = parse_mail(raw)
    assert mail.headers["received"] == ("from one", "from two")
    assert mail.header("SUBJECT") == "x"
    assert mail.header("x-missing") is None


@pytest.mark.parametrize(
    ("raw_subject", "expected"),
    [
        (b"=?utf-8?q?Beschwerde_=C3=BCber_Mentor?=", "Beschwerde über Mentor"),
        (b"=?UTF-8?B?w4kgcGFydGljaXBhbnQ=?=", "É participant"),
        (b"=?iso-8859-1?q?R=E9ponse?= =?iso-8859-1?q?_automatique?=", "Réponse automatique"),
        (b"=?utf-8?q?split_=E2=82?= =?utf-8?q?=AC_sign?=", "split € sign"),  # A character split across words.
        (b"=?x-unknown-charset?q?plain?=", "plain"),
        (b"Caf\xc3\xa9 complaint", "Café complaint"),  # Raw 8-bit UTF-8, undeclared.
        (b"Caf\xe9 complaint", "Café complaint"),  # Raw 8-bit Latin-1, undeclared.
        (b"Long subject\r\n folded", "Long subject folded"),
    ],
)
def test_subject_decoding(raw_subject: bytes, expected: str) -> None:
    raw = b"From: a@example.org\r\nSubject: " + raw_subject + b"\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"
    assert parse_mail(raw).subject == expected


def test_eight_bit_header_is_recorded_as_a_defect() -> None:
    raw = b"From: a@example.org\nSubject: Caf\xe9\n\nbody\n"
    assert any("8-bit" in defect for defect in parse_mail(raw).defects)


@pytest.mark.parametrize(
    ("from_header", "address", "name"),
    [
        (b"=?iso-8859-1?Q?B=FCrling,=20Andreas?= <Smith@Example.com>", "smith@example.com", "Bürling, Andreas"),
        (b'"Doe, Jane" <jane@example.org>', "jane@example.org", "Doe, Jane"),
        (b"jane@example.org (Jane Doe)", "jane@example.org", "Jane Doe"),
        (b"J\xc3\xb6rg <jorg@example.org>", "jorg@example.org", "Jörg"),
    ],
)
def test_from_address_and_name(from_header: bytes, address: str, name: str) -> None:
    mail = parse_mail(b"From: " + from_header + b"\nSubject: s\n\nbody\n")
    assert (mail.from_addr, mail.from_name) == (address, name)


def test_empty_from_falls_back_to_reply_to() -> None:
    mail = parse_mail(b'From: "Someone" <>\nReply-To: <real@example.org>\nSubject: s\n\nbody\n')
    assert mail.from_addr == "real@example.org"


def test_missing_message_id_is_synthesised_from_the_bytes() -> None:
    raw = message("From: a@example.org\nSubject: no id")
    first, again, other = parse_mail(raw), parse_mail(raw), parse_mail(raw + b"x")
    assert first.message_id == f"{hashlib.sha256(raw).hexdigest()}@mailbot.invalid"
    assert first.has_message_id is False
    assert first.message_id == again.message_id != other.message_id
    assert "no Message-ID" in first.defects


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<a@x> <b@x>", ("a@x", "b@x")),
        ("<a@x>\r\n\t<b@x>,<c@x>", ("a@x", "b@x", "c@x")),
        ("<a@x> <a@x>", ("a@x",)),
        ("garbage <a@x> more <broken <b@x>", ("a@x", "b@x")),
        ("<a@\n x>", ("a@x",)),
        ("bare@example.org", ("bare@example.org",)),
        ("<>", ()),
        ("", ()),
    ],
)
def test_extract_message_ids(value: str, expected: tuple[str, ...]) -> None:
    assert extract_message_ids(value) == expected


def test_many_references_in_order() -> None:
    references = " ".join(f"<ref{n}@example.org>" for n in range(30))
    mail = parse_mail(message(f"From: a@example.org\nReferences: {references}"))
    assert mail.references == tuple(f"ref{n}@example.org" for n in range(30))


HTML_ONLY = message(
    """
From: a@example.org
Subject: html
Content-Type: text/html; charset=utf-8
""",
    "<html><head><title>T</title><style>p {color: red}</style></head><body>"
    "<script>alert('x')</script><p>Dear&nbsp;team,</p><p>My mentor <b>never</b> came.</p>"
    "<ul><li>first</li><li>second</li></ul></body></html>",
)


def test_html_only_body_becomes_readable_text() -> None:
    mail = parse_mail(HTML_ONLY)
    assert mail.text == "Dear team,\n\nMy mentor never came.\n\n- first\n- second"
    assert mail.html is not None and "<script>" in mail.html


@pytest.mark.parametrize("hidden", ["alert", "color: red", "T\n"])
def test_html_to_text_drops_invisible_content(hidden: str) -> None:
    assert hidden not in html_to_text(HTML_ONLY.decode())


MULTIPART = b"""From: a@example.org
Subject: with attachment
Message-ID: <m@x>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="OUT"

--OUT
Content-Type: multipart/alternative; boundary="IN"

--IN
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Caf=E9 text part
--IN
Content-Type: text/html; charset=utf-8

<p>HTML part</p>
--IN--
--OUT
Content-Type: application/pdf; name="letter.pdf"
Content-Disposition: attachment; filename="letter.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--OUT
Content-Type: text/plain; name="=?utf-8?q?notes_=C3=A9.txt?="
Content-Disposition: attachment

notes
--OUT
Content-Type: image/png
Content-Disposition: inline
Content-Transfer-Encoding: base64

iVBORw0K
--OUT--
"""


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("text", "Café text part"),
        ("html", "<p>HTML part</p>"),
        ("content_type", "multipart/mixed"),
        (
            "attachments",
            (("letter.pdf", "application/pdf", b"%PDF-1.4\n"), ("notes é.txt", "text/plain", b"notes"),
             ("attachment.png", "image/png", b"\x89PNG\r\n")),
        ),
    ],
)
def test_multipart_with_attachments(field: str, expected: object) -> None:
    mail = parse_mail(MULTIPART)
    value = getattr(mail, field)
    if field == "attachments":
        value = tuple((a.filename, a.content_type, a.payload) for a in value)
    assert value == expected


def test_forwarded_message_is_an_attachment_not_the_body() -> None:
    raw = b"""From: a@example.org
Subject: Fwd
Content-Type: multipart/mixed; boundary=B

--B
Content-Type: text/plain

See below.
--B
Content-Type: message/rfc822

From: other@example.org
Subject: inner

Inner text.
--B--
"""
    mail = parse_mail(raw)
    assert mail.text == "See below."
    assert [(a.filename, a.content_type) for a in mail.attachments] == [("message.eml", "message/rfc822")]
    assert b"Inner text." in mail.attachments[0].payload


def test_multipart_with_wrong_boundary_is_recovered() -> None:
    raw = b"From: a@example.org\nContent-Type: multipart/mixed; boundary=DECLARED\n\n--ACTUAL\n" \
          b"Content-Type: text/plain\n\nThe real text.\n--ACTUAL--\n"
    mail = parse_mail(raw)
    assert mail.text == "The real text."
    assert "multipart boundary recovered from the body" in mail.defects


def test_junk_line_in_header_block_is_repaired() -> None:
    raw = b"---- Original message ----\nFrom: a@example.org\nSubject: Contact form\n\nBody.\n"
    mail = parse_mail(raw)
    assert (mail.from_addr, mail.subject, mail.text) == ("a@example.org", "Contact form", "Body.")


@pytest.mark.parametrize(
    ("raw", "readable"),
    [
        (b"", False),
        (b"   \r\n\r\n", False),
        (b"\x00\x01\x02\xff\xfe" * 200, False),
        (b"Just a line of text without headers\n", True),
        (b"From: a@example.org\n\n", True),
    ],
)
def test_readability(raw: bytes, readable: bool) -> None:
    mail = parse_mail(raw)
    assert mail.readable is readable
    assert isinstance(mail, InboundMail)
    if not readable:
        assert mail.defects


def test_random_bytes_never_raise() -> None:
    generator = random.Random(20260302)
    for _ in range(300):
        raw = bytes(generator.randrange(256) for _ in range(generator.randrange(0, 600)))
        assert isinstance(parse_mail(raw), InboundMail)


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@example.org\nContent-Type: multipart/mixed; boundary=\n\n--\n--\n",
        b"From: a@example.org\nContent-Type: text/plain; charset*=''\n\n\xff\xfe",
        b"From: a@example.org\nContent-Type: text/plain; charset=\"bogus-charset\"\n\nhi\xe9\n",
        b"From: a@example.org\nContent-Transfer-Encoding: base64\n\n!!!not base64!!!",
        b"From: a@example.org\nContent-Type: multipart/mixed; boundary=A\n\n" + b"--A\nContent-Type: multipart/mixed; boundary=A\n\n" * 200,
        b"Date: not a date\nFrom: <<<>>>\nMessage-ID: <<<\n\n",
        b"\xff\xfe: \xff\n\n\xff",
    ],
)
def test_broken_mime_never_raises(raw: bytes) -> None:
    assert isinstance(parse_mail(raw), InboundMail)


def test_unparseable_date_is_none() -> None:
    assert parse_mail(message("From: a@example.org\nDate: the day after tomorrow")).date is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Complaint\r\nBcc: victim@example.org", "Complaint Bcc: victim@example.org"),
        ("Name\nX-Injected: 1", "Name X-Injected: 1"),
        ("tab\tand\x00nul\x07bell", "tab andnulbell"),
        ("line\u2028separator\x85nel", "line separator nel"),
        ("  Ordinary  subject  ", "Ordinary subject"),
        ("Réclamation – été", "Réclamation – été"),
    ],
)
def test_header_safe(value: str, expected: str) -> None:
    assert header_safe(value) == expected
    assert "\r" not in header_safe(value) and "\n" not in header_safe(value)


# ---------------------------------------------------------------------------------------------
# mail-parser as the primary parser of multipart bodies, with the standard library around it


def multipart(*parts: bytes, headers: bytes = b"From: a@example.org\nSubject: s\nMessage-ID: <mp@x>\n") -> bytes:
    body = b"".join(b"--B\n" + part + b"\n" for part in parts)
    return headers + b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="B"\n\n' + body + b"--B--\n"


ALTERNATIVE = multipart(
    b"Content-Type: text/plain; charset=utf-8\n\nPlain words.",
    b"Content-Type: text/html; charset=utf-8\n\n<p>HTML words.</p>",
)


@pytest.mark.parametrize(
    ("raw", "uses_mailparser"),
    [
        (PLAIN, False),  # One part: nothing for mail-parser to resolve, and it is slower and lossier here.
        (HTML_ONLY, False),
        (ALTERNATIVE, True),
        (MULTIPART, True),
    ],
)
def test_multipart_messages_go_through_mailparser(raw: bytes, uses_mailparser: bool, monkeypatch) -> None:
    import mailparser

    seen = []

    class Recording(mailparser.MailParser):
        def parse(self):
            result = super().parse()
            seen.append((list(self.text_plain), list(self.text_html)))
            return result

    monkeypatch.setattr(mailparser, "MailParser", Recording)
    mail = parse_mail(raw)
    assert bool(seen) is uses_mailparser
    if uses_mailparser:
        plain, html = seen[0]
        assert mail.text == "\n\n".join(text.strip() for text in plain)
        assert mail.html == "\n".join(html)


def test_attachment_stranded_in_the_epilogue_is_recovered_by_mailparser() -> None:
    # The inner part re-uses the outer boundary, so the standard library puts the file in the
    # epilogue; mail-parser reads it back from there.
    raw = (
        b"From: a@example.org\nSubject: s\nContent-Type: multipart/mixed; boundary=\"X\"\n\n"
        b"--X\nContent-Type: multipart/alternative; boundary=\"X\"\n\n\n"
        b"--X\nContent-Type: text/plain\n\nThe complaint.\n\n"
        b"--X--\n\n\n"
        b"--X\nContent-Type: application/pdf; name=\"evidence.pdf\"\nContent-Disposition: attachment\n"
        b"Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n\n"
        b"--X--\n"
    )
    mail = parse_mail(raw)
    assert mail.text == "The complaint."
    assert [(a.filename, a.content_type, a.payload) for a in mail.attachments] == [
        ("evidence.pdf", "application/pdf", b"%PDF-1.4\n")
    ]
    assert "StartBoundaryNotFoundDefect" in mail.defects


# mail-parser 4.8 raises AttributeError in find_between: a truncated message (no closing
# boundary, so no epilogue) with an inner part whose boundary is wrong.
TRIPS_FIND_BETWEEN = b"""From: a@example.org
Subject: truncated
Message-ID: <t@x>
Content-Type: multipart/mixed; boundary="OUT"

--OUT
Content-Type: text/plain

Outer text.
--OUT
Content-Type: multipart/alternative; boundary="DECLARED"

--ACTUAL
Content-Type: text/plain

inner
"""


def test_message_that_breaks_mailparser_is_read_by_the_standard_library() -> None:
    mail = parse_mail(TRIPS_FIND_BETWEEN)
    assert (mail.from_addr, mail.subject, mail.text) == ("a@example.org", "truncated", "Outer text.")
    assert not any(defect.startswith("parser failed") for defect in mail.defects)


def test_mailparser_failure_falls_back_to_the_standard_library(monkeypatch) -> None:
    import mailparser

    expected = parse_mail(MULTIPART)

    def broken(message):
        raise AttributeError("'NoneType' object has no attribute 'index'")

    monkeypatch.setattr(mailparser, "MailParser", broken)
    mail = parse_mail(MULTIPART)
    assert (mail.text, mail.html, mail.attachments) == (expected.text, expected.html, expected.attachments)
    assert "mail-parser failed (AttributeError); standard library used" in mail.defects


@pytest.mark.parametrize(
    ("part", "text"),
    [
        # mail-parser decodes these lossily; the standard library's decoding is kept.
        (b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n\x93Quoted\x94 \x96 dash",
         "\u201cQuoted\u201d \u2013 dash"),  # Windows-1252 labelled Latin-1: C1 controls in mail-parser.
        (b"Content-Type: text/plain; charset=iso-2022-jp\nContent-Transfer-Encoding: 7bit\n\n\x1b$B$9$_$^$;$s!#\x1b(B",
         "\u3059\u307f\u307e\u305b\u3093\u3002"),  # mail-parser leaves 7-bit ISO-2022-JP undecoded.
        (b"Content-Type: text/plain\n\nCaf\xe9 undeclared", "Caf\xe9 undeclared"),  # mail-parser: U+FFFD.
        (b"Content-Type: text/plain; charset=utf-8\n\nCaf\xc3\xa9 fine", "Caf\xe9 fine"),  # mail-parser's own.
    ],
)
def test_lossy_mailparser_text_is_not_used(part: bytes, text: str) -> None:
    assert parse_mail(multipart(part)).text == text


@pytest.mark.parametrize(
    ("parts", "attachments"),
    [
        ((b"Content-Type: text/plain\n\nSigned words.",
          b"Content-Type: application/pgp-signature; name=\"signature.asc\"\n"
          b"Content-Disposition: attachment; filename=\"signature.asc\"\n\n-----BEGIN PGP SIGNATURE-----"),
         []),
        ((b"Content-Type: text/plain\n\nWords.",
          b"Content-Type: text/plain; name=\"notes.txt\"\n"
          b"Content-Disposition: inline; filename=\"notes.txt\"\n\nMore words."),
         []),  # Named inline text is body; mail-parser lists it as a file as well.
        ((b"Content-Type: text/plain\n\nWords.",
          b"Content-Type: image/png\nContent-ID: <img1@x>\nContent-Transfer-Encoding: base64\n\niVBORw0K"),
         [("attachment.png", "image/png", b"\x89PNG\r\n")]),  # Not named after its Content-ID.
    ],
)
def test_attachment_policy_applies_to_mailparser_results(parts: tuple[bytes, ...], attachments: list) -> None:
    mail = parse_mail(multipart(*parts))
    assert [(a.filename, a.content_type, a.payload) for a in mail.attachments] == attachments


def test_mailparser_defects_are_recorded_after_our_own() -> None:
    headers = b"From: a@example.org\nSubject: s\nDate: 99 Foo 2026\n"
    raw = multipart(b"Content-Type: text/plain\n\nWords.", headers=headers)
    defects = parse_mail(raw).defects
    assert "DateHeaderDefect" in defects
    assert defects.index("no Message-ID") < defects.index("DateHeaderDefect")


@pytest.mark.parametrize("written, envelope", [
    ("a@b.example", "a@b.example"),
    ("A.B+x@Example.ORG", "a.b+x@example.org"),
    ("  x@y.example ", "x@y.example"),
    ("Name <a@b.example>", "a@b.example"),
    ("<a@b.example>", "a@b.example"),
    ('"quoted local"@b.example', '"quoted local"@b.example'),
    ("(comment) a@b.example", "a@b.example"),
    ("a@b.example, d@e.example", "a@b.example"),
    ("a@b@c", ""),
    ("", ""),
    ("a@[192.0.2.1]", "a@[192.0.2.1]"),
])
def test_a_letter_goes_to_the_bare_address_however_it_was_written(written: str, envelope: str) -> None:
    # The quick path for plain addresses must agree with the full parser, which the others go through.
    assert bare_address(written) == envelope == parseaddr(written)[1].strip().lower()


# ---- large messages: long base64 bodies are decoded outside the standard library's parser ------------------

def _big_message(extra_text_part: bytes = b"") -> tuple[bytes, bytes]:
    import base64 as b64
    import os

    data = os.urandom(6 * 1024 * 1024)
    encoded = b64.encodebytes(data).replace(b"\n", b"\r\n")
    raw = (b"From: Jane <jane@example.com>\r\nTo: complaints@1mm.org.uk\r\nSubject: Evidence\r\n"
           b"Message-ID: <big-1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n"
           b"\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease see the video.\r\n" + extra_text_part +
           b"--B\r\nContent-Type: video/mp4; name=\"v.mp4\"\r\nContent-Disposition: attachment; filename=\"v.mp4\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--B--\r\n")
    return raw, data


def test_a_large_attachment_is_decoded_whole() -> None:
    raw, data = _big_message()
    mail = parse_mail(raw)
    assert mail.text == "Please see the video."
    assert [(a.filename, a.content_type) for a in mail.attachments] == [("v.mp4", "video/mp4")]
    assert mail.attachments[0].payload == data and mail.raw == raw and not mail.defects


def test_base64_lines_in_a_text_part_of_a_large_message_stay_text() -> None:
    import base64 as b64

    pasted = b64.encodebytes(b"x" * 800_000).replace(b"\n", b"\r\n")  # a person pasting a long block
    raw, data = _big_message(extra_text_part=pasted)
    mail = parse_mail(raw)
    assert mail.text.startswith("Please see the video.") and len(mail.text) > 1_000_000
    assert mail.attachments[0].payload == data


def test_a_token_written_by_the_sender_is_just_text() -> None:
    raw, data = _big_message(extra_text_part=b"MAILBOTLIFTED0000000000000000X0\r\n")
    mail = parse_mail(raw)
    assert "MAILBOTLIFTED0000000000000000X0" in mail.text
    assert mail.attachments[0].payload == data


def _flat(value: object) -> str:
    if isinstance(value, dict):
        return " ".join(f"{name} {_flat(values)}" for name, values in value.items())
    if isinstance(value, tuple):
        return " ".join(_flat(item) for item in value)
    if hasattr(value, "filename"):
        return f"{value.filename} {value.content_type}"
    return str(value)


@pytest.mark.parametrize("raw, where", [
    (b"From: a@example.org\r\nSubject: hi\r\nMessage-ID: <b\x001@example.org>\r\n\r\nText.\r\n", "message_id"),
    (b"From: a@example.org\r\nSubject: =?utf-8?q?bad=00subject?=\r\nMessage-ID: <s@x>\r\n\r\nText.\r\n", "subject"),
    (b"From: B\x00ob <b\x00@example.org>\r\nSubject: hi\r\nMessage-ID: <f@x>\r\n\r\nText.\r\n", "from_addr"),
    (b"From: a@example.org\r\nTo: c\x00@1mm.org.uk\r\nMessage-ID: <t@x>\r\n\r\nText.\r\n", "to"),
    (b"From: a@example.org\r\nIn-Reply-To: <r\x00@x>\r\nReferences: <q\x00@x>\r\nMessage-ID: <r@x>\r\n\r\nT.\r\n",
     "references"),
    (b"From: a@example.org\r\nX-Odd: val\x00ue\r\nMessage-ID: <h@x>\r\n\r\nText.\r\n", "headers"),
    (b"From: a@example.org\r\nMessage-ID: <m@x>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
     b"Content-Type: text/plain\r\n\r\nText.\r\n--b\r\nContent-Type: application/pdf\r\n"
     b"Content-Disposition: attachment; filename=\"a\x00.pdf\"\r\n\r\n%PDF\r\n--b--\r\n", "attachments"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_no_nul_survives_parsing_whatever_header_carried_it(raw: bytes, where: str) -> None:
    # PostgreSQL's text columns refuse NUL: one in a Message-ID kept the whole mailbox from being read.
    unsafe = _parse(raw)  # the parser's own reading, before the pass that cleans it
    assert "\x00" in _flat(getattr(unsafe, where))
    mail = parse_mail(raw)
    assert not [text for text in every_text(mail) if "\x00" in text]
    assert UNSTORABLE_REPLACED in mail.defects
    assert "\ufffd" in _flat(getattr(mail, where))
    assert mail.raw == raw  # what came is kept as it came


def test_a_message_without_nul_is_returned_as_parsed() -> None:
    mail = parse_mail(PLAIN)
    assert UNSTORABLE_REPLACED not in mail.defects
    assert not [text for text in every_text(mail) if "\ufffd" in text]


def test_a_message_id_too_long_for_an_index_is_kept_as_its_hash() -> None:
    long_id = "x" * 600 + "@example.org"
    first = parse_mail(message(f"From: a@example.org\nMessage-ID: <{long_id}>"))
    again = parse_mail(message(f"From: a@example.org\nReceived: by relay\nMessage-ID: <{long_id}>"))
    assert first.message_id.endswith("@mailbot.invalid") and len(first.message_id) < 100
    assert first.message_id == again.message_id  # the same message delivered again is still a duplicate
    assert not first.has_message_id  # never quoted back in a letter's In-Reply-To
    assert "Message-ID longer than 500 characters, kept as its hash" in first.defects
    at_the_limit = "y" * 488 + "@example.org"  # 500 characters
    assert parse_mail(message(f"From: a@example.org\nMessage-ID: <{at_the_limit}>")).message_id == at_the_limit


def test_an_address_longer_than_smtp_allows_is_left_out() -> None:
    too_long = "a" * 243 + "@example.org"  # 255 characters: RFC 5321 allows 254
    longest = "b" * 242 + "@example.org"
    mail = parse_mail(message(f"From: {too_long}\nTo: complaints@1mm.org.uk, {too_long}, {longest}\n"
                              "Message-ID: <l@x>\nSubject: Long"))
    assert mail.to == ("complaints@1mm.org.uk", longest)
    assert mail.from_addr == ""
    assert {"no From address", "an address longer than 254 characters left out"} <= set(mail.defects)


def test_undecodable_bytes_in_ids_come_out_as_text_a_database_can_store() -> None:
    # compat32 carries an undecodable byte as a lone surrogate, which neither SQLite nor PostgreSQL can encode.
    raw = b"From: a@example.org\r\nMessage-ID: <a\xffb@x>\r\nIn-Reply-To: <caf\xc3\xa9@x>\r\n\r\nText.\r\n"
    mail = parse_mail(raw)
    for text in every_text(mail):
        text.encode("utf-8")  # raises on a surrogate
    assert mail.message_id == "a\u00ffb@x"  # one character for the byte that is not UTF-8
    assert mail.in_reply_to == ("caf\u00e9@x",)  # bytes that were UTF-8 after all are read as such
    assert "8-bit bytes in Message-ID header" in mail.defects


@pytest.mark.parametrize("charset", ["utf-8", "koi8-r", "iso-8859-1", "x-unknown"])
def test_ids_differing_in_one_undecodable_byte_stay_two_ids_whatever_the_charset(charset: str) -> None:
    # As U+FFFD both, the second message was taken for a duplicate of the first and dropped.
    def parsed(byte: bytes) -> InboundMail:
        return parse_mail(b"From: a@example.org\r\nMessage-ID: <a" + byte + b"b@x>\r\nReferences: <r" + byte +
                          b"@x>\r\nContent-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\nText.\r\n")

    ids = [(mail.message_id, mail.references) for mail in map(parsed, (b"\xff", b"\xfe", b"\x81", b"\x9d"))]
    assert ids == [("a\u00ffb@x", ("r\u00ff@x",)), ("a\u00feb@x", ("r\u00fe@x",)),
                   ("a\u0081b@x", ("r\u0081@x",)), ("a\u009db@x", ("r\u009d@x",))]


_ONE = (b"From: Amira <amira@example.org>\r\nTo: complaints@1mm.org.uk\r\nSubject: Complaint\r\n"
        b"Message-ID: <one@example.org>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nNo mentor came.\r\n--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERi0xLjQ=\r\n--b--\r\n")


@pytest.mark.parametrize("other, same", [
    (_ONE, True),
    (b"Received: by relay.example; Mon, 16 Nov 2026 10:00:00 +0000\r\nDelivered-To: complaints@1mm.org.uk\r\n"
     + _ONE, True),  # delivered again by another route
    (_ONE.replace(b"\r\n", b"\n"), True),  # the same message with bare line feeds
    (_ONE.replace(b"amira@example.org", b"bob@example.org"), False),
    (_ONE.replace(b"No mentor came.", b"Nobody replied."), False),
    (_ONE.replace(b"Subject: Complaint", b"Subject: Another"), False),
    (_ONE.replace(b"JVBERi0xLjQ=", b"JVBERi0xLjU="), False),  # another file
])
def test_one_message_delivered_twice_is_told_from_two_messages_sharing_an_id(other: bytes, same: bool) -> None:
    assert same_message(parse_mail(_ONE), parse_mail(other)) is same
    assert parse_mail(other).message_id == "one@example.org"


def test_a_message_under_another_s_id_gets_one_of_its_own_from_its_bytes() -> None:
    mail = parse_mail(_ONE)
    own = with_own_id(mail)
    assert own.message_id == with_own_id(parse_mail(_ONE)).message_id != mail.message_id  # the same bytes, the same id
    assert not own.has_message_id and own.defects[-1] == REUSED_MESSAGE_ID


def test_html_past_the_limit_is_read_as_text_up_to_it_and_says_so() -> None:
    # html.parser takes ~1.2 s a MB of nothing but tags: a 30 MB body held intake for half a minute.
    flood = "<p>My complaint.</p>" + "<" * (2 * HTML_TEXT_LIMIT)
    text = html_to_text(flood)
    assert text.startswith("My complaint.")
    assert text.endswith(HTML_CUT_NOTE.format(HTML_TEXT_LIMIT))
    assert len(text) < HTML_TEXT_LIMIT + 200
    # A staff reply's text can reach a complainant: it is cut the same way, without the note.
    assert html_to_text(flood, history=False).startswith("My complaint.")
    assert HTML_CUT_NOTE.format(HTML_TEXT_LIMIT) not in html_to_text(flood, history=False)
    # A tag the limit cuts in half is left out, not read as text.
    cut_tag = "<p>" + "x" * (HTML_TEXT_LIMIT - 10) + '<a href="' + "h" * 100 + '">y</a>'
    assert "href" not in html_to_text(cut_tag) and "hhh" not in html_to_text(cut_tag)


def test_an_inline_image_does_not_count_against_the_html_limit() -> None:
    picture = '<img src="data:image/png;base64,' + "A" * (3 * HTML_TEXT_LIMIT) + '">'
    text = html_to_text(f"<p>Before the picture.</p>{picture}<p>My complaint, after it.</p>")
    assert text == "Before the picture.\n\nMy complaint, after it."
    assert html_to_text("<p>A short message.</p>") == "A short message."  # no note under the limit


def test_the_record_of_a_message_the_server_would_not_give_is_one_per_place_and_carries_no_headers_from_it() -> None:
    from mailbot.domain.mail import unfetchable_record

    at = datetime(2026, 12, 5, 9, 0, tzinfo=timezone.utc)
    said = "FETCH failed\r\nBcc: victim@example.org\r\n\r\nInternal error"
    record = parse_mail(unfetchable_record("complaints@imap.example/INBOX", 7, 42, said, at))
    again = parse_mail(unfetchable_record("complaints@imap.example/INBOX", 7, 42, "another reason", at))
    others = {parse_mail(unfetchable_record(box, v, uid, said, at)).message_id
              for box, v, uid in [("complaints@imap.example/INBOX", 7, 43), ("complaints@imap.example/INBOX", 8, 42),
                                  ("other@imap.example/INBOX", 7, 42)]}
    assert record.message_id == again.message_id and record.message_id not in others and len(others) == 3
    assert "bcc" not in record.headers and record.subject.endswith("(UID 42)")
    assert "FETCH failed Bcc: victim@example.org Internal error" in record.text
    assert "UID 42 in complaints@imap.example/INBOX" in record.text


def test_every_name_the_mail_package_offers_is_found_in_its_module() -> None:
    # domain.mail loads each name's module when the name is first asked for (so the delivery loop's address helper
    # does not load the parser): a name added to __all__ without its module, or moved, must fail here, not in use.
    import mailbot.domain.mail as package

    assert set(package._HOME) == set(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is getattr(importlib.import_module(f"mailbot.domain.mail.{package._HOME[name]}"),
                                                 name), name
    with pytest.raises(AttributeError):
        package.no_such_name  # noqa: B018
