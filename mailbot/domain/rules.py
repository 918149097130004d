"""Is this message from a machine? The automated-mail verdict (RFC 3834 and real-world practice).

A bot that acknowledges complaints must never answer a bounce, an auto-reply, a mailing list or
itself, or two robots will mail each other for ever. The rules are an ordered table, in the
manner of GNU Mailman's chains: every rule is tried so the audit trail shows all that fired, and
the first rule that fired decides the kind.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from functools import cached_property

from mailbot.domain.mail import InboundMail, extract_message_ids

HUMAN = "human"


@dataclass(frozen=True)
class AutomatedVerdict:
    kind: str  # "human", or one of: "bounce", "delivery_report", "auto_reply", "list", "bulk", "loop", "own_mail", "robot_sender"
    reasons: tuple[str, ...]  # human-readable rule names that fired, e.g. "auto-submitted: auto-replied"
    bounced_message_ids: tuple[str, ...] = ()  # for bounces/DSNs: ids (no brackets) of the ORIGINAL messages
    failed_recipients: tuple[str, ...] = ()  # for bounces: addresses that failed permanently

    @property
    def automated(self) -> bool:
        return self.kind != HUMAN


def is_own_address(addr: str, own_addresses: frozenset[str]) -> bool:
    """True for one of our addresses, including any ``local+tag@domain`` sub-address of one."""
    address = addr.strip().strip("<>").lower()
    if address in own_addresses:
        return True
    local, at, domain = address.rpartition("@")
    if not at or "+" not in local:
        return False
    return f"{local.split('+', 1)[0]}@{domain}" in own_addresses


def is_robot_address(address: str) -> bool:
    """An address no person writes from (noreply@, mailer-daemon@, list-bounces@ ...)."""
    local = address.lower().rpartition("@")[0]
    return bool(local) and bool(_ROBOT_LOCAL_PARTS.match(local))


def classify_automated(
    mail: InboundMail, *, own_addresses: frozenset[str], own_message_id_suffix: str
) -> AutomatedVerdict:
    """Run every rule in :data:`RULES`; the first that fires names the kind."""
    facts = _Facts(mail, own_addresses, own_message_id_suffix.lower().strip("<>"))
    kind = HUMAN
    reasons: list[str] = []
    for rule in RULES:
        try:
            detail = rule.test(facts)
        except Exception as error:  # One rule tripping over odd input must not hide the others.
            reasons.append(f"{rule.name}: rule failed ({type(error).__name__})")
            continue
        if detail is None:
            continue
        reasons.append(f"{rule.name}: {detail}" if detail else rule.name)
        if kind == HUMAN:
            kind = rule.kind
    if kind != "bounce":
        return AutomatedVerdict(kind, tuple(reasons))
    # Read from the report's own parts, which the parser's clean-up never saw: an id or address with a control
    # character in it names nothing of ours (and PostgreSQL's text columns refuse NUL), so it is left out.
    return AutomatedVerdict(
        kind, tuple(reasons), tuple(i for i in facts.bounced_message_ids if i.isprintable()),
        tuple(sorted(a for a in facts.failed_recipients if a.isprintable()))
    )


# ---------------------------------------------------------------------------------------------
# Facts: what the rules look at, each worked out at most once per message.

# Local parts no person writes from: mail systems, list servers and no-reply senders, in the spellings
# MTAs and list software use (post_master, MAILER-DAEMON, owner-list, list-request, list-bounces, ...).
_ROBOT_LOCAL_PARTS = re.compile(
    r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|mdaemon|post[-_.]?master|postoffice|ndr|no[-_.]?reply|noreply"
    r"|do[-_.]?not[-_.]?reply|dont[-_.]?reply|bounces?|bounce[-_.+].*|mail[-_.]?delivery[-_.]?(?:system|subsystem)?"
    r"|listserv|listproc|majordomo|majordom|sympa|mailman|fml|ezmlm|lyris|smartlist"
    r"|owner[-_.].+|.+[-_.]request|.+[-_.]bounces?|.+[-_.]errors?|.+[-_.]admin-?bounce.*)"
    r"(?:[+\-=.].*)?$"
)
# Only the delivery system itself uses these as the envelope sender (Return-Path).
_MAIL_SYSTEM_LOCAL_PARTS = re.compile(r"^(?:mailer[-_.]?daemon|post[-_.]?master)$")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|returned to sender|delivery (status notification|failure|failed|has failed|problem"
    r"|notification)|mail delivery (failed|failure|system|warning)|failure notice|user unknown|rejected mail"
    r"|automatically rejected|non[- ]?delivery|could not be delivered"
    r"|message not delivered|mail system error|delivery unsuccessful|unzustellbar|nicht zustellbar"
    r"|zustellstatus|übermittlungsstatus|non remis|non distribuable|rapport de non|warning: could not send",
    re.IGNORECASE,
)
# Anchored at the start: auto-responders put their marker first, people write "Re: ..." or words.
_OUT_OF_OFFICE_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matic)?[- ]?(reply|response)\b|auto:|out of (the )?office|ooo\b|vacation:"
    r"|on vacation|abwesenheitsnotiz|automatische antwort|abwesend|réponse automatique|absence du bureau"
    r"|respuesta automática|fuera de la oficina|risposta automatica|fuori sede|automatisch antwoord|afwezig"
    r"|autosvar|automatiskt svar|fraværsmelding|automaattinen vastaus|resposta automática)",
    re.IGNORECASE,
)
_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?([\w-]+)", re.IGNORECASE)
_ENCLOSED_ID_LINE = re.compile(r"^\s*message-id:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class _Facts:
    def __init__(self, mail: InboundMail, own_addresses: frozenset[str], own_suffix: str) -> None:
        self.mail = mail
        self.own_addresses = own_addresses
        self.own_suffix = own_suffix

    def first(self, name: str) -> str:
        return (self.mail.header(name) or "").strip()

    @cached_property
    def report_type(self) -> str:
        if self.mail.content_type != "multipart/report":
            return ""
        match = _REPORT_TYPE.search(self.first("content-type"))
        return match.group(1).lower() if match else ""

    @cached_property
    def robot_local_part(self) -> str | None:
        local = self.mail.from_addr.rpartition("@")[0] or self.mail.from_addr
        return local if _ROBOT_LOCAL_PARTS.match(local) else None

    @cached_property
    def mail_system_return_path(self) -> bool:
        for value in self.mail.headers.get("return-path", ()):
            address = value.strip().strip("<>").lower()
            if _MAIL_SYSTEM_LOCAL_PARTS.match(address.rpartition("@")[0] or address):
                return True
        return False

    @cached_property
    def bounce_subject(self) -> bool:
        return bool(_BOUNCE_SUBJECT.search(self.mail.subject))

    @cached_property
    def null_return_path(self) -> bool:
        return any(value.strip() in ("<>", "") for value in self.mail.headers.get("return-path", ()))

    @cached_property
    def stdlib_message(self) -> Message | None:
        try:
            return email.message_from_bytes(self.mail.raw, policy=email.policy.compat32)
        except Exception:
            return None

    @cached_property
    def dsn_recipients(self) -> tuple[frozenset[str], bool]:
        """Permanently failed recipients from message/delivery-status parts, and whether any exist."""
        failed: set[str] = set()
        seen_report = False
        message = self.stdlib_message
        for part in message.walk() if message is not None else ():
            if part.get_content_type() != "message/delivery-status":
                continue
            seen_report = True
            blocks = part.get_payload()
            for block in blocks if isinstance(blocks, list) else ():
                action = str(block.get("action", "")).strip().lower()
                status = str(block.get("status", "")).strip()
                # The original recipient is the address we wrote to; the final one may be an alias.
                recipient = str(block.get("original-recipient") or block.get("final-recipient") or "")
                if action == "failed" or (not action and status.startswith("5")):
                    address = recipient.rpartition(";")[2].strip().strip("<>").lower()
                    if "@" in address:
                        failed.add(address)
        return frozenset(failed), seen_report

    @cached_property
    def flufl_failures(self) -> tuple[frozenset[str], frozenset[str]]:
        """(temporary, permanent) failed recipients according to flufl.bounce's detectors."""
        message = self.stdlib_message
        if message is None:
            return frozenset(), frozenset()
        from flufl.bounce import all_failures  # here: only mail from a robot gets this far

        try:
            temporary, permanent = all_failures(message)
        except Exception:  # A detector crash on odd input must not stop the classification.
            return frozenset(), frozenset()
        return _address_set(temporary), _address_set(permanent)

    @property
    def flufl_recipients(self) -> frozenset[str]:
        return self.flufl_failures[1]

    @cached_property
    def failed_recipients(self) -> frozenset[str]:
        from_header = {
            address.strip().strip("<>").lower()
            for value in self.mail.headers.get("x-failed-recipients", ())
            for address in value.split(",")
            if "@" in address
        }
        return from_header | self.dsn_recipients[0] | self.flufl_recipients

    @cached_property
    def bounced_message_ids(self) -> tuple[str, ...]:
        """Ids of the original messages: enclosed message or headers, then threading headers."""
        ids: dict[str, None] = {}
        message = self.stdlib_message
        for part in message.walk() if message is not None else ():
            content_type = part.get_content_type()
            if content_type in ("message/rfc822", "message/global"):
                enclosed = part.get_payload()
                for inner in enclosed if isinstance(enclosed, list) else ():
                    for value in inner.get_all("message-id") or ():
                        ids.update(dict.fromkeys(extract_message_ids(str(value))))
            elif content_type in ("text/rfc822-headers", "message/rfc822-headers"):
                headers = part.get_payload(decode=True) or b""
                text = headers.decode("utf-8", "replace") if isinstance(headers, bytes) else str(headers)
                for found in _ENCLOSED_ID_LINE.findall(text):
                    ids.update(dict.fromkeys(extract_message_ids(found)))
        if not ids:
            # Plain-text bounces quote the original's headers in the body.
            for found in _ENCLOSED_ID_LINE.findall(self.mail.text):
                ids.update(dict.fromkeys(extract_message_ids(found)))
        ids.update(dict.fromkeys(self.mail.in_reply_to))
        ids.update(dict.fromkeys(self.mail.references))
        ids.pop(self.mail.message_id, None)
        return tuple(ids)


