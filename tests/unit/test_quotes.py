"""New text of a reply: table-driven client cases, and scores against the talon and email_reply_parser corpora."""

from __future__ import annotations

import email
import json
import re
from email import policy
from pathlib import Path

import pytest

from mailbot.domain.mail import html_to_text
from mailbot.domain.quotes import (
    extract_new_text,
    remove_quoted_history,
    strip_signature,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "corpus"

OUTLOOK_REPLY = """Thank you, I will send the dates tomorrow.

Jane

-----Original Message-----
From: Complaints <complaints@1mm.org.uk>
Sent: 03 March 2026 10:15
To: Jane Doe <jane@example.com>
Subject: [1MM-2026-0042] Your complaint

Dear Jane, we have received your complaint.
"""

OUTLOOK_UNDERSCORE_REPLY = """I still have not heard from my mentor.

________________________________
From: Complaints <complaints@1mm.org.uk>
Sent: Tuesday, March 3, 2026 10:15 AM
To: Jane Doe <jane@example.com>
Subject: RE: [1MM-2026-0042] Your complaint

Dear Jane,
"""

OUTLOOK_WRAPPED_BOLD = """Please call me on Thursday.

*From:* Complaints [mailto:
complaints@1mm.org.uk]
*Sent:* Tuesday, March 3, 2026 10:15 AM
*To:* jane@example.com
*Subject:* [1MM-2026-0042] Your complaint

Dear Jane,
"""

GMAIL_REPLY = """Yes, the session was on the 4th.

On Tue, 3 Mar 2026 at 10:15, Complaints <complaints@1mm.org.uk> wrote:

> Dear Jane,
> Could you tell us the date of the session?
"""

GMAIL_WRAPPED_ATTRIBUTION = """Yes, the session was on the 4th.

On Tue, Mar 3, 2026 at 10:15 AM One Million Mentors Complaints <
complaints@1mm.org.uk> wrote:

> Dear Jane,
"""

APPLE_MAIL_REPLY = """It happened twice.

Sent from my iPhone

> On 3 Mar 2026, at 10:15, Complaints <complaints@1mm.org.uk> wrote:
>
> Dear Jane,
"""

APPLE_MAIL_DESKTOP = """It happened twice.

On 3 Mar 2026, at 10:15, Complaints <complaints@1mm.org.uk> wrote:

Dear Jane,
Could you tell us more?
"""

BOTTOM_POSTED = """On 3 Mar 2026, at 10:15, Complaints <complaints@1mm.org.uk> wrote:
> Could you tell us the date?

It was the 4th of February.

> And the time?

About 6pm.
"""

GERMAN_OUTLOOK = """Danke, ich warte auf Ihre Antwort.

Von: Complaints <complaints@1mm.org.uk>
Gesendet: Dienstag, 3. März 2026 10:15
An: Jane Doe
Betreff: [1MM-2026-0042] Ihre Beschwerde

Sehr geehrte Frau Doe,
"""

FRENCH_GMAIL = """Merci pour votre réponse.

Le mar. 3 mars 2026 à 10:15, Complaints <complaints@1mm.org.uk> a écrit :

> Madame,
"""

FORWARDED = """Please see what my mentor sent me.

---------- Forwarded message ---------
From: Mentor <mentor@example.com>
Date: Mon, 2 Mar 2026 at 21:00
Subject: Session
To: Jane <jane@example.com>

You are wasting my time.
"""


@pytest.mark.parametrize(
    ("client", "text", "expected"),
    [
        ("outlook original message", OUTLOOK_REPLY, "Thank you, I will send the dates tomorrow.\n\nJane"),
        ("outlook underscore line", OUTLOOK_UNDERSCORE_REPLY, "I still have not heard from my mentor."),
        ("outlook bold wrapped from", OUTLOOK_WRAPPED_BOLD, "Please call me on Thursday."),
        ("gmail", GMAIL_REPLY, "Yes, the session was on the 4th."),
        ("gmail wrapped attribution", GMAIL_WRAPPED_ATTRIBUTION, "Yes, the session was on the 4th."),
        ("apple mail iphone", APPLE_MAIL_REPLY, "It happened twice."),
        ("apple mail desktop, unquoted history", APPLE_MAIL_DESKTOP, "It happened twice."),
        ("bottom-posted inline answers", BOTTOM_POSTED, "It was the 4th of February.\n\nAbout 6pm."),
        ("german outlook", GERMAN_OUTLOOK, "Danke, ich warte auf Ihre Antwort."),
        ("french gmail", FRENCH_GMAIL, "Merci pour votre réponse."),
        ("crlf line endings", GMAIL_REPLY.replace("\n", "\r\n"), "Yes, the session was on the 4th."),
    ],
)
def test_quoted_history_is_removed_for_common_clients(client: str, text: str, expected: str) -> None:
    assert extract_new_text(text) == expected


@pytest.mark.parametrize(
    ("case", "text", "expected"),
    [
        ("forwarded mail is kept whole", FORWARDED, FORWARDED.strip()),
        (
            "a sentence quoting someone is not a header",
            "On Monday my mentor wrote:\n\nYou are useless and I will not come.\n\nI was very upset.",
            "On Monday my mentor wrote:\n\nYou are useless and I will not come.\n\nI was very upset.",
        ),
        (
            "bullet lists are not signatures",
            "What happened:\n- he was late\n- he shouted",
            "What happened:\n- he was late\n- he shouted",
        ),
        (
            "a dashed divider in the sender's text is not history",
            "Part one.\n\n------------------------------\n\nPart two.",
            "Part one.\n\n------------------------------\n\nPart two.",
        ),
        ("dash signature", "I agree.\n\n-- \nJane Doe\n07700 900000", "I agree."),
        ("outlook mobile footer", "I agree.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>", "I agree."),
        (
            "'sent from' inside a sentence is kept",
            "Here it is.\n\nSent from my desk, is much easier then my mobile phone.",
            "Here it is.\n\nSent from my desk, is much easier then my mobile phone.",
        ),
        (
            "mid-line double dash is not a signature",
            "Fix it -- please.\n\nThanks",
            "Fix it -- please.\n\nThanks",
        ),
        # Nothing new is nothing: the caller says so; it never passes the quote on as if it were new.
        ("everything quoted: nothing new", "> only a quote\n> nothing new", ""),
        ("only a device signature: nothing new", "Sent from my iPhone", ""),
        ("an answer typed between quoted lines is kept", "> Did he call?\nNo, never.\n> When?", "No, never."),
        ("a link wrapped out of the quote is quote", "> see\nhttps://example.org/a/very/long/link\n> ok", ""),
        ("blank", "  \n ", ""),
    ],
)
def test_decisions_a_complaints_service_needs(case: str, text: str, expected: str) -> None:
    assert extract_new_text(text) == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (
            "<div>It happened twice.</div><div class='gmail_quote'>On Tue wrote:<blockquote>Dear Jane</blockquote></div>",
            "It happened twice.",
        ),
        ("<p>It happened twice.</p><blockquote>Dear Jane</blockquote><p>Jane</p>", "It happened twice.\n\nJane"),
        ("<p>Fish &amp; chips<br>on Friday</p><style>p {color: red}</style>", "Fish & chips\non Friday"),
    ],
)
def test_html_is_used_when_there_is_no_plain_text(html: str, expected: str) -> None:
    assert extract_new_text("", html) == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>a</p><p>b</p>", "a\n\nb"),
        ("<div>x<script>alert(1)</script></div>", "x"),
        ("<p>kept</p><div id='divRplyFwdMsg'>From: someone</div><p>gone</p>", "kept"),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert html_to_text(html, history=False) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello\n\n-- \nJane", "Hello"),
        ("Hello\n\nSent from my Verizon Wireless BlackBerry", "Hello"),
        ("Hello\n\n--\n" + "\n".join(f"line {n}" for n in range(12)), "Hello\n\n--\n" + "\n".join(f"line {n}" for n in range(12))),
    ],
)
def test_strip_signature(text: str, expected: str) -> None:
    assert strip_signature(text) == expected


