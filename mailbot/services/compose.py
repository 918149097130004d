"""Turning a decision into letters in the outbox (rendered now, sent later by the delivery worker)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from mailbot.domain.mail import bare_address
from mailbot.letters import LetterRenderer, letter_bytes, new_message_id
from mailbot.store import repo
from mailbot.store.db import to_db
from mailbot.store.models import Case


@dataclass(frozen=True, slots=True)
class QueuedLetter:
    """A letter as it went into the outbox (the row's columns that callers read)."""

    id: int
    case_id: int | None
    message_id: str
    subject: str
    from_addr: str
    to_addrs: str
    kind: str
    at: datetime
    raw: bytes
    automatic: bool
    direction: str = "out"
    delivery: str = "pending"
    trigger_from: str | None = None


@dataclass(frozen=True)
class Sender:
    """Who letters come from and how they are addressed."""

    org_name: str
    address: str
    domain: str
    auto_reply_cap: int


def queue_letter(
    session: Session,
    renderer: LetterRenderer,
    sender: Sender,
    *,
    case: Case | None,
    template: str,
    to: list[str],
    context: dict[str, object],
    now: datetime,
    automatic: bool,
    cc: list[str] | None = None,
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
    auto_submitted: str | None = "auto-replied",
    from_name: str | None = None,
    trigger_from: str | None = None,
) -> QueuedLetter | None:
    """Render a letter and add it to the outbox in the caller's transaction.

    Automatic letters (acknowledgements and the like) respect the per-address cap that stops
    mail loops: to one recipient, and in answer to one From (``trigger_from``; None for a sender the
    caller exempts), at most the cap in 24 hours. A capped letter is not queued, and the case records
    why. Returns the outbox row.
    """
    recipients = [a for a in (bare_address(t) for t in to) if a]
    if not recipients:
        repo.add_event(session, case, now, "letter_skipped", template=template, reason="no recipient address")
        return None
    if automatic:
        sent = repo.automatic_letters_since(session, recipients[0], repo.cap_window(now))
        if sent >= sender.auto_reply_cap:
            repo.add_event(session, case, now, "auto_reply_capped", template=template, to=recipients[0],
                           reason=f"{sent} automatic letters to this address in the last 24 hours")
            return None
        caused = repo.automatic_letters_caused_by(session, trigger_from, repo.cap_window(now)) if trigger_from else 0
        if caused >= sender.auto_reply_cap:
            repo.add_event(session, case, now, "auto_reply_capped", template=template, to=recipients[0],
                           sender=trigger_from,
                           reason=f"{caused} automatic letters in answer to mail from {trigger_from} in the last "
                                  f"24 hours")
            return None
    full_context = {"org_name": sender.org_name, "address": sender.address, **context}
    letter = renderer.render(template, full_context)
    message_id = new_message_id(sender.domain)
    raw = letter_bytes(
        letter,
        template=template,
        from_name=from_name or sender.org_name,
        from_addr=sender.address,
        to=recipients,
        cc=cc,
        reply_to=reply_to,
        in_reply_to=in_reply_to,
        references=references,
        message_id=message_id,
        auto_submitted=auto_submitted,
        attachments=attachments,
        date=now,
        extra_headers={"X-Mailbot-Case": case.ref} if case else None,
    )
    envelope = recipients + [a for a in (bare_address(c) for c in (cc or [])) if a and a not in recipients]
    if case is not None and case.id is None:
        session.flush()
    values = {
        "case_id": case.id if case else None, "direction": "out", "message_id": message_id,
        "subject": letter.subject, "from_addr": sender.address, "to_addrs": ",".join(envelope), "kind": template,
        "at": to_db(now), "raw": raw, "delivery": "pending", "automatic": automatic,
        "trigger_from": trigger_from if automatic else None,
    }
    row_id = repo.insert_message(session, values)
    repo.add_event(session, case, now, "letter_queued", template=template, to=",".join(envelope), message_id=message_id)
    # The letter as queued, for the caller: a plain record, not an ORM row (nothing changes it later).
    return QueuedLetter(id=row_id, **values)
