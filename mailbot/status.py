"""The bot's health report: what ``mailbot status`` prints and ``/healthz`` answers, read from the store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from mailbot.domain.health import EXIT_STATUS, SIGN_IN_REFUSED, findings, verdict
from mailbot.mail.oauth import read_token_state
from mailbot.settings import Settings
from mailbot.store import health_reads as reads
from mailbot.store.db import reading, schema_version
from mailbot.store.locks import instance_lock


def version() -> str:
    """The installed mailbot's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("mailbot")
    except PackageNotFoundError:  # pragma: no cover  (run from a checkout that was never installed)
        return "unknown"


def running_elsewhere(engine: Engine) -> str | None:
    """Who is running on this database ("pid N on host"), or None when no bot is (the lock is free)."""
    lock = instance_lock(engine)
    if lock.try_acquire():
        lock.release()
        return None
    return lock.holder()


def report(settings: Settings, engine: Engine, now: datetime, instance: str | None = None) -> dict[str, Any]:
    """The health report. ``instance`` is the asking daemon's own role (active or standby); without it the
    report says whether any bot is running on the database."""
    holder = running_elsewhere(engine) if instance is None else None
    # A reading connection: on SQLite a report never waits for (or holds up) the writer.
    with reading(engine) as conn:
        facts = reads.facts(conn, now, bool(settings.imap_host), None if instance is not None else holder is not None)
        outbox = reads.outbox_by_state(conn)
        sent = reads.last_sent(conn)
        revision = schema_version(conn)
    found = findings(facts)
    state, reasons = verdict(found)
    boxes, oldest, smtp_refused = facts.mailboxes, facts.oldest_pending, facts.smtp_refused
    fetched = max((b.last_success for b in boxes if b.last_success), default=None)
    token = read_token_state(settings.data_dir) if settings.auth != "password" else None
    imap_refused = any(f.condition.startswith("sign-in:") for f in found)
    return {
        "version": version(),
        "state": state,
        "exit_status": EXIT_STATUS[state],
        "reasons": reasons,
        "mode": "imap" if settings.imap_host else "local",
        "instance": instance or ("running" if holder else "not running"),
        "running": holder,
        "sign_in": settings.auth,
        "sign_in_state": {"imap": "refused" if imap_refused else ("ok" if any(b.last_success for b in boxes)
                                                                  else "unknown"),
                          "smtp": "refused" if (smtp_refused or "").startswith(SIGN_IN_REFUSED)
                          else ("ok" if sent or smtp_refused else "unknown")},
        "token_expires_at": (token or {}).get("expires_at"),
        "token_obtained_at": (token or {}).get("obtained_at"),
        "smtp": settings.smtp_host or "maildir (data/sent)",
        "mailboxes": [{"mailbox": b.name, "last_success": b.last_success.isoformat() if b.last_success else None,
                       "last_error": b.last_error, "last_error_at": b.last_error_at.isoformat()
                       if b.last_error_at else None} for b in boxes],
        "last_fetch": fetched.isoformat() if fetched else None,
        "last_sent": sent.isoformat() if sent else None,
        "outbox": outbox,
        "oldest_unsent_seconds": int((now - oldest).total_seconds()) if oldest else None,
        "failed_last_day": facts.failed_last_day,
        "schema_revision": revision,
    }