# --- Corpus scores -------------------------------------------------------------------------------------------

# Measured with mail-parser-reply 1.36 plus the rules in quotes.py: 64 of the 69 talon oracle cases (the misses are
# an HTML <hr> layout and a polymail attribution talon handles with its own heuristics, one '>>>' link line, and two oracle cases that
# contradict a third on identical input). The libraries alone scored 34/69 (mail-parser-reply) and 29/69
# (email-reply-parser). A drop below the measured level means a rule regressed.
TALON_MIN_PASSED = 64
# Measured: all 23 checks below pass; mail-parser-reply's parse_reply alone passed 14 (it keeps signatures) and
# email-reply-parser alone 22 (it drops a 'Sent from my desk, ...' sentence).
ERP_MIN_PASSED = 23


def _need_corpus() -> None:
    if not SHARED.exists():
        pytest.skip("the shared corpus is not beside this checkout")


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _first_plain_part(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=policy.default)
    part = next(part for part in message.walk() if part.get_content_type() == "text/plain")
    return str(part.get_content())


def _talon_outcomes() -> list[tuple[str, bool]]:
    """Each talon oracle case and whether our quote removal reproduces talon's expected reply."""
    talon = CORPUS / "talon"
    outcomes: list[tuple[str, bool]] = []
    fixtures = json.loads((talon / "oracle" / "fixture_expectations.json").read_text())["fixtures"]
    for name, spec in fixtures.items():
        path = talon / name
        if name.endswith(".eml"):
            got = remove_quoted_history(_first_plain_part(path.read_bytes()))
        else:
            got = remove_quoted_history(html_to_text(path.read_text(errors="replace"), history=False))
        if "expected_visible_reply" in spec and name.endswith(".eml"):
            passed = _normalised(got) == _normalised(spec["expected_visible_reply"])
        elif "expected_visible_reply" in spec:
            # talon compares HTML replies with all whitespace removed.
            passed = re.sub(r"\s", "", got) == re.sub(r"\s", "", spec["expected_visible_reply"])
        elif "expected_visible_reply_html" in spec:
            expected = re.sub(r"<[^>]+>", "", spec["expected_visible_reply_html"])
            passed = re.sub(r"\s", "", got) == re.sub(r"\s", "", expected)
        else:
            # "extract_from_plain result is non-empty and does not contain 'From'".
            passed = bool(got.strip()) and "From" not in got
        outcomes.append((name, passed))
    cases = json.loads((talon / "oracle" / "inline_cases.json").read_text())["cases"]
    for number, case in enumerate(cases):
        # Cases that patch talon's settings or test its HTML entry points do not apply to plain quote removal.
        if case["function"] != "extract_from_plain" or case.get("decorators"):
            continue
        got = remove_quoted_history(case["input"])
        outcomes.append((f"{case['test']}#{number}", _normalised(got) == _normalised(case["expected"])))
    return outcomes


