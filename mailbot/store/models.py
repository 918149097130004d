"""The tables. Every message, letter and decision is kept here for reporting.

Times are aware datetimes, stored as UTC (SQLModel's UTCDateTime); naive ones are refused.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, LargeBinary, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class _Table(SQLModel):
    """Every table's base. pydantic builds no validator for the tables when they are defined (a tenth of the
    module's import, which every command pays): SQLModel never validates a table row, it constructs it, and the
    rows are written and read through SQLAlchemy."""

    model_config = {"defer_build": True}


class Case(_Table, table=True):
    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(index=True, unique=True)
    year: int
    seq: int
    # open, awaiting_staff, resolved, closed, redirected, merged (indexed with the assignee, below)
    status: str = "open"
    stage: int = 1
    procedure: str = "external"
    complainant: str = Field(index=True)
    # The opening message's From and Reply-To, as written (the complainant is one of them).
    from_addr: str | None = None
    reply_to: str | None = None
    complainant_name: str = ""
    subject: str = ""
    category: str = "service"
    assignee: str | None = None
    outcome: str | None = None
    merged_into: str | None = None
    opened_at: datetime
    # When the stage's clock started (the complaint's arrival for stage 1, the escalation later).
    stage_started_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    # How the complaint reached us: email, web, phone, post or in-person (the last three logged by staff).
    channel: str = Field(default="email", sa_column_kwargs={"server_default": "email"})
    # For someone with no email address (logged by staff): where their letters are posted.
    postal_address: str | None = None
    # Signs the complainant's private status page link (domain.webform.status_token); None: no page.
    status_nonce: str | None = None
    # Why the case is kept out of retention (#hold: a legal claim, a safeguarding matter); None when it is not.
    held_reason: str | None = None
    # When its personal data was removed (retention or erase-person); its figures stay.
    anonymised_at: datetime | None = None

    __table_args__ = (
        UniqueConstraint("year", "seq", name="uq_case_year_seq"),
        # The scheduled work's looks read these, so a pass with nothing to do costs the same on 50,000 open cases
        # as on 50 (store.due_reads, migration 0010): open cases by owner (the hand-over look reads only the
        # owners not in staff.toml; any read by status alone uses its first column), and the closed cases
        # retention has still to anonymise (partial: neither the open ones nor the anonymised ones).
        Index("ix_case_status_assignee", "status", "assignee"),
        Index("ix_case_retention", "closed_at", info={"where": "closed_at IS NOT NULL AND anonymised_at IS NULL"}),
    )


class MailMessage(_Table, table=True):
    """One message in or out. Outbound rows double as the transactional outbox."""

    __tablename__ = "message"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    direction: str  # "in" or "out"
    message_id: str = Field(index=True)
    subject: str = ""
    from_addr: str = ""
    to_addrs: str = ""  # comma-separated envelope recipients (outbound) or To header (inbound)
    # Inbound: the chain's verdict (new_case, follow_up, bounce, auto_reply, staff_reply, ...).
    # Outbound: the letter's template name (acknowledgement, staff-reply, ...).
    kind: str = ""
    at: datetime  # inbound: the server's arrival time; outbound: when the letter was created
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # Outbound delivery state: pending, sent, failed (permanent), undelivered (bounced later). Inbound: None.
    delivery: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    # PostgreSQL: a deliverer's claim on a pending letter it is sending (store.outbox.claim).
    claimed_until: datetime | None = None
    sent_at: datetime | None = None
    last_error: str | None = None
    # Whether this outbound letter counts against the per-address cap on automatic letters.
    automatic: bool = False
    # Automatic letters: the From of the message that caused it, for the per-sender cap (a robot that
    # changes its Reply-To on every message still has one From).
    trigger_from: str | None = None
    # Inbound: the IMAP UID it came from, for tracing.
    uid: int | None = None
    detail: str | None = Field(default=None, sa_column=Column(Text))

    __table_args__ = (
        UniqueConstraint("direction", "message_id", name="uq_message_direction_id"),
        Index("ix_message_outbox", "delivery", "next_attempt_at"),
        # What `mailbot status`, /healthz and /metrics count and date (store.health_reads), read from the index
        # alone: without it each read every letter ever sent, row by row (migration 0011). It takes the place of
        # an index on delivery alone, whose reads the outbox index answers as well.
        Index("ix_message_state", "direction", "delivery", "sent_at"),
        # Automatic letters only (the auto-reply cap counts them): an inbound row's To list can be longer than
        # PostgreSQL lets an index row be. Migration 0008 makes it partial (WHERE automatic); it is not said here
        # with postgresql_where / sqlite_where because naming a dialect's options makes SQLAlchemy import that
        # dialect, PostgreSQL's with asyncpg's module: ~25 ms on every start of every command, SQLite or not.
        Index("ix_message_cap", "to_addrs", "at", info={"where": "automatic"}),
        Index("ix_message_cap_from", "trigger_from", "automatic", "at"),
    )


class Event(_Table, table=True):
    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    at: datetime
    type: str = Field(index=True)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    actor: str = ""
    # The audit trail (domain.audit): a random salt and the hash of the contents under it, set when the event
    # is added; the place in the chain and the chain hash, set when its transaction commits (store.audit);
    # the erasure or retention event that removed its words (its salt goes with them).
    salt: str | None = None
    content_hash: str | None = None
    seq: int | None = Field(default=None, index=True, unique=True)
    chain_hash: str | None = None
    redacted_by: int | None = None


class AuditHead(_Table, table=True):
    """One row: the audit chain's last place and hash, locked while a transaction links its events."""

    __tablename__ = "audit_head"
    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str


