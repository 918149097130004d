"""Issue 17, the tamper-evident audit trail, from outside: `mailbot audit verify` on a database the bot wrote,
after someone edits or removes an event, after erasure and retention, and after a rewrite of the whole chain that
only the head kept in the digest and the log can catch; and on PostgreSQL with writers at once."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mailbot.domain import audit
from tests.integration.bot import Bot, make_mail, staff_reply
from tests.servers import PostgresServer

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)
PRIYA = "Priya Shah <priya.shah@1mm.org.uk>"


def _two_cases(bot: Bot) -> None:
    bot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="Missed call", body="Nobody called me."),
               internaldate=T0)
    bot.append(make_mail(frm="Ken Lee <ken@example.com>", subject="Other", body="Ken's own complaint."),
               internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    [note] = bot.letters("staff-notification", case="1MM-2026-0001")
    bot.append(staff_reply(note, PRIYA, "#note\nShe sounded upset."), internaldate=T0)
    bot.append(staff_reply(note, PRIYA, "#resolve upheld\nDear Jane, we are sorry."), internaldate=T0)
    bot.once(now=T0 + timedelta(minutes=5))


def _db(bot: Bot) -> sqlite3.Connection:
    return sqlite3.connect(bot.data_dir / "mailbot.db", isolation_level=None)


def _verify(bot: Bot, *args: str) -> tuple[int, dict]:
    result = bot.cli("audit", "verify", "--json", *args, check=False)
    return result.returncode, json.loads(result.stdout)


def test_editing_one_event_row_makes_verify_fail_and_name_it(bot: Bot) -> None:
    _two_cases(bot)
    ok = bot.cli("audit", "verify")
    assert ok.returncode == 0 and re.search(r"audit trail verified: \d+ events, none changed or removed", ok.stdout)
    code, report = _verify(bot)
    assert code == 0 and report["events"] >= 10 and report["problems"] == []

    db = _db(bot)
    [(event_id, detail)] = db.execute("SELECT id, detail FROM event WHERE type = 'resolved'").fetchall()
    db.execute("UPDATE event SET detail = ? WHERE id = ?", (detail.replace("upheld", "not_upheld"), event_id))
    failed = bot.cli("audit", "verify", check=False)
    assert failed.returncode == 1
    assert f"event {event_id} (place" in failed.stderr and "contents were changed" in failed.stderr
    assert "a resolved event of 2026-11-16" in failed.stderr
    code, report = _verify(bot)
    assert code == 1 and [p["event_id"] for p in report["problems"]] == [event_id]

    # Put it back, and remove another instead: the gap is named.
    db.execute("UPDATE event SET detail = ? WHERE id = ?", (detail, event_id))
    assert bot.cli("audit", "verify", check=False).returncode == 0
    [(gone, place)] = db.execute("SELECT id, seq FROM event WHERE type = 'internal_note'").fetchall()
    db.execute("DELETE FROM event WHERE id = ?", (gone,))
    failed = bot.cli("audit", "verify", check=False)
    assert failed.returncode == 1 and f"the chain jumps here: place {place} removed" in failed.stderr

    # An event slipped in by hand has no place in the chain.
    db.execute("INSERT INTO event (case_id, at, type, detail, actor) VALUES (NULL, '2026-11-16 10:10:00', "
               "'resolved', '', '')")
    assert "it has no place in the chain" in bot.cli("audit", "verify", check=False).stderr


def test_erasure_and_retention_keep_the_chain_verifiable_and_reveal_nothing(bot: Bot) -> None:
    _two_cases(bot)
    bot.cli("erase-person", "jane@example.com", "--reason", "asked in writing")
    code, report = _verify(bot)
    assert code == 0 and report["redacted"] >= 3, report
    db = _db(bot)
    [(count,)] = db.execute("SELECT count(*) FROM event WHERE redacted_by IS NOT NULL AND salt IS NOT NULL")
    assert count == 0  # no salt left beside a redacted event's hash

    # Seven years on, retention anonymises Ken's case too (closed first), and the chain still verifies.
    [note] = bot.letters("staff-notification", case="1MM-2026-0002")
    bot.append(staff_reply(note, PRIYA, "#resolve not-upheld\nDear Ken, we looked into it."), internaldate=T0)
    bot.once(now=T0 + timedelta(hours=1))
    bot.once(now=T0 + timedelta(days=7 * 365))
    assert bot.case_json("1MM-2026-0002")["complainant"].endswith("@erased.invalid")
    code, after = _verify(bot)
    assert code == 0 and after["redacted"] > report["redacted"], after
    [(retained,)] = db.execute("SELECT detail FROM event WHERE type = 'retention_anonymised'").fetchall()
    assert json.loads(retained)["events"] == after["redacted"] - report["redacted"]


def _rewrite_whole_chain(path: Path) -> None:
    """What someone with the database file could do: change an outcome and recompute every hash after it."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE event SET detail = replace(detail, 'upheld', 'not_upheld') WHERE type = 'resolved'")
    previous = audit.GENESIS
    rows = db.execute("SELECT id, seq, case_id, at, type, actor, detail, salt, content_hash FROM event "
                      "ORDER BY seq").fetchall()
    for event_id, seq, case_id, at, type_, actor, detail, salt, content in rows:
        if salt is not None:
            content = audit.content_hash(salt, case_id, datetime.fromisoformat(at), type_, actor, detail)
        previous = audit.link(previous, seq, content)
        db.execute("UPDATE event SET content_hash = ?, chain_hash = ? WHERE id = ?", (content, previous, event_id))
    db.execute("UPDATE audit_head SET hash = ?", (previous,))
    db.close()