# email_reply_parser ships its oracle as Ruby/Python test code (github test/email_reply_parser_test.rb at 49394b4,
# zapier test/test_email_reply_parser.py); these rows restate those assertions about the visible reply:
# (file, exact expected text or None, must contain, must not contain).
ERP_CHECKS: list[tuple[str, str | None, tuple[str, ...], tuple[str, ...]]] = [
    ("github/emails/correct_sig.txt", "this is an email with a correct -- signature.", (), ()),
    ("github/emails/email_1_1.txt", None, ("Hi folks", "I am currently using the Java HTTP API."), ("riak-users",)),
    ("github/emails/email_1_2.txt", None, ("Hi,", "You can list the keys for the bucket"), ("> ", "riak-users")),
    ("github/emails/email_1_3.txt", None, ("Oh thanks.\n\nHaving",), ("Russell Brown wrote", "riak-users")),
    ("github/emails/email_1_4.txt", None, ("Awesome",), ("Loader", "defunkt")),
    ("github/emails/email_1_6.txt", None, ("I get proper rendering",), ("Was this", "Corey Donohoe")),
    ("github/emails/email_1_7.txt", None, (":+1:",), ("Steps 0-2", "Chris Wanstrath")),
    ("github/emails/email_1_8.txt", None, ("I will reply under this one", "and under this."), ("inline", "signature")),
    ("github/emails/email_2_1.txt", "Outlook with a reply", (), ()),
    ("github/emails/email_2_2.txt", "Outlook with a reply directly above line", (), ()),
    ("github/emails/email_iPhone.txt", "Here is another email", (), ()),
    ("github/emails/email_BlackBerry.txt", "Here is another email", (), ()),
    ("github/emails/email_multi_word_sent_from_my_mobile_device.txt", "Here is another email", (), ()),
    (
        "github/emails/email_sent_from_my_not_signature.txt",
        "Here is another email\n\nSent from my desk, is much easier then my mobile phone.",
        (),
        (),
    ),
    (
        "github/emails/email_bullets.txt",
        "test 2 this should list second\n\nand have spaces\n\nand retain this formatting\n\n\n"
        "   - how about bullets\n   - and another",
        (),
        (),
    ),
    ("github/emails/email_one_is_not_on.txt", None, ("One outstanding question",), ("Dave Tapley wrote",)),
    ("github/emails/email_sig_delimiter_in_middle_of_line.txt", None, ("And here is a fix -- this is not a signature.", "kthxbai"), ()),
    ("github/emails/greedy_on.txt", None, ("On your remote host you can run:", "the tunnel is not working."), ("George Plymale",)),
    ("github/emails/pathological.txt", None, ("I think you're onto something.",), ("John Sullivan",)),
    ("github/emails/email_1_5.txt", None, ("- This is the fourth bullet point", "for a while."), ()),
    ("zapier_extra/emails/email_gmail.txt", None, ("This is a test for inbox replying",), ("xxx@gmail.com",)),
    ("zapier_extra/emails/email_2_3.txt", None, ("Outlook with a reply above headers",), ("Kim via Site",)),
    ("github/emails/email_2_3.txt", None, ("Outlook with a reply directly above line",), ("CRM Comments",)),
]


