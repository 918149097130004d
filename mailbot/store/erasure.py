"""Removing personal data while keeping the figures: retention (cases closed longer ago than
MAILBOT_RETENTION_YEARS) and `mailbot erase-person`.

An anonymised case keeps its reference, dates, procedure, category, channel, stage, status and outcome, so the
reports still add up. Gone: every message's bytes (bodies, attachments), subjects, the people's addresses and
names, what staff wrote in events, the restriction's and mentor actions' reasons, the status page's nonce, and
the Message-IDs (replaced), so mail from the person afterwards threads into nothing and is treated as new.
SQLite is told to overwrite what it frees (``secure_delete``), and the write-ahead log is emptied afterwards,
so the words do not linger in the file.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from sqlalchemy import or_, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from mailbot.domain import audit
from mailbot.store import due_reads, repo
from mailbot.store.db import to_db
from mailbot.store.models import Case, Event, MailMessage, MentorAction, Restriction, detail_of

ERASED_DOMAIN = "erased.invalid"
REMOVED = "(removed)"
# Event details that are figures, not words about anyone: kept.
FIGURE_KEYS = frozenset({"procedure", "category", "outcome", "template", "stage", "channel", "name", "mode", "months",
                         "attempt", "action", "kind", "state", "rules", "thread_rule"})


def erased_address(ref: str) -> str:
    return f"erased+{ref.lower()}@{ERASED_DOMAIN}"


def _figures_only(detail: str) -> str:
    kept = {k: v for k, v in detail_of(detail).items() if k in FIGURE_KEYS}
    return json.dumps({**kept, "redacted": True}, sort_keys=True)


def _blank_message(message: MailMessage) -> None:
    if message.direction == "out" and message.delivery == "pending":
        message.delivery = "erased"  # a letter not yet sent is never sent (it has no words or address left)
    message.raw = b""
    message.subject = REMOVED
    message.from_addr = ""
    message.to_addrs = ""
    message.trigger_from = None
    message.last_error = None
    message.message_id = f"<erased.{secrets.token_hex(8)}@{ERASED_DOMAIN}>"
    action = detail_of(message.detail).get("action")
    message.detail = json.dumps({"action": action, "redacted": True}) if action else None


def _redact(event: Event, redacted: dict[int, Event]) -> None:
    """The event's words replaced by its figures, and its salt removed, so its content hash (still in the
    audit chain) cannot be tested against guesses; ``mark_redacted`` then names the event that did it."""
    if event.redacted_by is not None or event.type in audit.REDACTORS or event.id is None:
        return  # already redacted; and a record of a redaction names no one
    event.detail = _figures_only(event.detail)
    event.salt = None
    redacted[event.id] = event


def mark_redacted(session: Session, redacted: dict[int, Event], now: datetime, type_: str, case: Case | None = None,
                  **detail: object) -> int:
    """Record the redaction (an event saying how many it redacted, which the audit check counts) and point
    each redacted event at it; returns the record's id."""
    record = repo.add_event_now(session, case, now, type_, events=len(redacted), **detail)
    for event in redacted.values():
        event.redacted_by = record
    return record


def anonymise_case(session: Session, case: Case, now: datetime, redacted: dict[int, Event]) -> None:
    """Everything personal on the case, removed in the caller's transaction; its figures kept. The events
    whose words went are added to ``redacted`` for ``mark_redacted``."""
    case.complainant = erased_address(case.ref)
    case.complainant_name = ""
    case.subject = REMOVED
    case.from_addr = None
    case.reply_to = None
    case.postal_address = None
    case.status_nonce = None
    case.anonymised_at = to_db(now)
    for message in session.exec(select(MailMessage).where(MailMessage.case_id == case.id)).all():
        _blank_message(message)
    for event in session.exec(select(Event).where(Event.case_id == case.id)).all():
        _redact(event, redacted)
    for restriction in session.exec(select(Restriction).where(Restriction.case_id == case.id)).all():
        restriction.complainant = case.complainant
        restriction.reason = restriction.warning_reason = restriction.consulted = restriction.end_reason = ""
        restriction.exceptional = None
    for action in session.exec(select(MentorAction).where(MentorAction.case_id == case.id)).all():
        action.mentor_email = erased_address(case.ref)
        action.reason = ""


def cases_past_retention(session: Session, closed_before: datetime, limit: int = 100) -> list[Case]:
    """Closed cases not yet anonymised and not on hold, closed before the cut-off, oldest first."""
    return list(session.exec(select(Case).where(due_reads.retention_filter(Case, closed_before))
                             .order_by(col(Case.closed_at)).limit(limit)).all())