def _address_set(items) -> frozenset[str]:
    addresses = (item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item) for item in items)
    return frozenset(address.strip().strip("<>").lower() for address in addresses if "@" in address)


# ---------------------------------------------------------------------------------------------
# The rules. Each returns None when it does not fire, or a short detail for the audit trail.


def _own_sender(facts: _Facts) -> str | None:
    if facts.mail.from_addr and is_own_address(facts.mail.from_addr, facts.own_addresses):
        return facts.mail.from_addr
    return None


def _own_letter(facts: _Facts) -> str | None:
    if facts.mail.header("x-mailbot-letter") is not None:
        return "X-Mailbot-Letter header"
    # A reply to our letter only *refers* to our id; only our own letters *carry* it.
    if facts.own_suffix and facts.mail.has_message_id and facts.mail.message_id.lower().endswith(facts.own_suffix):
        return f"Message-ID {facts.mail.message_id}"
    return None


def _loop_header(facts: _Facts) -> str | None:
    for name in ("x-loop", "x-no-loop", "x-otrs-loop"):
        value = facts.mail.header(name)
        if value is not None and value.strip().lower() not in ("no", "false"):
            return f"{name}: {value.strip()}"
    return None


def _delivery_status(facts: _Facts) -> str | None:
    if facts.report_type == "delivery-status":
        return "multipart/report; report-type=delivery-status"
    if "message/delivery-status" in facts.mail.part_types:
        return "message/delivery-status part"
    if facts.mail.header("x-failed-recipients") is not None:
        return "X-Failed-Recipients"
    return None