def erp_check_passes(got: str, exact: str | None, contains: tuple[str, ...], absent: tuple[str, ...]) -> bool:
    if exact is not None and got != exact:
        return False
    return all(text in got for text in contains) and not any(text in got for text in absent)


def test_talon_corpus_score_stays_at_measured_level() -> None:
    _need_corpus()
    outcomes = _talon_outcomes()
    passed = sum(ok for _, ok in outcomes)
    assert len(outcomes) == 69, "the talon oracle changed; re-measure the threshold"
    assert passed >= TALON_MIN_PASSED, [name for name, ok in outcomes if not ok]


def test_email_reply_parser_corpus_score_stays_at_measured_level() -> None:
    _need_corpus()
    failed = []
    for name, exact, contains, absent in ERP_CHECKS:
        got = extract_new_text((CORPUS / "email_reply_parser" / name).read_text())
        if not erp_check_passes(got, exact, contains, absent):
            failed.append(name)
    assert len(ERP_CHECKS) - len(failed) >= ERP_MIN_PASSED, failed



# ---- without_text_of: the lines of our own staff-only letters never pass for the sender's words -------------

NOTIFICATION = """New complaint on 1MM-2026-0001 (External Complaints Procedure, Stage 1).

From: Jane Doe <jane@example.com>
Complainant: jane@example.com
Assigned to: priya.shah@1mm.org.uk
Category: service

----- The complainant wrote -----
Thanks
----------------------------------

Reply to this email to answer the complainant: your reply (without the quoted history) is sent to them.
Commands go on the first lines of your reply:
#note  - keep this reply as an internal note; nothing is sent
#resolve upheld|partly-upheld|not-upheld  - close the case with an outcome"""


@pytest.mark.parametrize(
    "case, reply, expected",
    [
        ("nothing of ours", "I will call you today.\n\nThanks\nPriya", "I will call you today.\n\nThanks\nPriya"),
        ("our lines pasted below", f"I will call you today.\n\n{NOTIFICATION}", "I will call you today."),
        ("only our lines", NOTIFICATION, ""),
        ("a command typed by staff stays", "#resolve upheld\nWe are sorry.", "#resolve upheld\nWe are sorry."),
        ("our command reference goes", "Done.\n\nCommands go on the first lines of your reply:\n#note  - keep this "
         "reply as an internal note; nothing is sent", "Done."),
        ("a short word of ours stays on its own", "Thanks", "Thanks"),
        ("a short line beside ours goes", "OK.\n\nAssigned to: priya.shah@1mm.org.uk\nCategory: service", "OK."),
        ("rendered from HTML cells", "Fine.\n\nAssigned topriya.shah@1mm.org.uk\n\nCategoryservice", "Fine."),
        ("a forward's header block goes", "See below.\n\n---------- Forwarded message ---------\nFrom: One Million "
         "Mentors <complaints@1mm.org.uk>\nDate: Mon, 16 Nov 2026\nTo: <priya@1mm.org.uk>\n\n" + NOTIFICATION,
         "See below."),
        ("re-wrapped pieces go", "Yes.\n\nReply to this email to answer the complainant: your\nreply (without the "
         "quoted history) is sent to them.", "Yes."),
    ],
)
def test_without_text_of_our_letters(case: str, reply: str, expected: str) -> None:
    from mailbot.domain.quotes import without_text_of

    assert without_text_of(reply, [NOTIFICATION]) == expected