def person_cases(session: Session, email: str) -> tuple[list[Case], list[Case]]:
    """(cases where they are the complainant, cases about them as a mentor)."""
    own = list(session.exec(select(Case).where(Case.complainant == email)).all())
    mentor_ids = set(session.exec(select(MentorAction.case_id).where(MentorAction.mentor_email == email)).all())
    about = [c for c in session.exec(select(Case).where(col(Case.id).in_(mentor_ids))).all() if c.complainant != email]
    return own, about


def erase_person(session: Session, email: str, names: list[str], now: datetime, reason: str = "") -> int:
    """Anonymise the person everywhere, in the caller's transaction; returns how many cases were touched.
    Their own cases go whole, as retention does; on a case about them as a mentor, their address, the
    actions' reasons and our letters to them; anywhere else, any message from or to them and any event that
    names them."""
    own, about = person_cases(session, email)
    redacted: dict[int, Event] = {}
    for case in own:
        anonymise_case(session, case, now, redacted)
    for case in about:
        for action in session.exec(select(MentorAction).where(MentorAction.case_id == case.id,
                                                               MentorAction.mentor_email == email)).all():
            action.mentor_email = erased_address(case.ref)
            action.reason = ""
    pattern = f"%{email}%"
    for message in session.exec(select(MailMessage).where(or_(
            MailMessage.from_addr == email, col(MailMessage.to_addrs).like(pattern),
            col(MailMessage.trigger_from) == email))).all():
        _blank_message(message)
    needles = [email, *[n for n in names if len(n) >= 3]]
    for event in session.exec(select(Event).where(or_(*[col(Event.detail).contains(n) for n in needles],
                                                      *[col(Event.actor).contains(n) for n in needles]))).all():
        _redact(event, redacted)
        if event.id in redacted and any(n.lower() in event.actor.lower() for n in needles):
            event.actor = ""
    for restriction in session.exec(select(Restriction).where(Restriction.complainant == email)).all():
        restriction.complainant = erased_address(str(restriction.case_id))
    # The record of the erasure names no one (the reason is the operator's words, asked not to).
    mark_redacted(session, redacted, now, "person_erased", cases=len(own) + len(about), reason=reason[:500])
    return len(own) + len(about)


# The tables whose rows erasure rewrites (PostgreSQL keeps the old versions of rewritten rows until a VACUUM).
_PERSONAL_TABLES = ("message", "event", '"case"', "restriction", "mentoraction")


def scrub_file(engine: Engine) -> None:
    """After a commit that removed words: have the database drop the old versions of the rows from its files.

    SQLite: VACUUM rewrites the file and a checkpoint empties the write-ahead log. PostgreSQL: VACUUM FULL rewrites
    each table that held them into new files (it locks each table for the moment it takes, so the bot waits that
    long); its write-ahead log keeps them until the server recycles its segments, as any backup does until it is
    rotated (README, "Personal data on disk")."""
    if engine.url.get_backend_name() == "postgresql":
        _vacuum(engine, "VACUUM FULL", checkpoint=True)
        return
    if engine.url.get_backend_name() != "sqlite":
        return
    engine.dispose()  # no other pooled connection of ours may hold the file while it is rewritten
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None
        driver.isolation_level = None  # type: ignore[attr-defined]  (VACUUM cannot run in a transaction)
        driver.execute("VACUUM")
        driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def scrub_after_retention(engine: Engine) -> None:
    """The daemon's lighter scrub after retention, which must not stop intake: SQLite's freed content was already
    overwritten (``secure_delete``) and a checkpoint empties the write-ahead log of the old pages; PostgreSQL's plain
    VACUUM frees the old row versions for reuse without locking anyone out (`erase-person` does the full rewrite)."""
    if engine.url.get_backend_name() == "postgresql":
        _vacuum(engine, "VACUUM")
        return
    if engine.url.get_backend_name() == "sqlite":
        raw = engine.raw_connection()  # outside any transaction: a checkpoint cannot run inside one
        try:
            driver = raw.driver_connection
            assert driver is not None
            driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()


def _vacuum(engine: Engine, command: str, checkpoint: bool = False) -> None:
    """PostgreSQL: ``command`` (VACUUM or VACUUM FULL) on each table that held personal data, outside a
    transaction; then, if asked and allowed (a superuser), a CHECKPOINT, so the new files are written out now
    rather than at the server's next one."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in _PERSONAL_TABLES:
            conn.exec_driver_sql(f"{command} {table}")
        if checkpoint and conn.exec_driver_sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").scalar():
            conn.exec_driver_sql("CHECKPOINT")


def secure_delete(session: Session) -> None:
    """SQLite: overwrite freed content with zeros for the rest of this connection's life."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().execute(text("PRAGMA secure_delete = ON"))