def test_a_rewrite_of_the_whole_chain_is_caught_by_the_head_in_the_digest_and_the_log(bot: Bot,
                                                                                   tmp_path: Path) -> None:
    _two_cases(bot)
    preview = tmp_path / "digest.html"
    bot.cli("digest", "--preview", str(preview), "--now", (T0 + timedelta(days=1)).isoformat())
    [from_digest] = re.findall(r"Audit trail head (\d+:[0-9a-f]{64})", preview.read_text())
    daemon_log = bot.cli("-v", "run", "--once", "--now", (T0 + timedelta(days=1)).isoformat()).stderr
    [from_log] = re.findall(r"audit trail head on 2026-11-17: (\d+:[0-9a-f]{64})", daemon_log)
    assert bot.cli("audit", "head").stdout.strip().endswith(from_log)

    _rewrite_whole_chain(bot.data_dir / "mailbot.db")
    code, alone = _verify(bot)
    assert code == 0, alone  # consistent with itself: only a copy kept elsewhere can tell
    for kept in (from_digest, f"audit trail head on 2026-11-17: {from_log}"):
        failed = bot.cli("audit", "verify", "--expect", kept, check=False)
        assert failed.returncode == 1 and "it was rewritten" in failed.stderr, failed.stderr
    bad = bot.cli("audit", "verify", "--expect", "12:nothex", check=False)
    assert bad.returncode == 2 and "is not PLACE:HASH" in bad.stderr


def test_writers_at_once_on_postgresql_keep_one_unbroken_chain(bot: Bot, postgres: PostgresServer) -> None:
    from mailbot.services.mailbox import Arrival

    bot.extra["MAILBOT_DATABASE_URL"] = postgres.url
    apps = [bot.app(now=T0), bot.app(now=T0)]
    errors: list[BaseException] = []

    def intake(app, first: int) -> None:  # type: ignore[no-untyped-def]
        try:
            for n in range(first, first + 40):
                app.ingestor.ingest(Arrival(raw=make_mail(frm=f"person{n}@example.org", subject=f"Complaint {n}"),
                                            received_at=T0))
        except BaseException as exc:  # noqa: BLE001  (the test reports it)
            errors.append(exc)

    try:
        threads = [threading.Thread(target=intake, args=(app, i * 100)) for i, app in enumerate(apps)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for app in apps:
            app.engine.dispose()
    assert errors == []
    assert len(bot.cases_json()) == 80
    code, report = _verify(bot)
    assert code == 0 and report["events"] >= 80 and report["head"].startswith(f"{report['events']}:"), report