# ---- replies in the languages 1MM's complainants write in: attribution, Outlook block, phone signature ---------

QUOTE = "> Dear Jane,\n> Could you tell us the date of the session?\n"
OUTLOOK_BODY = "\nDear Jane,\nCould you tell us the date of the session?\n"
NEW = "Die Sitzung war am 4. März."


@pytest.mark.parametrize(
    "case, reply",
    [
        ("german gmail", f"{NEW}\n\nAm Di., 3. März 2026 um 10:15 Uhr schrieb Complaints <complaints@1mm.org.uk>:\n{QUOTE}"),
        ("german outlook", f"{NEW}\n\nVon: Complaints <complaints@1mm.org.uk>\nGesendet: Dienstag, 3. März 2026 10:15\n"
                           f"An: Jane <jane@example.com>\nBetreff: [1MM-2026-0042] Ihre Beschwerde\n{OUTLOOK_BODY}"),
        ("german original message", f"{NEW}\n\n-----Ursprüngliche Nachricht-----\nVon: Complaints\n{OUTLOOK_BODY}"),
        ("polish gmail", f"{NEW}\n\nwt., 3 mar 2026 o 10:15 Complaints <complaints@1mm.org.uk> napisał(a):\n{QUOTE}"),
        ("polish thunderbird", f"{NEW}\n\nW dniu 3.03.2026 o 10:15, Complaints pisze:\n{QUOTE}"),
        ("polish outlook", f"{NEW}\n\nOd: Complaints <complaints@1mm.org.uk>\nWysłano: wtorek, 3 marca 2026 10:15\n"
                           f"Do: Jane\nTemat: Skarga\n{OUTLOOK_BODY}"),
        ("russian gmail", f"{NEW}\n\nвт, 3 мар. 2026 г. в 10:15, Complaints <complaints@1mm.org.uk>:\n{QUOTE}"),
        ("russian mail.ru", f"{NEW}\n\n3 марта 2026 г., в 10:15, Complaints <complaints@1mm.org.uk> написал:\n{QUOTE}"),
        ("russian outlook", f"{NEW}\n\nОт: Complaints <complaints@1mm.org.uk>\nОтправлено: 3 марта 2026 г. 10:15\n"
                            f"Кому: Jane\nТема: Жалоба\n{OUTLOOK_BODY}"),
        ("russian original message", f"{NEW}\n\n-------- Исходное сообщение --------\nОт: Complaints\n{OUTLOOK_BODY}"),
        ("ukrainian gmail", f"{NEW}\n\nвт, 3 бер. 2026 о 10:15 Complaints <complaints@1mm.org.uk> пише:\n{QUOTE}"),
        ("ukrainian outlook", f"{NEW}\n\nВід: Complaints <complaints@1mm.org.uk>\nНадіслано: 3 березня 2026 р. 10:15\n"
                              f"Кому: Jane\nТема: Скарга\n{OUTLOOK_BODY}"),
        ("spanish gmail", f"{NEW}\n\nEl mar, 3 mar 2026 a las 10:15, Complaints (<complaints@1mm.org.uk>) escribió:\n{QUOTE}"),
        ("spanish outlook", f"{NEW}\n\nDe: Complaints <complaints@1mm.org.uk>\nEnviado: martes, 3 de marzo de 2026 10:15\n"
                            f"Para: Jane\nAsunto: Queja\n{OUTLOOK_BODY}"),
        ("spanish original", f"{NEW}\n\n-----Mensaje original-----\nDe: Complaints\n{OUTLOOK_BODY}"),
        ("french gmail", f"{NEW}\n\nLe mar. 3 mars 2026 à 10:15, Complaints <complaints@1mm.org.uk> a écrit :\n{QUOTE}"),
        ("french outlook", f"{NEW}\n\nDe : Complaints <complaints@1mm.org.uk>\nEnvoyé : mardi 3 mars 2026 10:15\n"
                           f"À : Jane\nObjet : Plainte\n{OUTLOOK_BODY}"),
        ("dutch gmail", f"{NEW}\n\nOp di 3 mrt 2026 om 10:15 schreef Complaints <complaints@1mm.org.uk>:\n{QUOTE}"),
        ("dutch outlook", f"{NEW}\n\nVan: Complaints <complaints@1mm.org.uk>\nVerzonden: dinsdag 3 maart 2026 10:15\n"
                          f"Aan: Jane\nOnderwerp: Klacht\n{OUTLOOK_BODY}"),
        ("italian gmail", f"{NEW}\n\nIl giorno mar 3 mar 2026 alle ore 10:15 Complaints <complaints@1mm.org.uk> ha "
                          f"scritto:\n{QUOTE}"),
        ("italian outlook", f"{NEW}\n\nDa: Complaints <complaints@1mm.org.uk>\nInviato: martedì 3 marzo 2026 10:15\n"
                            f"A: Jane\nOggetto: Reclamo\n{OUTLOOK_BODY}"),
        ("portuguese gmail", f"{NEW}\n\nEm ter., 3 de mar. de 2026 às 10:15, Complaints <complaints@1mm.org.uk> "
                             f"escreveu:\n{QUOTE}"),
        ("portuguese outlook", f"{NEW}\n\nDe: Complaints <complaints@1mm.org.uk>\nEnviada em: terça-feira, 3 de março "
                               f"de 2026 10:15\nPara: Jane\nAssunto: Reclamação\n{OUTLOOK_BODY}"),
        ("welsh gmail", f"{NEW}\n\nAr Maw, 3 Maw 2026 am 10:15, ysgrifennodd Complaints <complaints@1mm.org.uk>:\n{QUOTE}"),
        ("welsh outlook", f"{NEW}\n\nOddi wrth: Complaints <complaints@1mm.org.uk>\nAnfonwyd: 3 Mawrth 2026 10:15\n"
                          f"At: Jane\nPwnc: Cwyn\n{OUTLOOK_BODY}"),
        ("name and address only", f"{NEW}\n\nComplaints <complaints@1mm.org.uk> wrote:\n{QUOTE}"),
        ("mutt", f"{NEW}\n\n* Complaints <complaints@1mm.org.uk> [2026-03-03 10:15]:\n{QUOTE}"),
        ("horde", f"{NEW}\n\nQuoting Complaints <complaints@1mm.org.uk>:\n\n{QUOTE}"),
        ("iphone", f"{NEW}\n\nSent from my iPhone\n\n> On 3 Mar 2026, at 10:15, Complaints wrote:\n{QUOTE}"),
        ("outlook for android", f"{NEW}\n\nGet Outlook for Android<https://aka.ms/AAb9ysg>"),
        ("outlook for android, bare", f"{NEW}\n\nOutlook for Android"),
        ("french iphone", f"{NEW}\n\nEnvoyé de mon iPhone"),
        ("spanish iphone", f"{NEW}\n\nEnviado desde mi iPhone"),
        ("italian iphone", f"{NEW}\n\nInviato da iPhone"),
        ("dutch iphone", f"{NEW}\n\nVerstuurd vanaf mijn iPhone"),
        ("polish phone", f"{NEW}\n\nWysłane z mojego Galaxy"),
        ("russian iphone", f"{NEW}\n\nОтправлено с iPhone"),
        ("ukrainian iphone", f"{NEW}\n\nНадіслано з iPhone"),
        ("welsh iphone", f"{NEW}\n\nAnfonwyd o fy iPhone"),
        ("samsung", f"{NEW}\n\nSent via the Samsung Galaxy S23, an AT&T 5G smartphone"),
    ],
)
def test_replies_in_other_languages_keep_only_the_new_text(case: str, reply: str) -> None:
    assert extract_new_text(reply) == NEW


@pytest.mark.parametrize(
    "text",
    [
        "My mentor wrote: you are not welcome here. That is why I am complaining.",
        "Am Montag hat mein Mentor mich angeschrieben und war sehr unhöflich.",
        "Le coordinateur a écrit : « nous ne pouvons rien faire ». Je ne suis pas d'accord.",
        "He sent me this: jane@example.com is not allowed here.",
    ],
)
def test_a_complainants_own_sentences_that_look_like_attributions_are_kept(text: str) -> None:
    assert extract_new_text(text) == text
