"""The routing chain and threading rules, table-driven over a dict-backed store."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mailbot.domain.chain import RouteConfig, authenticated_sender, route
from mailbot.domain.mail import parse_mail
from mailbot.domain.signing import signed_address

SECRET = b"unit-test-secret"
CFG = RouteConfig(address="complaints@1mm.org.uk", own_addresses=frozenset({"complaints@1mm.org.uk"}),
                  message_id_suffix=".mailbot@1mm.org.uk", secret=SECRET, trusted_authserv_id="mx.1mm.org.uk")


@dataclass
class FakeStore:
    cases: set[str] = field(default_factory=lambda: {"1MM-2026-0001", "1MM-2026-0002"})
    messages: dict[str, str] = field(default_factory=lambda: {"ack-1.mailbot@1mm.org.uk": "1MM-2026-0001",
                                                              "complaint-1@example.com": "1MM-2026-0001"})
    inbound: set[str] = field(default_factory=lambda: {"complaint-1@example.com"})
    outbound: set[str] = field(default_factory=lambda: {"ack-1.mailbot@1mm.org.uk"})
    staff: dict[str, frozenset[str]] = field(default_factory=lambda: {"priya@1mm.org.uk": frozenset({"complaints_team"})})

    def case_exists(self, ref: str) -> bool:
        return ref in self.cases

    def case_for_message_ids(self, ids: tuple[str, ...]) -> str | None:
        return next((self.messages[i] for i in reversed(ids) if i in self.messages), None)

    def is_duplicate(self, message_id: str) -> bool:
        return message_id in self.inbound

    def is_our_message(self, message_id: str) -> bool:
        return message_id in self.outbound

    def staff_roles(self, address: str) -> frozenset[str] | None:
        return self.staff.get(address)


def mail(headers: str, body: str = "Hello") -> bytes:
    return (headers.strip() + "\r\n\r\n" + body).encode()


SIGNED_1 = signed_address("1MM-2026-0001", SECRET, "complaints@1mm.org.uk")
SIGNED_2 = signed_address("1MM-2026-0002", SECRET, "complaints@1mm.org.uk")


@pytest.mark.parametrize(
    "raw, action, ref, rule",
    [
        (mail("From: a@example.com\nMessage-ID: <complaint-1@example.com>\nSubject: x"), "duplicate", None, None),
        (mail("From: a@example.com\nMessage-ID: <n1@example.com>\nSubject: New"), "new_case", None, None),
        (mail("From: a@example.com\nMessage-ID: <n2@example.com>\nSubject: RE: AW: [1mm-2026-0002] x"),
         "follow_up", "1MM-2026-0002", "subject-ref"),
        # A reference to a case that does not exist opens a new case rather than going nowhere.
        (mail("From: a@example.com\nMessage-ID: <n3@example.com>\nSubject: [1MM-2026-0999] x"), "new_case", None, None),
        (mail("From: a@example.com\nMessage-ID: <n4@example.com>\nSubject: x\nIn-Reply-To: <ack-1.mailbot@1mm.org.uk>"),
         "follow_up", "1MM-2026-0001", "in-reply-to"),
        (mail("From: a@example.com\nMessage-ID: <n5@example.com>\nSubject: x\n"
              "References: <unknown@x> <complaint-1@example.com>"), "follow_up", "1MM-2026-0001", "references"),
        (mail("From: a@example.com\nTo: complaints+1mm-2026-0002@1mm.org.uk\nMessage-ID: <n6@example.com>\nSubject: x"),
         "follow_up", "1MM-2026-0002", "plus-address"),
        (mail("From: a@example.com\nTo: complaints@1mm.org.uk\nDelivered-To: complaints+1MM-2026-0001@1mm.org.uk\n"
              "Message-ID: <n7@example.com>\nSubject: x"), "follow_up", "1MM-2026-0001", "plus-address"),
        (mail(f"From: priya@1mm.org.uk\nTo: {SIGNED_1}\nMessage-ID: <s1@1mm.org.uk>\nSubject: Re: [1MM-2026-0001] x"),
         "staff", "1MM-2026-0001", "subject-ref"),
        # Another case's signature does not make a staff reply on this case.
        (mail(f"From: priya@1mm.org.uk\nTo: {SIGNED_2}\nMessage-ID: <s2@1mm.org.uk>\nSubject: Re: [1MM-2026-0001] x"),
         "follow_up", "1MM-2026-0001", "subject-ref"),
        (mail("From: priya@1mm.org.uk\nMessage-ID: <s3@1mm.org.uk>\nSubject: Re: [1MM-2026-0001] x\n"
              "Authentication-Results: mx.1mm.org.uk; dkim=pass header.d=1mm.org.uk"), "staff", "1MM-2026-0001",
         "subject-ref"),
        (mail("From: someone@example.com\nMessage-ID: <o1@x>\nSubject: Automatic reply: x\nAuto-Submitted: auto-replied\n"
              "In-Reply-To: <ack-1.mailbot@1mm.org.uk>"), "automated", "1MM-2026-0001", "in-reply-to"),
        (b"\x00\x01\x02", "unreadable", None, None),
    ],
)
def test_routing(raw: bytes, action: str, ref: str | None, rule: str | None) -> None:
    verdict = route(parse_mail(raw), FakeStore(), CFG)
    assert verdict.action == action
    assert verdict.ref == ref
    if rule:
        assert verdict.thread is not None and verdict.thread.rule == rule


def test_a_staff_from_without_proof_is_flagged_not_obeyed() -> None:
    raw = mail("From: priya@1mm.org.uk\nMessage-ID: <f1@x>\nSubject: Re: [1MM-2026-0001] x")
    verdict = route(parse_mail(raw), FakeStore(), CFG)
    assert verdict.action == "follow_up" and verdict.claimed_staff


@pytest.mark.parametrize(
    "header, trusted",
    [
        ("mx.1mm.org.uk; dkim=pass header.d=1mm.org.uk", True),
        ("mx.1mm.org.uk; dmarc=pass header.from=1mm.org.uk", True),
        ("mx.1mm.org.uk; dkim=fail header.d=1mm.org.uk", False),
        ("mx.1mm.org.uk; dkim=pass header.d=evil.example", False),
        ("evil.example; dkim=pass header.d=1mm.org.uk", False),  # someone else's server vouching
        ("mx.1mm.org.uk; dkim=pass header.d=1mm.org.uk; dmarc=fail header.from=1mm.org.uk", False),
        ("mx.1mm.org.uk 1; dkim=pass (good signature) header.d=1mm.org.uk header.i=@1mm.org.uk", True),
        ("MX.1mm.org.uk; DMARC=pass (p=reject) header.from=1MM.org.uk", True),
        ("mx.1mm.org.uk; none", False),
        ("mx.1mm.org.uk; dkim=pass header.d=1mm.org.uk;;; garbage ((", False),
    ],
)
def test_authentication_results_only_from_our_server(header: str, trusted: bool) -> None:
    parsed = parse_mail(mail(f"From: priya@1mm.org.uk\nAuthentication-Results: {header}\nSubject: x"))
    assert authenticated_sender(parsed, "mx.1mm.org.uk") is trusted


OURS_FAIL = "mx.1mm.org.uk; spf=fail smtp.mailfrom=1mm.org.uk; dkim=none; dmarc=fail header.from=1mm.org.uk"
FORGED = "mx.1mm.org.uk; dkim=pass header.d=1mm.org.uk; dmarc=pass header.from=1mm.org.uk"


@pytest.mark.parametrize(
    "headers, trusted",
    [
        ((OURS_FAIL, FORGED), False),  # the forger's header below ours
        ((FORGED, OURS_FAIL), False),  # the forger's header above ours
        ((FORGED.replace("mx.", "mx2."), OURS_FAIL), False),  # someone else's on top, ours failing below
        (("evil.example; dkim=pass header.d=1mm.org.uk", FORGED), True),  # another server's header is ignored
        ((FORGED, FORGED), True),
    ],
)
def test_a_forged_authentication_results_beside_ours_confers_nothing(headers: tuple[str, str], trusted: bool) -> None:
    lines = "".join(f"Authentication-Results: {h}\n" for h in headers)
    parsed = parse_mail(mail(f"{lines}From: priya@1mm.org.uk\nSubject: x"))
    assert authenticated_sender(parsed, "mx.1mm.org.uk") is trusted


FORM = "From: Website <noreply@forms.example.org>\nTo: complaints@1mm.org.uk\nMessage-ID: <{n}@forms.example.org>\n" \
       "Subject: Contact form: complaint\n"
FORM_CFG = RouteConfig(address="complaints@1mm.org.uk", own_addresses=frozenset({"complaints@1mm.org.uk"}),
                       message_id_suffix=".mailbot@1mm.org.uk", secret=SECRET,
                       form_senders=frozenset({"forms@trusted.example.org"}))


@pytest.mark.parametrize(
    "headers, action",
    [
        # A form's no-reply From with one person in Reply-To, addressed to us: a complaint.
        (FORM.format(n="f1") + "Reply-To: Pat Smith <pat@example.com>", "new_case"),
        # No Reply-To, two, our own address or a robot's: still a robot's mail.
        (FORM.format(n="f2"), "automated"),
        (FORM.format(n="f3") + "Reply-To: pat@example.com, sam@example.com", "automated"),
        (FORM.format(n="f4") + "Reply-To: alveena.malik@1mm.org.uk", "automated"),
        (FORM.format(n="f5") + "Reply-To: no-reply@example.com", "automated"),
        # Any other sign of automation keeps it filed: an auto-reply or a bulk mailing with a Reply-To.
        (FORM.format(n="f6") + "Reply-To: pat@example.com\nAuto-Submitted: auto-generated", "automated"),
        (FORM.format(n="f7") + "Reply-To: pat@example.com\nPrecedence: bulk", "automated"),
        # Not addressed to us (a newsletter we are copied on blind).
        (FORM.format(n="f8").replace("To: complaints@1mm.org.uk", "To: news@example.org")
         + "Reply-To: pat@example.com", "automated"),
        # A form sender named in MAILBOT_FORM_SENDERS is trusted even with the headers its service adds.
        ("From: forms@trusted.example.org\nTo: complaints@1mm.org.uk\nMessage-ID: <f9@x>\nSubject: Form\n"
         "Auto-Submitted: auto-generated\nReply-To: pat@example.com", "new_case"),
        # ... but never a bounce.
        ("From: forms@trusted.example.org\nTo: complaints@1mm.org.uk\nMessage-ID: <f10@x>\n"
         "Subject: Undelivered Mail Returned to Sender\nReply-To: pat@example.com\n"
         "Content-Type: multipart/report; report-type=delivery-status; boundary=B", "automated"),
    ],
)
def test_form_mail(headers: str, action: str) -> None:
    assert route(parse_mail(mail(headers)), FakeStore(), FORM_CFG).action == action


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0c2a9b0e-1111-4222-8333-944455556666"


def stamp(authas: str = "Internal", cross_authas: str = "Internal", tenant: str = TENANT) -> str:
    """The headers Exchange Online leaves on mail a user of the tenant sent (as seen over IMAP)."""
    return (f"X-MS-Exchange-Organization-AuthAs: {authas}\nX-MS-Exchange-Organization-AuthSource: "
            f"AM0PR01MB1234.eurprd01.prod.exchangelabs.com\nX-MS-Exchange-CrossTenant-AuthAs: {cross_authas}\n"
            f"X-MS-Exchange-CrossTenant-Id: {tenant}\nX-MS-Exchange-CrossTenant-FromEntityHeader: Hosted\n")


@pytest.mark.parametrize(
    "headers, configured, trusted",
    [
        (stamp(), TENANT, True),
        (stamp(tenant=TENANT.upper()), TENANT, True),
        (stamp(), None, False),  # not switched on: the same headers are forgeable where Exchange is not in the path
        (stamp(tenant=OTHER_TENANT), TENANT, False),  # internal to someone else's tenant
        (stamp(authas="Anonymous"), TENANT, False),  # what Exchange stamps on mail from the internet
        (stamp(cross_authas="Anonymous"), TENANT, False),
        # A sender outside wrote "Internal" above Exchange's own "Anonymous": two copies vouch for nothing.
        ("X-MS-Exchange-Organization-AuthAs: Internal\n" + stamp(authas="Anonymous"), TENANT, False),
        (f"X-MS-Exchange-CrossTenant-Id: {TENANT}\n" + stamp(tenant=OTHER_TENANT), TENANT, False),
        ("X-MS-Exchange-Organization-AuthAs: Internal\n", TENANT, False),  # half a stamp
        ("", TENANT, False),
    ],
)
def test_exchange_onlines_inside_the_tenant_stamp(headers: str, configured: str | None, trusted: bool) -> None:
    parsed = parse_mail(mail(f"{headers}From: priya@1mm.org.uk\nSubject: x"))
    assert authenticated_sender(parsed, None, configured) is trusted


def test_a_staff_command_with_the_exchange_stamp_is_obeyed_and_without_it_is_not() -> None:
    from dataclasses import replace

    cfg = replace(CFG, trusted_authserv_id=None, exchange_tenant_id=TENANT)
    subject = "Message-ID: <s1@x>\nSubject: Re: [1MM-2026-0001] x"
    genuine = route(parse_mail(mail(f"{stamp()}From: priya@1mm.org.uk\n{subject}")), FakeStore(), cfg)
    forged = route(parse_mail(mail(f"{stamp(tenant=OTHER_TENANT)}From: priya@1mm.org.uk\n{subject}")), FakeStore(), cfg)
    assert genuine.action == "staff"
    assert forged.action == "follow_up" and forged.claimed_staff