def _robot_bounce(facts: _Facts) -> str | None:
    """Older MTAs send free-text bounces: trust a bounce subject or flufl.bounce from a robot."""
    from_mail_system = facts.robot_local_part or facts.null_return_path or facts.mail_system_return_path
    if not (from_mail_system or facts.bounce_subject):
        return None
    if facts.bounce_subject and from_mail_system:
        return f"bounce subject from {facts.mail.from_addr or 'null sender'}"
    temporary, permanent = facts.flufl_failures
    if permanent or temporary:
        return "flufl.bounce found " + ("failed" if permanent else "delayed") + " recipients"
    return None


def _feedback_report(facts: _Facts) -> str | None:
    """ARF abuse and feedback reports (RFC 5965) and Hotmail's own: mail about mail, never a complaint to us."""
    if facts.report_type == "feedback-report":
        return "multipart/report; report-type=feedback-report"
    if "message/feedback-report" in facts.mail.part_types:
        return "message/feedback-report part"
    for name in ("x-hmxmroriginalrecipient", "x-arf", "x-feedback-id-report"):
        if facts.mail.header(name) is not None:
            return name
    return None


def _any_report(facts: _Facts) -> str | None:
    # RFC 6522: multipart/report is only ever a machine's report about other mail, whatever its type.
    if facts.mail.content_type == "multipart/report":
        return f"multipart/report; report-type={facts.report_type or '?'}"
    return None