class MailboxCursor(_Table, table=True):
    """Where intake got to in one mailbox folder, so restarts never re-process a message."""

    id: int | None = Field(default=None, primary_key=True)
    mailbox: str = Field(unique=True)  # "user@host/folder"
    uidvalidity: int = 0
    last_uid: int = 0
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    error_count: int = 0
    auth_failures: int = 0


class RefSequence(_Table, table=True):
    year: int = Field(primary_key=True)
    last_seq: int = 0


class Deadline(_Table, table=True):
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    stage: int
    name: str
    due_at: datetime
    met_at: datetime | None = None
    reminded_at: datetime | None = None
    overdue_alerted_at: datetime | None = None
    # A deadline is superseded (not deleted) when an extension or escalation replaces it.
    superseded: bool = False

    __table_args__ = (
        # The running deadlines by when they fall due (partial: met, superseded and alerted ones leave it), which
        # the deadline chase reads soonest first (store.due_reads, migration 0010).
        Index("ix_deadline_running", "due_at",
              info={"where": "NOT superseded AND met_at IS NULL AND overdue_alerted_at IS NULL"}),
    )


class Restriction(_Table, table=True):
    """The unreasonably-persistent-complainant register: one row per complainant and matter (case).

    The row holds the current state; every change is also an event on the case, which is the history.
    """

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True, unique=True)
    complainant: str = Field(index=True)
    # warned, restricted, lifted, expired
    state: str = "warned"
    mode: str | None = None  # acknowledge-only or silent
    options: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))  # JSON list
    reason: str = ""
    warned_at: datetime | None = None
    warned_by: str | None = None
    warning_reason: str = ""
    started_at: datetime | None = None
    ends_at: datetime | None = None
    review_at: datetime | None = None
    reviewed_at: datetime | None = None
    decided_by: str | None = None
    consulted: str = ""
    exceptional: str | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str = ""
    last_acknowledged_at: datetime | None = None


class DigestRun(_Table, table=True):
    """One row per recipient per day: the once-a-day rule survives restarts and parallel runs."""

    id: int | None = Field(default=None, primary_key=True)
    recipient: str
    day: str  # YYYY-MM-DD in the organisation's time zone
    sent_at: datetime
    message_id: str | None = None

    __table_args__ = (UniqueConstraint("recipient", "day", name="uq_digest_recipient_day"),)


class MentorAction(_Table, table=True):
    """What the mentee procedure's mentor-behaviour steps did to a mentor, on which case, and why."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    mentor_email: str = Field(index=True)
    action: str  # informal-warning, formal-warning, suspend
    reason: str = ""
    by: str
    at: datetime


# The tables themselves, for the prebuilt Core statements on the hot paths (intake, the outbox).
def detail_of(text: str | None) -> dict[str, Any]:
    """An event's or a message's ``detail`` (JSON of an object, or empty) as a dict; {} for anything else."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


CASE_TABLE: Table = Case.__table__  # type: ignore[attr-defined]
MESSAGE_TABLE: Table = MailMessage.__table__  # type: ignore[attr-defined]
EVENT_TABLE: Table = Event.__table__  # type: ignore[attr-defined]
AUDIT_HEAD_TABLE: Table = AuditHead.__table__  # type: ignore[attr-defined]
CURSOR_TABLE: Table = MailboxCursor.__table__  # type: ignore[attr-defined]
SEQUENCE_TABLE: Table = RefSequence.__table__  # type: ignore[attr-defined]
DEADLINE_TABLE: Table = Deadline.__table__  # type: ignore[attr-defined]
RESTRICTION_TABLE: Table = Restriction.__table__  # type: ignore[attr-defined]
