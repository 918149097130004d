"""Every letter renders, for every procedure, with nothing left blank and nothing unescaped."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from mailbot.data_files import load_procedures, load_signposts
from mailbot.domain.workdays import WorkingCalendar
from mailbot.letters import LetterRenderer, build_message
from mailbot.preview import LATER_STAGE_LETTERS, sample_context

REPO = Path(__file__).resolve().parents[2]
PROCEDURES = load_procedures(REPO / "data" / "procedures.toml")
SIGNPOSTS = load_signposts(REPO / "data" / "procedures.toml")
RENDERER = LetterRenderer(REPO / "templates")
LETTERS = [name for name in RENDERER.names() if name != "digest"]
# Letters written to the complainant must carry the reference in the subject, so replies thread.
TO_STAFF = {"deadline-reminder", "deadline-overdue", "staff-notification", "safeguarding-alert",
            "unreadable-alert", "command-result", "mentor-suspension-alert", "restriction-staff-note", "admin-alert"}


def test_the_letters_the_procedures_name_all_exist() -> None:
    for procedure in PROCEDURES.values():
        for transition, letter in procedure.letters.items():
            assert letter in RENDERER.names(), f"{procedure.key}.{transition} names a missing letter {letter}"


# A one-stage procedure (staff: redirected to the grievance procedure) never escalates.
COMBINATIONS = [(p, n) for p in sorted(PROCEDURES) for n in LETTERS
                if not (n in LATER_STAGE_LETTERS and PROCEDURES[p].last_stage == 1)]


@pytest.mark.parametrize("procedure, name", COMBINATIONS)
def test_every_letter_renders_for_every_procedure(procedure: str, name: str) -> None:
    proc = PROCEDURES[procedure]
    stage = 2 if name in LATER_STAGE_LETTERS else 1
    context = sample_context(proc, WorkingCalendar(), SIGNPOSTS, org_name="One Million Mentors",
                             address="complaints@1mm.org.uk", stage=stage, letter=name)
    letter = RENDERER.render(name, context)
    assert letter.subject and letter.text.strip() and "<html" in letter.html
    if name not in TO_STAFF:
        assert letter.subject.startswith("[1MM-2026-0042]") or "[1MM-2026-0042]" in letter.subject
    # Text from mail is escaped in HTML: the sample subject and message contain markup.
    assert "<about volunteering>" not in letter.html and "<b>Nobody called.</b>" not in letter.html
    msg = build_message(letter, template=name, from_name="One Million Mentors", from_addr="complaints@1mm.org.uk",
                        to=["jane.doe@example.com"], message_id="x.mailbot@1mm.org.uk")
    assert msg["X-Mailbot-Letter"] == name


def test_the_outcome_letter_signposts_by_category() -> None:
    proc = PROCEDURES["external"]
    base = sample_context(proc, WorkingCalendar(), SIGNPOSTS, org_name="1MM", address="c@1mm.org.uk")
    from datetime import datetime, timezone

    from mailbot.domain.procedures import signposting

    at = datetime(2026, 11, 17, 12, 0, tzinfo=timezone.utc)
    cases = {
        "service": ("0845 300 0218", ("ico.org.uk", "0300 999 3407")),
        "data_protection": ("www.ico.org.uk", ("0300 999 3407",)),
        "fundraising": ("Tuesday 12 January 2027", ("ico.org.uk",)),
    }
    for category, (present, absent) in cases.items():
        context = {**base, "signposts": signposting(SIGNPOSTS, category, at, WorkingCalendar())}
        text = RENDERER.render("outcome", context).text
        assert present in text and "charitycommission.gov.uk" in text
        for missing in absent:
            assert missing not in text


def test_limited_disclosure_says_only_that_action_was_taken() -> None:
    context = sample_context(PROCEDURES["mentee"], WorkingCalendar(), SIGNPOSTS, org_name="1MM", address="c@x.org")
    text = RENDERER.render("outcome", {**context, "outcome": "limited-disclosure"}).text
    assert "investigation has been carried out and appropriate action taken" in text


def test_header_injection_from_a_complaint_subject_is_impossible() -> None:
    context = sample_context(PROCEDURES["external"], WorkingCalendar(), SIGNPOSTS, org_name="1MM", address="c@x.org")
    evil = {**context, "case_subject": "Hi\r\nBcc: victim@example.com\r\nX-Evil: 1"}
    letter = RENDERER.render("staff-notification", evil)
    msg = build_message(letter, template="staff-notification", from_name="Evil\r\nBcc: a@b.c",
                        from_addr="complaints@1mm.org.uk", to=["x@example.com"], message_id="y.mailbot@x.org")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert parsed["To"] == "x@example.com" and "\n" not in parsed["Subject"]


def test_letter_bytes_are_standard_mime_with_crlf_and_encoded_headers() -> None:
    from mailbot.letters import RenderedLetter, letter_bytes

    letter = RenderedLetter(subject="[1MM-2026-0042] Re: Ça ne va pas, je suis très mécontent",
                            text="Dear Zoë,\n\nLine one \nA long line " + "x" * 100 + "\n=end\n.\n",
                            html="<p>Dear Zoë</p>\n")
    raw = letter_bytes(letter, template="acknowledgement", from_name="One Million Méntors",
                       from_addr="complaints@1mm.org.uk", to=["jane@example.com"], message_id="m.mailbot@1mm.org.uk",
                       attachments=[("rapport é.pdf", "application/pdf", b"%PDF-1.4" * 50)])
    assert b"\n" not in raw.replace(b"\r\n", b"") and raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998  # RFC 5322's hard limit
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/mixed" and parsed["MIME-Version"] == "1.0"
    assert parsed["Subject"] == letter.subject and parsed["From"] == "One Million Méntors <complaints@1mm.org.uk>"
    alternative, attachment = parsed.get_payload()
    plain, html = alternative.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    assert plain.get_content().replace("\r\n", "\n") == letter.text
    assert html.get_content().replace("\r\n", "\n") == letter.html
    assert attachment.get_filename() == "rapport é.pdf" and attachment.get_content() == b"%PDF-1.4" * 50


@pytest.mark.parametrize("value", [
    'multipart/alternative; boundary="=_0123456789abcdef0123456789abcdef"',  # folded after the ";"
    'multipart/mixed; boundary="=_0123456789abcdef0123456789abcdef"',  # short enough for one line
    'multipart/alternative; boundary="=_' + "b" * 80 + '"',  # too long for the quick fold
    'multipart/alternative; boundary="=_x"; charset="utf-8"; format=flowed; delsp=yes; more=' + "m" * 20,
    'text/html; charset="utf-8"',
])
def test_a_content_type_line_is_folded_as_the_email_package_folds_it(value: str) -> None:
    from mailbot.letters import WIRE, _header_line

    assert _header_line("Content-Type", value) == WIRE.fold_binary("Content-Type", value)


def _random_text(seed: int) -> bytes:
    import random

    rng = random.Random(seed)
    alphabet = "ab =\t.\u00e9\u2019xyz0123456789<>\"'=;:-" + "\n" * rng.randint(0, 4)
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400))).encode("utf-8")


QP_CASES = [
    b"", b"\n", b"\n\n", b"no newline at the end", b"ends with a newline\n", b"trailing space \ntrailing tab\t\n",
    b"trailing space at the very end ", b"=" * 200 + b"\n", b"a" * 75 + b"=\n" + b"b" * 76 + b" \n" + b"c" * 77,
    b"x" * 74 + b" \t\n" + b"y" * 75 + b"\t", b". a line of a dot\n.\n",
    "caf\u00e9 \u2019quoted\u2019\n".encode("utf-8"),
    b"<p style=\"margin:0 0 16px 0;font-family:Arial,Helvetica,sans-serif;font-size:15px;line-height:1.5;color:#222\">"
    b"Dear Amira,</p>\n" * 3,
    b"L" * 3000 + b"\n" + b"L" * 3000,  # longer than the memo keeps
]


@pytest.mark.parametrize("text", QP_CASES + [_random_text(seed) for seed in range(300)])
def test_quoted_printable_is_binasciis_byte_for_byte(text: bytes) -> None:
    """Line by line from a memo, the encoding is binascii's whole-text one, the first time and when the lines
    come again (from the memo)."""
    import binascii

    from mailbot.letters import quoted_printable

    expected = binascii.b2a_qp(text, istext=True)
    assert quoted_printable(text) == expected
    assert quoted_printable(text) == expected


def test_every_letter_part_is_encoded_as_binascii_encodes_it() -> None:
    """The letters as they are: each rendered text and HTML part, against binascii, twice over (the second from
    the memo of lines), and with the memo emptied in between as it is when full."""
    import binascii

    from mailbot import letters

    proc = PROCEDURES["mentee"]
    for name in LETTERS:
        stage = 2 if name in LATER_STAGE_LETTERS else 1
        letter = RENDERER.render(name, sample_context(proc, WorkingCalendar(), SIGNPOSTS, org_name="1MM",
                                                      address="c@1mm.org.uk", stage=stage, letter=name))
        for part in (letter.text, letter.html):
            data = part.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
            expected = binascii.b2a_qp(data, istext=True)
            assert letters.quoted_printable(data) == expected
            assert letters.quoted_printable(data) == expected
            letters._QP_LINES.clear()
            assert letters.quoted_printable(data) == expected


@pytest.mark.parametrize("filename, content_type, name_carried, type_carried", [
    ("a" * 5000 + ".pdf", "application/pdf", "a" * 195 + "~.pdf", "application/pdf"),
    ("\U0001F600" * 300 + ".pdf", "application/pdf", "\U0001F600" * 48 + "~.pdf", "application/pdf"),
    ("a b " * 1000 + ".pdf", "application/pdf", ("a b " * 50)[:195] + "~.pdf", "application/pdf"),
    ("scan.pdf", "application/" + "p" * 3000, "scan.pdf", "application/octet-stream"),
])
def test_a_hostile_attachment_name_or_type_keeps_every_line_within_998(
        filename: str, content_type: str, name_carried: str, type_carried: str) -> None:
    """A complainant's attachment goes to staff with the notification. Its name and type are theirs: a name of
    5,000 characters made a header line of 5,000, which Microsoft 365 refuses (5.6.211), so staff never got the
    notification."""
    from mailbot.letters import RenderedLetter, letter_bytes

    raw = letter_bytes(RenderedLetter("Subject", "text", "<p>text</p>"), template="staff-notification",
                       from_name="One Million Mentors", from_addr="complaints@1mm.org.uk", to=["staff@1mm.org.uk"],
                       message_id="x@1mm.org.uk", attachments=[(filename, content_type, b"%PDF-1.4")])
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    attachment = email.message_from_bytes(raw, policy=email.policy.default).get_payload()[1]
    assert attachment.get_content() == b"%PDF-1.4"
    assert (attachment.get_filename(), attachment.get_content_type()) == (name_carried, type_carried)


def test_non_ascii_addresses_are_never_rfc2047_encoded() -> None:
    """RFC 2047 forbids encoded-words inside an address: IDNA for the domain, RFC 6532 UTF-8 for the rest."""
    from mailbot.letters import RenderedLetter, letter_bytes

    raw = letter_bytes(RenderedLetter("Subject", "text", "<p>text</p>"), template="acknowledgement",
                       from_name="One Million Mentors", from_addr="complaints@1mm.org.uk",
                       to=["zoë@exämple.com"], cc=["jane@bücher.de"], reply_to="complaints@1mm.org.uk",
                       message_id="x@1mm.org.uk")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?" not in head.split(b"\r\nSubject:")[0] or b"=?utf-8?" not in head
    assert "To: zoë@xn--exmple-cua.com".encode() in head
    assert b"Cc: jane@xn--bcher-kva.de" in head


def test_a_template_is_compiled_once_and_an_edit_is_picked_up_on_reload(tmp_path: Path) -> None:
    import shutil
    import time as clock

    shutil.copytree(REPO / "templates", tmp_path / "templates")
    renderer = LetterRenderer(tmp_path / "templates")
    proc = PROCEDURES["external"]
    context = sample_context(proc, WorkingCalendar(), SIGNPOSTS, org_name="1MM", address="c@1mm.org.uk")
    assert "We have received your complaint" in renderer.render("acknowledgement", context).text
    path = tmp_path / "templates" / "letters" / "acknowledgement.txt"
    path.write_text(path.read_text().replace("We have received your complaint and", "Your complaint is with us and"))
    later = clock.time_ns() + 10**9
    import os

    os.utime(path, ns=(later, later))
    assert "Your complaint is with us" not in renderer.render("acknowledgement", context).text  # not re-read per render
    assert renderer.reload_if_changed() and not renderer.reload_if_changed()
    assert "Your complaint is with us" in renderer.render("acknowledgement", context).text
