"""Which case does a message belong to? Pure, given a lookup into what we have recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mailbot.domain.mail import InboundMail
from mailbot.domain.signing import find_ref_in_subject, parse_plus_address


class CaseLookup(Protocol):
    """What threading needs to know about the store; tests pass a dict-backed fake."""

    def case_exists(self, ref: str) -> bool: ...

    def case_for_message_ids(self, message_ids: tuple[str, ...]) -> str | None: ...


@dataclass(frozen=True)
class ThreadMatch:
    ref: str
    rule: str  # "subject-ref", "in-reply-to", "references", "plus-address"
    signature: str | None = None  # the plus address's signature, for the staff check


def plus_addresses(mail: InboundMail) -> tuple[str, ...]:
    """Every recipient header a plus address of ours can arrive in."""
    return mail.to + mail.cc + mail.delivered_to


def match_case(mail: InboundMail, lookup: CaseLookup, our_address: str) -> ThreadMatch | None:
    """The threading rules, in the order the brief fixes: subject reference, our message ids, plus address."""
    ref = find_ref_in_subject(mail.subject)
    if ref and lookup.case_exists(ref):
        return ThreadMatch(ref, "subject-ref", signature=_signature_for(mail, ref, our_address))
    if mail.in_reply_to:
        found = lookup.case_for_message_ids(mail.in_reply_to)
        if found:
            return ThreadMatch(found, "in-reply-to", signature=_signature_for(mail, found, our_address))
    if mail.references:
        found = lookup.case_for_message_ids(mail.references)
        if found:
            return ThreadMatch(found, "references", signature=_signature_for(mail, found, our_address))
    for addr in plus_addresses(mail):
        plus = parse_plus_address(addr, our_address)
        if plus and lookup.case_exists(plus.ref):
            return ThreadMatch(plus.ref, "plus-address", signature=plus.signature)
    return None


def _signature_for(mail: InboundMail, ref: str, our_address: str) -> str | None:
    """The signature on a plus address for this very case, if the message reached one."""
    for addr in plus_addresses(mail):
        plus = parse_plus_address(addr, our_address)
        if plus and plus.ref == ref and plus.signature:
            return plus.signature
    return None
