"""What `mailbot status` and the alerts read from the store, on SQLite and PostgreSQL: the times compare and come back
as the tables' own columns write them, though the reads name the columns themselves (no ORM)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy.engine import Engine

from mailbot.store import health_reads
from mailbot.store.db import make_engine, reading, to_db, upgrade
from mailbot.store.db import session as new_session
from mailbot.store.models import Event, MailboxCursor, MailMessage
from tests.probes import sqlite_plans

# Times with an offset, to show they are compared as instants, not as the digits written.
PARIS = timezone(timedelta(hours=1))
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=PARIS)


def letter(n: int, at: datetime, delivery: str, sent_at: datetime | None = None) -> MailMessage:
    return MailMessage(direction="out", message_id=f"<{n}@1mm.org.uk>", at=to_db(at), raw=b"x", delivery=delivery,
                       sent_at=to_db(sent_at))


def event(type_: str, at: datetime, **detail: object) -> Event:
    return Event(at=to_db(at), type=type_, detail=json.dumps(detail))


def test_the_health_facts_read_back_as_written(store_engine: Engine) -> None:
    with new_session(store_engine) as s:
        s.add(MailboxCursor(mailbox="b@host/INBOX", uidvalidity=1, last_success_at=to_db(NOW - timedelta(minutes=3))))
        s.add(MailboxCursor(mailbox="a@host/INBOX", uidvalidity=1, last_error="refused",
                            last_error_at=to_db(NOW - timedelta(minutes=1))))
        s.add(letter(1, NOW - timedelta(hours=2), "pending"))
        s.add(letter(2, NOW - timedelta(minutes=30), "pending"))
        s.add(letter(3, NOW - timedelta(hours=5), "sent", sent_at=NOW - timedelta(hours=4)))
        s.add(letter(4, NOW - timedelta(hours=6), "failed"))
        s.add(event("letter_failed", NOW - timedelta(days=1)))  # just inside the day
        s.add(event("letter_failed", NOW - timedelta(days=1, seconds=1)))  # just outside
        s.add(event("letter_failed", NOW - timedelta(hours=1)))
        s.add(event("letter_deferred", NOW - timedelta(hours=3), error="sign-in refused: 535 bad credentials"))
        s.add(event("admin_alert", NOW - timedelta(hours=9), condition="smtp", words="cannot send", raised=True))
        s.add(event("admin_alert", NOW - timedelta(hours=8), condition="imap", words="cannot read", raised=True))
        s.add(event("admin_alert", NOW - timedelta(hours=7), condition="imap", words="reading again", raised=False))
        s.commit()

    with reading(store_engine) as conn:
        facts = health_reads.facts(conn, NOW, reads_a_mailbox=True, running=None)
        outbox = health_reads.outbox_by_state(conn)
        sent = health_reads.last_sent(conn)
        alerts = health_reads.raised_alerts(conn)

    assert [(b.name, b.last_success, b.last_error, b.last_error_at) for b in facts.mailboxes] == [
        ("a@host/INBOX", None, "refused", NOW - timedelta(minutes=1)),
        ("b@host/INBOX", NOW - timedelta(minutes=3), None, None)]
    assert facts.oldest_pending == NOW - timedelta(hours=2)
    assert facts.oldest_pending.tzinfo is not None
    assert facts.failed_last_day == 2
    # Refused after the last letter went: still standing.
    assert facts.smtp_refused == "sign-in refused: 535 bad credentials"
    assert sent == NOW - timedelta(hours=4)
    assert outbox == {"pending": 2, "sent": 1, "failed": 1}
    assert alerts == {"smtp": "cannot send"}

    with new_session(store_engine) as s:
        s.add(letter(5, NOW - timedelta(hours=2), "sent", sent_at=NOW - timedelta(hours=2)))
        s.commit()
    with reading(store_engine) as conn:
        # A letter has gone since the refusal: the sign-in works again.
        assert health_reads.smtp_refusal(conn) is None

    with new_session(store_engine) as s:
        s.add(event("letter_deferred", NOW - timedelta(hours=1), error="sender refused: 550 5.7.60 not as this sender"))
        s.commit()
    with reading(store_engine) as conn:
        # A refusal of the bot's own address stands as a refused sign-in does.
        assert health_reads.smtp_refusal(conn) == "sender refused: 550 5.7.60 not as this sender"
    with new_session(store_engine) as s:
        s.add(event("letter_deferred", NOW - timedelta(minutes=50), error="451 4.3.0 try again later"))
        s.commit()
    with reading(store_engine) as conn:
        # Any other letter's wait says nothing about the bot's setting.
        assert health_reads.smtp_refusal(conn) is None


def test_an_empty_store_reports_nothing_wrong(store_engine: Engine) -> None:
    with reading(store_engine) as conn:
        facts = health_reads.facts(conn, NOW, reads_a_mailbox=False, running=False)
        assert (facts.mailboxes, facts.oldest_pending, facts.failed_last_day, facts.smtp_refused) == ((), None, 0, None)
        assert health_reads.outbox_by_state(conn) == {}
        assert health_reads.last_sent(conn) is None
        assert health_reads.raised_alerts(conn) == {}


def test_the_outbox_counts_and_the_last_letter_sent_are_read_from_an_index(tmp_path: Path) -> None:
    # `mailbot status`, /healthz and every /metrics scrape ask these. Read row by row, each pass over every letter
    # ever sent read its bytes too: 250 and 220 ms on 150,000 letters (bench/README.md, the twentieth look).
    engine = make_engine(f"sqlite:///{tmp_path / 'letters.db'}")
    upgrade(engine)
    with new_session(engine) as s:
        for n in range(1, 31):
            s.add(letter(n, NOW - timedelta(hours=n), ("sent", "pending", "undelivered")[n % 3],
                         sent_at=NOW - timedelta(hours=n, minutes=-5) if n % 3 != 1 else None))
        s.add(MailMessage(direction="in", message_id="<in@example.org>", at=to_db(NOW), raw=b"x"))
        s.commit()
    (outbox, sent), plans = sqlite_plans(engine, lambda conn: (health_reads.outbox_by_state(conn),
                                                               health_reads.last_sent(conn)))
    engine.dispose()
    assert outbox == {"sent": 10, "pending": 10, "undelivered": 10}
    assert sent == NOW - timedelta(hours=2, minutes=-5)  # a letter bounced after it went still went
    assert len(plans) == 2
    assert all("USING COVERING INDEX ix_message_state" in plan for plan in plans), plans