def _read_receipt(facts: _Facts) -> str | None:
    if facts.report_type == "disposition-notification":
        return "multipart/report; report-type=disposition-notification"
    if "message/disposition-notification" in facts.mail.part_types:
        return "message/disposition-notification part"
    return None


def _auto_submitted(facts: _Facts) -> str | None:
    value = facts.first("auto-submitted")
    keyword = value.split(";", 1)[0].split("(", 1)[0].strip().lower()
    return keyword if value and keyword != "no" else None


def _auto_reply_headers(facts: _Facts) -> str | None:
    for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress", "x-autogenerated"):
        value = facts.mail.header(name)
        if value is not None:
            return f"{name}: {value.strip()}"
    if facts.first("precedence").lower() == "auto_reply":
        return "precedence: auto_reply"
    return None


def _out_of_office_subject(facts: _Facts) -> str | None:
    return facts.mail.subject if _OUT_OF_OFFICE_SUBJECT.match(facts.mail.subject) else None


def _precedence(wanted: frozenset[str]) -> Callable[[_Facts], str | None]:
    def test(facts: _Facts) -> str | None:
        value = facts.first("precedence").lower() or facts.first("x-precedence").lower()
        return value if value in wanted else None

    return test


# RFC 2369/2919 list headers, and what fml, Majordomo, Sympa, Mailman, ezmlm, Google Groups and LISTSERV
# put on list mail and on their error mail.
_LIST_HEADERS = (
    "list-id", "list-unsubscribe", "list-post", "list-subscribe", "list-help", "list-owner", "list-archive",
    "x-mailman-version", "x-mlserver", "x-ml-name", "x-ml-count", "x-ml-info", "mailing-list", "x-mailing-list",
    "x-list", "x-listname", "x-list-administrivia", "x-sympa-to", "x-loop-detect", "x-google-group-id",
    "x-listserver", "x-ezmlm-version", "x-lyris-message-id", "x-beenthere",
)


def _list_headers(facts: _Facts) -> str | None:
    for name in _LIST_HEADERS:
        if facts.mail.header(name) is not None:
            return name
    return None


def _robot_sender_header(facts: _Facts) -> str | None:
    # Majordomo and Mailman 2 send their errors with a list-server Sender (owner-list@, list-bounces@).
    for value in facts.mail.headers.get("sender", ()):
        address = value.rsplit("<", 1)[-1].strip().strip(">").lower()
        local = address.rpartition("@")[0] or address
        if local and _ROBOT_LOCAL_PARTS.match(local):
            return f"sender: {address}"
    return None


def _robot_sender(facts: _Facts) -> str | None:
    return facts.mail.from_addr if facts.robot_local_part else None


def _null_return_path(facts: _Facts) -> str | None:
    # RFC 5321 reserves the null reverse-path for notifications: no person sends from it.
    return "Return-Path: <>" if facts.null_return_path else None


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    test: Callable[[_Facts], str | None]


RULES: tuple[Rule, ...] = (
    Rule("own address as sender", "own_mail", _own_sender),
    Rule("our own letter", "loop", _own_letter),
    Rule("delivery status notification", "bounce", _delivery_status),
    Rule("bounce from mail system", "bounce", _robot_bounce),
    # After the bounce rules: mail systems stamp X-Loop on their bounces too.
    Rule("loop header", "loop", _loop_header),
    Rule("feedback report", "delivery_report", _feedback_report),
    Rule("read receipt", "delivery_report", _read_receipt),
    Rule("multipart/report", "delivery_report", _any_report),
    Rule("auto-submitted", "auto_reply", _auto_submitted),
    Rule("auto-reply header", "auto_reply", _auto_reply_headers),
    Rule("out-of-office subject", "auto_reply", _out_of_office_subject),
    Rule("precedence", "list", _precedence(frozenset({"list"}))),
    Rule("mailing-list header", "list", _list_headers),
    Rule("precedence", "bulk", _precedence(frozenset({"bulk", "junk"}))),
    Rule("robot sender", "robot_sender", _robot_sender),
    Rule("list-server sender", "robot_sender", _robot_sender_header),
    Rule("null return path", "robot_sender", _null_return_path),
)
