"""The routing chain: what to do with one inbound message, decided by pure rules in a fixed order.

Like GNU Mailman's chains, the policy is a tuple of (name, rule) read top to bottom; the first
rule that returns a verdict decides, and the names of every rule consulted are kept on the
verdict for the audit trail. The store is reached only through the ``RouteLookup`` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import authres

from mailbot.domain.commands import OnBehalf, on_behalf_line, parse_on_behalf
from mailbot.domain.forwards import Forwarded, forwarded
from mailbot.domain.mail import InboundMail
from mailbot.domain.rules import AutomatedVerdict, classify_automated, is_own_address, is_robot_address
from mailbot.domain.signing import verify_signature
from mailbot.domain.threads import CaseLookup, ThreadMatch, match_case


class RouteLookup(CaseLookup, Protocol):
    def is_duplicate(self, message_id: str) -> bool: ...

    def is_our_message(self, message_id: str) -> bool: ...

    def staff_roles(self, address: str) -> frozenset[str] | None: ...


@dataclass(frozen=True)
class RouteConfig:
    address: str  # complaints@1mm.org.uk
    own_addresses: frozenset[str]
    message_id_suffix: str  # ".mailbot@1mm.org.uk"
    secret: bytes
    trusted_authserv_id: str | None = None
    # Microsoft 365: the tenant whose "sent from inside" stamp is trusted (MAILBOT_TRUST_EXCHANGE_INTERNAL).
    exchange_tenant_id: str | None = None
    # Web-form senders trusted outright (MAILBOT_FORM_SENDERS): never filed as robots or auto-replies.
    form_senders: frozenset[str] = frozenset()
    # The address letters publish for writing to the Chief Executive (MAILBOT_CEO_ADDRESS), when set.
    ceo_address: str | None = None


@dataclass(frozen=True)
class Verdict:
    # duplicate, automated, unreadable, staff, follow_up, new_case, on_behalf, ceo_direct
    action: str
    # What the message is recorded as: new_case, follow_up, staff_reply, bounce, auto_reply, ...
    kind: str
    rules: tuple[str, ...] = ()
    thread: ThreadMatch | None = None
    automated: AutomatedVerdict | None = None
    # A staff From without the signed address or authentication: kept, warned about, never obeyed.
    claimed_staff: bool = False
    staff_roles: frozenset[str] = field(default_factory=frozenset)
    # What the rule read from the message, so nothing downstream reads it again: a CEO's forward's original,
    # a member of staff's #on-behalf-of line.
    forwarded: Forwarded | None = None
    on_behalf: OnBehalf | None = None

    @property
    def ref(self) -> str | None:
        return self.thread.ref if self.thread else None


Rule = Callable[[InboundMail, RouteLookup, RouteConfig], "Verdict | None"]


def _duplicate(mail: InboundMail, lookup: RouteLookup, cfg: RouteConfig) -> Verdict | None:
    if lookup.is_duplicate(mail.message_id):
        return Verdict("duplicate", "duplicate")
    return None


def _automated(mail: InboundMail, lookup: RouteLookup, cfg: RouteConfig) -> Verdict | None:
    auto = classify_automated(mail, own_addresses=cfg.own_addresses, own_message_id_suffix=cfg.message_id_suffix)
    if not auto.automated and mail.has_message_id and lookup.is_our_message(mail.message_id):
        auto = AutomatedVerdict("own_mail", ("message-id is one of our letters",))
    if not auto.automated or is_form_mail(mail, auto, cfg):
        return None
    thread = match_case(mail, lookup, cfg.address)
    if thread is None and auto.bounced_message_ids:
        ref = lookup.case_for_message_ids(auto.bounced_message_ids)
        if ref:
            thread = ThreadMatch(ref, "bounced-message")
    return Verdict("automated", auto.kind, rules=auto.reasons, thread=thread, automated=auto)


# What a form sender may look like and still be a person's complaint: a no-reply From, or (for a sender named
# in MAILBOT_FORM_SENDERS) the headers a form service adds. Bounces, loops and our own mail never are.
_FORM_MAY_LOOK_LIKE = frozenset({"robot_sender"})
_TRUSTED_FORM_MAY_LOOK_LIKE = frozenset({"robot_sender", "auto_reply", "bulk", "list"})


def is_form_mail(mail: InboundMail, auto: AutomatedVerdict, cfg: RouteConfig) -> bool:
    """A web form's message carrying one person's complaint, though its From looks like a robot's.

    Forms mail the complaints address from noreply@... with the person in Reply-To. Such mail is a
    complaint when the only sign of a robot is the no-reply From (no Auto-Submitted, list or bulk
    headers), it is addressed to us, and Reply-To names exactly one address that is neither ours nor a
    robot's. A sender in MAILBOT_FORM_SENDERS is trusted outright: its auto-generated headers are ignored.
    """
    human = [a for a in mail.reply_to if a and not is_own_address(a, cfg.own_addresses)
             and a.rpartition("@")[2] != cfg.address.rpartition("@")[2] and not is_robot_address(a)]
    if len(human) != 1 or len(set(mail.reply_to)) != 1:
        return False
    if mail.from_addr.lower() in cfg.form_senders:
        return auto.kind in _TRUSTED_FORM_MAY_LOOK_LIKE
    addressed_to_us = any(is_own_address(a, cfg.own_addresses) for a in (*mail.to, *mail.cc, *mail.delivered_to))
    only_robot_from = all(reason.startswith("robot sender") for reason in auto.reasons)
    return auto.kind in _FORM_MAY_LOOK_LIKE and only_robot_from and addressed_to_us


def _unreadable(mail: InboundMail, lookup: RouteLookup, cfg: RouteConfig) -> Verdict | None:
    if mail.readable:
        return None
    return Verdict("unreadable", "unreadable", rules=mail.defects[:5], thread=match_case(mail, lookup, cfg.address))


def _is_ceo(address: str, lookup: RouteLookup, cfg: RouteConfig) -> bool:
    return bool(address) and (address == cfg.ceo_address or "ceo" in (lookup.staff_roles(address) or ()))


def _to_the_ceo(mail: InboundMail, lookup: RouteLookup, cfg: RouteConfig) -> Verdict | None:
    """The procedures' last stage: the complainant writes to the Chief Executive directly.

    Two shapes reach us: the CEO forwards their mail to the complaints address (only with our own server's
    word for the CEO's address: a forged forward would move cases and write to people), or the complainant
    writes to the CEO and copies us in. Either threads to its case (by reference, by the forwarded message's
    ids) or opens one, at that stage. The CEO's own replies through a case's signed address stay staff replies.
    """
    if _is_ceo(mail.from_addr, lookup, cfg):
        thread = match_case(mail, lookup, cfg.address)
        if thread is not None and verify_signature(thread.ref, thread.signature, cfg.secret):
            return None
        original = forwarded(mail)
        if original is None or _is_ceo(original.sender, lookup, cfg):
            return None
        if not authenticated_sender(mail, cfg.trusted_authserv_id, cfg.exchange_tenant_id):
            return Verdict("unreadable", "unverified_command", thread=thread, rules=(
                "a forward from the Chief Executive's address without trusted authentication "
                "(MAILBOT_TRUSTED_AUTHSERV_ID): not obeyed",))
        if thread is None and original.message_ids:
            ref = lookup.case_for_message_ids(original.message_ids)
            thread = ThreadMatch(ref, "forwarded-message") if ref else None
        return Verdict("ceo_direct", "ceo_forward", rules=("forwarded by the Chief Executive",), thread=thread,
                       forwarded=original)
    if lookup.staff_roles(mail.from_addr) is None and any(_is_ceo(a, lookup, cfg) for a in (*mail.to, *mail.cc)):
        return Verdict("ceo_direct", "ceo_direct", rules=("written to the Chief Executive",),
                       thread=match_case(mail, lookup, cfg.address))
    return None


def _threaded(mail: InboundMail, lookup: RouteLookup, cfg: RouteConfig) -> Verdict | None:
    thread = match_case(mail, lookup, cfg.address)
    if thread is None:
        return None
    roles = lookup.staff_roles(mail.from_addr)
    if roles is None:
        return Verdict("follow_up", "follow_up", rules=(thread.rule,), thread=thread)
    if verify_signature(thread.ref, thread.signature, cfg.secret):
        return Verdict("staff", "staff_reply", rules=(thread.rule, "signed-address"), thread=thread, staff_roles=roles)
    if authenticated_sender(mail, cfg.trusted_authserv_id, cfg.exchange_tenant_id):
        return Verdict("staff", "staff_reply", rules=(thread.rule, "authentication-results"), thread=thread,
                       staff_roles=roles)
    return Verdict("follow_up", "follow_up", rules=(thread.rule, "unverified-staff-from"), thread=thread,
                   claimed_staff=True)


def _on_behalf(mail: InboundMail, lookup: RouteLookup, cfg: RouteConfig) -> Verdict | None:
    """A member of staff logging a complaint made by phone, post or in person (``#on-behalf-of``).

    Obeyed only when our own server vouches for the sender (there is no case, so no signed address yet):
    a forged one could otherwise open cases, and send acknowledgements, in anyone's name. Unverified, it
    is kept and the complaints team told, never opened and never answered.
    """
    roles = lookup.staff_roles(mail.from_addr)
    if roles is None or on_behalf_line(mail.text) is None:
        return None
    if not authenticated_sender(mail, cfg.trusted_authserv_id, cfg.exchange_tenant_id):
        return Verdict("unreadable", "unverified_command", rules=(
            "#on-behalf-of from a staff address without trusted authentication (MAILBOT_TRUSTED_AUTHSERV_ID): "
            "not obeyed",))
    try:
        person = parse_on_behalf(on_behalf_line(mail.text) or "")
    except ValueError as problem:
        return Verdict("unreadable", "unverified_command", rules=(f"#on-behalf-of could not be read: {problem}",))
    return Verdict("on_behalf", "on_behalf", rules=("on-behalf-of", "authentication-results"), staff_roles=roles,
                   on_behalf=person)


def _new_case(mail: InboundMail, lookup: RouteLookup, cfg: RouteConfig) -> Verdict | None:
    return Verdict("new_case", "new_case", rules=("no-thread",))


CHAIN: tuple[tuple[str, Rule], ...] = (
    ("duplicate", _duplicate),
    ("automated", _automated),
    ("unreadable", _unreadable),
    ("to-the-ceo", _to_the_ceo),
    ("threaded", _threaded),
    ("on-behalf-of", _on_behalf),
    ("new-case", _new_case),
)


def route(mail: InboundMail, lookup: RouteLookup, cfg: RouteConfig) -> Verdict:
    """Run the chain; the last rule always decides, so this always returns a verdict."""
    for _name, rule in CHAIN:
        verdict = rule(mail, lookup, cfg)
        if verdict is not None:
            return verdict
    raise AssertionError("the chain's last rule always decides")  # pragma: no cover


def authenticated_sender(mail: InboundMail, trusted_authserv_id: str | None,
                         exchange_tenant_id: str | None = None) -> bool:
    """True when our own receiving server vouches for the sender: by Authentication-Results with our
    authserv-id, or (Microsoft 365, whose header carries none) by Exchange Online's stamp of mail sent from
    inside our own tenant (``exchange_internal``).

    Anyone can write an Authentication-Results header naming our server, above or below the one our
    server prepends (RFC 8601 section 5), so headers with another authserv-id are ignored and every
    header with ours must vouch: dmarc=pass for the From domain, or dkim=pass for it with no DMARC
    verdict. One with our id that says anything else (dmarc=fail, none, or that does not parse) wins,
    so a forged "pass" beside our server's "fail" confers nothing.
    """
    if "@" not in mail.from_addr:
        return False
    if exchange_tenant_id and exchange_internal(mail, exchange_tenant_id):
        return True
    if not trusted_authserv_id:
        return False
    domain = mail.from_addr.rsplit("@", 1)[1].lower()
    ours = [value for value in mail.headers.get("authentication-results", ())
            if _authserv_id(value) == trusted_authserv_id.lower()]
    return bool(ours) and all(_vouches_for(value, domain) for value in ours)


# Exchange Online stamps these on mail a user of the tenant sent. Its header firewall strips every
# X-MS-Exchange-Organization-* header from mail entering the tenant from outside and stamps its own
# ("AuthAs: Anonymous"), so a sender outside cannot bring "Internal" in; the CrossTenant pair names the tenant
# that vouched (mail from another Microsoft 365 tenant says Internal there, with that tenant's id).
EXCHANGE_INTERNAL_STAMP = (
    ("x-ms-exchange-organization-authas", "internal"),
    ("x-ms-exchange-crosstenant-authas", "internal"),
)


def exchange_internal(mail: InboundMail, tenant_id: str) -> bool:
    """True when Exchange Online says this was sent from inside the tenant ``tenant_id``: each stamp present
    exactly once (a second copy means someone wrote one), and the tenant ours."""
    def only(name: str) -> str | None:
        values = mail.headers.get(name, ())
        return values[0].strip().lower() if len(values) == 1 else None

    return all(only(name) == value for name, value in EXCHANGE_INTERNAL_STAMP) and \
        only("x-ms-exchange-crosstenant-id") == tenant_id.strip().lower()


def _authserv_id(value: str) -> str:
    return value.split(";", 1)[0].strip().split(" ", 1)[0].lower()


def _vouches_for(value: str, domain: str) -> bool:
    try:
        header = authres.AuthenticationResultsHeader.parse_value(" ".join(value.split()))
    except Exception:  # noqa: BLE001  (a header that does not parse vouches for nobody)
        return False
    dkim_pass, dmarc = False, set()
    for result in header.results:
        method, outcome = str(result.method).lower(), str(result.result).lower()
        props = {f"{p.type}.{p.name}".lower(): str(p.value).lower() for p in result.properties}
        if method == "dmarc":
            dmarc.add(outcome if props.get("header.from") == domain else "other-domain")
        elif method == "dkim" and outcome == "pass" and props.get("header.d") == domain:
            dkim_pass = True
    if dmarc:
        return dmarc == {"pass"}
    return dkim_pass
