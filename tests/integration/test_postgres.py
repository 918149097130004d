"""The production database option: the same flows on PostgreSQL, migrations included."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import text

from mailbot.bootstrap import App
from mailbot.settings import load_settings
from tests.integration.bot import Bot, make_mail, staff_reply
from tests.servers import PostgresServer

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


def test_the_bot_runs_on_postgresql(bot: Bot, postgres: PostgresServer) -> None:
    bot.extra["MAILBOT_DATABASE_URL"] = postgres.url
    bot.append(make_mail(subject="On Postgres"), internaldate=T0)
    bot.append(make_mail(frm="bob@example.org", subject="Second"), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    bot.once(now=T0 + timedelta(seconds=2))
    assert len(bot.letters("acknowledgement")) == 2
    [note] = bot.letters("staff-notification", case="1MM-2026-0001")
    bot.append(staff_reply(note, "Priya Shah <priya.shah@1mm.org.uk>", "#resolve upheld\nSorted."))
    bot.once(now=T0 + timedelta(hours=1))
    cases = bot.cases_json()
    assert [c["ref"] for c in cases] == ["1MM-2026-0001", "1MM-2026-0002"]
    assert bot.case_json("1MM-2026-0001")["status"] == "resolved"
    # The plain listing reads with SQLAlchemy Core ("case" is a reserved word on PostgreSQL).
    lines = bot.cli("cases").stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["1MM-2026-0001", "resolved"], ["1MM-2026-0002", "open"]]
    assert bot.cli("db", "upgrade").returncode == 0
    # The kept mail is compressed with lz4 (migration 0009), and reads back whole.
    from mailbot.store.db import make_engine

    engine = make_engine(postgres.url)
    try:
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT pg_column_compression(raw), raw FROM message "
                                     "WHERE direction = 'out' AND kind = 'staff-notification' ORDER BY id")).all()
    finally:
        engine.dispose()
    assert kept and {method for method, _ in kept} == {"lz4"}
    assert all(b"On Postgres" in bytes(raw) or b"Second" in bytes(raw) for _, raw in kept)


def test_two_processes_taking_the_years_first_reference_at_once_both_get_one(postgres: PostgresServer,
                                                                             monkeypatch) -> None:
    """Both find no sequence row for the year; before the fix the second INSERT failed on the first's row,
    and its message was kept as a processing error instead of opening a case."""
    import threading

    from sqlmodel import Session

    from mailbot.store import repo
    from mailbot.store.db import make_engine, upgrade

    engine = make_engine(postgres.url)
    upgrade(engine)
    both_looked = threading.Barrier(2, timeout=10)
    real = repo._NEXT_SEQ

    class BothMissTheRow:
        """The first UPDATE of each transaction finds no row, and neither goes on until both have looked."""

        def __init__(self) -> None:
            self.looked: set[int] = set()

        def scalar(self, connection, params):  # type: ignore[no-untyped-def]
            found = real.scalar(connection, params)
            if threading.get_ident() not in self.looked:
                self.looked.add(threading.get_ident())
                both_looked.wait()
            return found

    monkeypatch.setattr(repo, "_NEXT_SEQ", BothMissTheRow())
    refs: list[str] = []
    errors: list[BaseException] = []

    def allocate() -> None:
        try:
            with Session(engine) as session:
                refs.append(repo.allocate_ref(session, 2027)[1])
                session.commit()
        except BaseException as exc:  # noqa: BLE001  (the test reports it)
            errors.append(exc)

    threads = [threading.Thread(target=allocate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    engine.dispose()
    assert errors == []
    assert sorted(refs) == ["1MM-2027-0001", "1MM-2027-0002"]


def test_two_deliverers_on_postgresql_never_send_a_letter_twice(bot: Bot, postgres: PostgresServer) -> None:
    """Each claims the letters it sends (FOR UPDATE SKIP LOCKED): two at once share the outbox, each letter once.
    (The instance lock keeps a second bot from delivering at all; this is the outbox's own guarantee.)"""
    import asyncio
    import collections

    from mailbot.services.mailbox import Arrival

    bot.extra["MAILBOT_DATABASE_URL"] = postgres.url
    first, second = bot.app(now=T0), bot.app(now=T0)
    try:
        for n in range(150):
            first.ingestor.ingest(Arrival(raw=make_mail(frm=f"person{n}@example.org", subject=f"Complaint {n}"),
                                          received_at=T0))

        async def both() -> None:
            await asyncio.gather(first.deliverer.deliver_due(), second.deliverer.deliver_due())

        asyncio.run(both())
        counts = collections.Counter(m.message["Message-ID"] for m in bot.sink.messages())
        assert len(counts) == 300 and set(counts.values()) == {1}
        # Both really took part: each sent some of the letters.
        sent = [app.metrics.registry.get_sample_value("mailbot_letters_total", {"state": "sent"})
                for app in (first, second)]
        assert sum(sent) == 300 and min(sent) > 0, sent
    finally:
        first.engine.dispose()
        second.engine.dispose()


def test_an_erased_person_is_gone_from_postgresqls_table_files(bot: Bot, postgres: PostgresServer) -> None:
    """VACUUM FULL after the erasure: the old versions of the rewritten rows leave the tables' files too. (The
    server's write-ahead log keeps them until it recycles its segments: README, "Personal data on disk".)"""
    bot.extra["MAILBOT_DATABASE_URL"] = postgres.url
    bot.append(make_mail(frm="Zelda Quist <zelda.quist@example.com>", subject="Zelda's complaint",
                         body="Zelda Quist here: nobody called."), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    [note] = bot.letters("staff-notification", case="1MM-2026-0001")
    bot.append(staff_reply(note, "Priya Shah <priya.shah@1mm.org.uk>", "#resolve upheld\nSorry, Zelda."))
    bot.once(now=T0 + timedelta(hours=1))

    def files_holding(needle: bytes) -> list[str]:
        base = postgres.datadir / "base"
        return [str(p.relative_to(base)) for p in base.rglob("*") if p.is_file() and needle in p.read_bytes()]

    bot.cli("erase-person", "zelda.quist@example.com", "--reason", "asked in writing")
    assert files_holding(b"zelda.quist@example.com") == [] and files_holding(b"Zelda Quist") == []
    assert bot.cli("audit", "verify").returncode == 0


def _app_in_process(postgres: PostgresServer, tmp_path: Path) -> App:
    """The bot's object graph on the PostgreSQL server, in this process: intake fed arrivals directly, for bytes
    IMAP cannot carry (NUL) and for many hostile messages at once."""
    repo_root = Path(__file__).resolve().parents[2]
    data = tmp_path / "data"
    data.mkdir()
    for name in ("staff.toml", "participants.csv"):
        shutil.copy(repo_root / "data" / name, data / name)
    return App(load_settings(data_dir=data, templates_dir=repo_root / "templates", database_url=postgres.url,
                             secret="postgres-tests-secret-at-least-32-bytes"), now=T0)


def test_hostile_headers_do_not_stop_intake_on_postgresql(postgres: PostgresServer, tmp_path) -> None:
    """PostgreSQL refuses NUL in text and index rows over ~2.7 KB. Before the fix, a Message-ID carrying a NUL, a
    Message-ID of 9,000 characters, or a To header naming 400 people failed the message, then failed keeping it
    as a processing error, and so the whole fetch: intake stopped at that message for good."""
    from sqlalchemy import text

    from mailbot.services.mailbox import Arrival, CursorPosition

    app = _app_in_process(postgres, tmp_path)
    nul = (b"From: Bob <bob@example.org>\r\nTo: complaints@1mm.org.uk\r\n"
           b"Subject: =?utf-8?q?my=00complaint?=\r\nMessage-ID: <b\x001@example.org>\r\n\r\nThe mentor left.\r\n")
    long_id = (b"From: dan@example.org\r\nTo: complaints@1mm.org.uk\r\nSubject: Long id\r\n"
               b"Message-ID: <" + b"d" * 9000 + b"@example.org>\r\n\r\nNobody called back.\r\n")
    crowd = [f"person{n:03d}.with.a.longish.name@example.org" for n in range(400)]
    many = (f"From: eve@example.org\r\nTo: complaints@1mm.org.uk, {', '.join(crowd)}\r\nSubject: To everyone\r\n"
            f"Message-ID: <e1@example.org>\r\n\r\nSent to all.\r\n").encode()
    raws = [make_mail(subject="Before"), nul, long_id, many, make_mail(frm="carol@example.org", subject="After"), nul]
    try:
        outcomes = app.ingestor.ingest_batch([Arrival(raw, T0, uid=uid) for uid, raw in enumerate(raws, start=1)],
                                             CursorPosition("INBOX", 1))
        assert [(o.action, o.ref) for o in outcomes] == [
            ("new_case", "1MM-2026-0001"), ("new_case", "1MM-2026-0002"), ("new_case", "1MM-2026-0003"),
            ("new_case", "1MM-2026-0004"), ("new_case", "1MM-2026-0005"),
            ("duplicate", None)]  # the same message again is known by its cleaned Message-ID
        with app.engine.connect() as conn:
            subject, kept = conn.execute(text(
                "SELECT c.subject, m.raw FROM \"case\" c JOIN message m ON m.case_id = c.id "
                "WHERE c.ref = '1MM-2026-0002' AND m.direction = 'in'")).one()
            letters = conn.execute(text(
                "SELECT raw FROM message m JOIN \"case\" c ON m.case_id = c.id "
                "WHERE c.ref = '1MM-2026-0002' AND m.direction = 'out'")).scalars().all()
            to_everyone = conn.execute(text("SELECT to_addrs FROM message WHERE message_id = 'e1@example.org'")).one()
        assert subject == "my\ufffdcomplaint"
        assert bytes(kept) == nul  # the message itself is kept as it came
        assert len(letters) == 2 and all(b"\x00" not in bytes(letter) for letter in letters)
        # The whole To list is kept, so a request about personal data still finds the message by any of them.
        assert to_everyone[0].split(",")[-1] == crowd[-1]
    finally:
        app.engine.dispose()


def test_hostile_bodies_and_parts_are_filed_on_postgresql(postgres: PostgresServer, tmp_path) -> None:
    """The service tests' hostile mail (NUL in bodies and names, MIME too deep, names and types thousands of
    characters long...) in one fetch on PostgreSQL, which refuses what SQLite stores: every one filed, in order,
    and every letter deliverable."""
    from sqlalchemy import text

    from mailbot.services.mailbox import Arrival, CursorPosition
    from tests.services.test_hostile_mail import HOSTILE

    app = _app_in_process(postgres, tmp_path)
    raws = [build(n) for n, build in enumerate(HOSTILE.values())] + [make_mail(frm="last@example.org")]
    try:
        outcomes = app.ingestor.ingest_batch([Arrival(raw, T0, uid=uid) for uid, raw in enumerate(raws, start=1)],
                                             CursorPosition("INBOX", 1))
        assert {o.action for o in outcomes} <= {"new_case", "unreadable", "automated"}
        assert outcomes[-1].action == "new_case"
        with app.engine.connect() as conn:
            kept = conn.execute(text("SELECT count(*) FROM message WHERE direction = 'in'")).scalar_one()
            cursor = conn.execute(text("SELECT last_uid FROM mailboxcursor")).scalar_one()
            letters = conn.execute(text("SELECT raw FROM message WHERE direction = 'out'")).scalars().all()
        assert (kept, cursor) == (len(raws), len(raws))
        assert all(max(map(len, bytes(letter).split(b"\r\n"))) <= 998 for letter in letters)
    finally:
        app.engine.dispose()


def test_references_counted_within_a_transaction_hold_the_years_counter(postgres: PostgresServer) -> None:
    """A transaction numbers its first case from the database and the next ones itself, holding the year's row:
    another transaction waits for it and goes on from its last number; a rollback, whole or a savepoint's, gives
    its numbers back."""
    import threading

    from sqlmodel import Session

    from mailbot.store import repo
    from mailbot.store.db import make_engine, upgrade

    engine = make_engine(postgres.url)
    upgrade(engine)
    other: list[str] = []
    try:
        with Session(engine) as session:
            first = [repo.allocate_ref(session, 2027)[1] for _ in range(3)]
            waiting = threading.Thread(target=lambda: other.append(_one_ref(engine, 2027)))
            waiting.start()
            waiting.join(0.5)
            assert waiting.is_alive() and other == []  # the counter's row is this transaction's until it ends
            session.commit()
        waiting.join(10)
        with Session(engine) as session:
            given_back = [repo.allocate_ref(session, 2027)[1] for _ in range(2)]
            session.rollback()
        with Session(engine) as session:
            again = repo.allocate_ref(session, 2027)[1]
            inner = session.begin_nested()
            in_savepoint = repo.allocate_ref(session, 2027)[1]
            inner.rollback()
            after_savepoint = [repo.allocate_ref(session, 2027)[1] for _ in range(2)]
            session.commit()
        with Session(engine) as session:
            last = repo.allocate_ref(session, 2027)[1]
            session.commit()
    finally:
        engine.dispose()
    assert first == ["1MM-2027-0001", "1MM-2027-0002", "1MM-2027-0003"]
    assert other == ["1MM-2027-0004"]
    assert given_back == ["1MM-2027-0005", "1MM-2027-0006"]
    assert (again, in_savepoint, after_savepoint) == ("1MM-2027-0005", "1MM-2027-0006",
                                                      ["1MM-2027-0006", "1MM-2027-0007"])
    assert last == "1MM-2027-0008"


def test_a_counted_reference_is_on_the_counters_row_before_a_savepoint_and_at_the_commit(
        postgres: PostgresServer) -> None:
    """References counted by the transaction are written to the year's row once, where they stand: before a
    SAVEPOINT (whose own numbers come from the row, and go back there if it is rolled back) and before the
    COMMIT."""
    from sqlalchemy import text
    from sqlmodel import Session

    from mailbot.store import repo
    from mailbot.store.db import make_engine, upgrade

    engine = make_engine(postgres.url)
    upgrade(engine)
    try:
        with Session(engine) as session:
            counted = [repo.allocate_ref(session, 2028)[1] for _ in range(3)]
            inner = session.begin_nested()
            in_savepoint = repo.allocate_ref(session, 2028)[1]
            inner.rollback()
            after = [repo.allocate_ref(session, 2028)[1] for _ in range(3)]
            session.commit()
        with engine.connect() as conn:
            on_the_row = conn.execute(text("SELECT last_seq FROM refsequence WHERE year = 2028")).scalar()
        following = _one_ref(engine, 2028)
    finally:
        engine.dispose()
    assert counted == ["1MM-2028-0001", "1MM-2028-0002", "1MM-2028-0003"]
    assert in_savepoint == "1MM-2028-0004"  # the row had 0003 before the SAVEPOINT, not 0001
    assert after == ["1MM-2028-0004", "1MM-2028-0005", "1MM-2028-0006"]  # the savepoint's number given back
    assert on_the_row == 6 and following == "1MM-2028-0007"


def _one_ref(engine, year: int) -> str:  # type: ignore[no-untyped-def]
    from sqlmodel import Session

    from mailbot.store import repo

    with Session(engine) as session:
        ref = repo.allocate_ref(session, year)[1]
        session.commit()
    return ref


def test_ids_taken_ahead_keep_the_order_rows_were_written_in(postgres: PostgresServer) -> None:
    """Messages and cases get their ids from their sequences a few at a time; within a transaction and from one
    transaction to the next, a later row has a larger id, and a rolled-back transaction's ids are not reused."""
    from sqlmodel import Session

    from mailbot.store import repo
    from mailbot.store.db import make_engine, upgrade

    engine = make_engine(postgres.url)
    upgrade(engine)

    def message(n: int) -> dict[str, object]:
        return {"direction": "in", "message_id": f"m{n}@example.org", "to_addrs": "complaints@1mm.org.uk",
                "kind": "complaint", "at": T0, "raw": b"x"}

    try:
        with Session(engine) as session:
            first = [repo.insert_message(session, message(n)) for n in range(20)]  # more than the first block
            session.commit()
        with Session(engine) as session:
            lost = repo.insert_message(session, message(99))
            session.rollback()
        with Session(engine) as session:
            second = [repo.insert_message(session, message(n)) for n in range(20, 23)]
            session.commit()
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT id, message_id FROM message ORDER BY id")).all()
    finally:
        engine.dispose()
    assert first == sorted(first) and second == sorted(second) and first[-1] < lost < second[0]
    assert [tuple(row) for row in stored] == [(i, f"m{n}@example.org") for n, i in enumerate(first + second)]


def test_a_complaint_whose_letter_postgresql_refuses_is_kept_apart_from_its_fetch(postgres: PostgresServer,
                                                                                  tmp_path) -> None:
    """The letters wait to go with the next statement, so the database refuses one while intake is on the next
    complaint. The fetch is done again one savepoint a message: the refused complaint is kept for staff, the
    others are answered, numbered in order with no gap."""
    from mailbot.services.mailbox import Arrival, CursorPosition

    app = _app_in_process(postgres, tmp_path)
    senders = ["bob@example.org", "amira@example.org", "carol@example.org"]
    try:
        with app.engine.begin() as conn:
            conn.execute(text(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ "
                "LANGUAGE plpgsql"))
            conn.execute(text(
                "CREATE TRIGGER refuse_letters_to_amira BEFORE INSERT ON message FOR EACH ROW "
                "WHEN (NEW.direction = 'out' AND NEW.to_addrs = 'amira@example.org') EXECUTE FUNCTION refuse()"))
        outcomes = app.ingestor.ingest_batch(
            [Arrival(make_mail(frm=who, subject=f"From {who}"), T0, uid=uid) for uid, who in enumerate(senders, 1)],
            CursorPosition("INBOX", 1))
        with app.engine.connect() as conn:
            cases = conn.execute(text('SELECT ref, complainant FROM "case" ORDER BY id')).all()
            acknowledged = conn.execute(text(
                "SELECT to_addrs FROM message WHERE kind = 'acknowledgement' ORDER BY id")).scalars().all()
            kept = conn.execute(text(
                "SELECT kind FROM message WHERE direction = 'in' AND from_addr = 'amira@example.org'")).scalars().all()
            cursor = conn.execute(text("SELECT last_uid FROM mailboxcursor")).scalar_one()
    finally:
        app.engine.dispose()
    assert [o.action for o in outcomes] == ["new_case", "error", "new_case"]
    assert [tuple(c) for c in cases] == [("1MM-2026-0001", "bob@example.org"), ("1MM-2026-0002", "carol@example.org")]
    assert acknowledged == ["bob@example.org", "carol@example.org"]
    assert kept == ["processing_error"] and cursor == 3


def test_a_reply_to_naming_hundreds_is_filed_on_postgresql(postgres: PostgresServer, tmp_path) -> None:
    """Intake asks ahead about each of a message's addresses (repo.foresee): a Reply-To of 300 people is 300
    questions in one pipeline, and the message is still filed once, answered at its first address, with the
    person restricted at one of the later addresses still noticed."""
    from sqlmodel import Session

    from mailbot.services.mailbox import Arrival, CursorPosition
    from mailbot.store.models import Restriction

    app = _app_in_process(postgres, tmp_path)
    crowd = [f"person{n:03d}@example.org" for n in range(300)]
    earlier = make_mail(frm=crowd[-1], subject="An earlier complaint")
    hostile = (f"From: mallory@example.org\r\nTo: complaints@1mm.org.uk\r\nReply-To: {', '.join(crowd)}\r\n"
               f"Subject: For everyone\r\nMessage-ID: <crowd@example.org>\r\n\r\nThe mentor never came.\r\n").encode()
    try:
        first = app.ingestor.ingest_batch([Arrival(earlier, T0, uid=1)], CursorPosition("INBOX", 1))
        with app.engine.begin() as conn:
            case_id = conn.execute(text('SELECT id FROM "case" WHERE ref = :r'), {"r": first[0].ref}).scalar_one()
        with Session(app.engine) as s:
            s.add(Restriction(case_id=case_id, complainant=crowd[-1], state="restricted", mode="one_contact",
                              reason="test", restricted_at=T0, review_due=T0, by="test"))
            s.commit()
        outcomes = app.ingestor.ingest_batch([Arrival(hostile, T0, uid=2)], CursorPosition("INBOX", 1))
        with app.engine.connect() as conn:
            complainant = conn.execute(text('SELECT complainant FROM "case" WHERE ref = :r'),
                                       {"r": outcomes[0].ref}).scalar_one()
            acks = conn.execute(text("SELECT to_addrs FROM message m JOIN \"case\" c ON m.case_id = c.id "
                                     "WHERE c.ref = :r AND m.kind = 'acknowledgement'"),
                                {"r": outcomes[0].ref}).scalars().all()
            noted = conn.execute(text("SELECT detail FROM event e JOIN \"case\" c ON e.case_id = c.id "
                                      "WHERE c.ref = :r AND e.type = 'restricted_elsewhere'"),
                                 {"r": outcomes[0].ref}).scalars().all()
    finally:
        app.engine.dispose()
    assert [o.action for o in outcomes] == ["new_case"]
    assert complainant == crowd[0] and acks == [crowd[0]]
    assert len(noted) == 1 and first[0].ref in noted[0]


def test_one_fetch_on_postgresql_meets_the_cap_on_automatic_letters_and_files_a_repeat_once(
        bot: Bot, postgres: PostgresServer) -> None:
    """Intake asks what a fetch's messages will ask of the store together, ahead of handling them, while their
    writes wait for the commit: each acknowledgement still counts against the cap for the messages after it in
    the same transaction, whether they come from the same address or the same sender, and a message seen twice
    in one fetch is still a duplicate."""
    bot.extra.update({"MAILBOT_DATABASE_URL": postgres.url, "MAILBOT_AUTO_REPLY_CAP": "3"})
    for n in range(5):
        bot.append(make_mail(frm="ann@example.org", subject=f"Complaint {n}"), internaldate=T0)
        bot.append(make_mail(frm="bob@example.org", subject=f"Other {n}"), internaldate=T0)
        bot.append(make_mail(frm="robot@example.net", subject=f"Ticket {n}", Reply_To=f"t{n}@example.net"),
                   internaldate=T0)
    repeat = make_mail(frm="cat@example.org", subject="Twice")
    bot.append(repeat, internaldate=T0)
    bot.append(repeat, internaldate=T0)
    bot.once(now=T0 + timedelta(minutes=1))
    acks = [letter.rcpt_tos for letter in bot.letters("acknowledgement")]
    assert acks.count(["ann@example.org"]) == 3 and acks.count(["bob@example.org"]) == 3
    assert len([to for to in acks if to[0].endswith("@example.net")]) == 3  # the robot's From is capped
    assert acks.count(["cat@example.org"]) == 1
    assert len(bot.cases_json()) == 16  # every message opens its case but the repeat


def test_the_case_commands_on_postgresql_start_without_the_orm(postgres: PostgresServer, tmp_path: Path) -> None:
    """As on SQLite (tests/unit/test_cli.py): the listing, a case and the status read with SQLAlchemy Core, and on
    PostgreSQL too they must not load the ORM's table classes (sqlmodel, ~0.1 s of a command that should take less
    than half a second). A read there used to import them to order the writes waiting on its connection, when
    there were none."""
    import mailbox
    import os
    import subprocess
    import sys

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    inbox = mailbox.Maildir(data_dir / "maildir")
    inbox.add((Path(__file__).resolve().parents[2] / "data" / "samples" / "01-complaint.eml").read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
    env.update(MAILBOT_DATA_DIR=str(data_dir), MAILBOT_DATABASE_URL=postgres.url)
    subprocess.run([sys.executable, "-m", "mailbot", "run", "--once"], env=env, cwd=data_dir, check=True,
                   capture_output=True, timeout=120)
    for command, shows in ((["cases"], "1MM-2026-0001  open"), (["case", "1MM-2026-0001"], "1MM-2026-0001: "),
                           (["case", "1MM-2026-0001", "--json"], '"kind": "acknowledgement"'),
                           (["status"], "outbox")):
        probe = ("import sys\nfrom mailbot.cli import main\n"
                 f"try:\n    main({command!r})\nexcept SystemExit:\n    pass\n"
                 "heavy = ('sqlmodel', 'pydantic', 'sqlalchemy.orm', 'mailbot.store.models', 'jinja2', "
                 "'mailparser')\n"
                 "print(' '.join(m for m in heavy if m in sys.modules), file=sys.stderr)\n")
        done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=data_dir, capture_output=True, text=True,
                              timeout=60)
        assert shows in done.stdout, (command, done.stdout, done.stderr)
        assert done.stderr.strip() == "", (command, done.stderr)


def test_the_cap_on_automatic_letters_counts_each_from_its_own_index_on_postgresql(postgres: PostgresServer) -> None:
    """The cap asks two counts for every complaint: automatic letters to the address, and those caused by mail from
    the sender. Each has its index; with statistics taken before any automatic letter was written (a new database,
    or cases brought in from elsewhere), PostgreSQL read the sender's count from the address's index instead,
    every automatic letter of the day for each count, so intake slowed as a backlog was answered."""
    import json

    from sqlalchemy import insert

    from mailbot.store import repo
    from mailbot.store.db import make_engine, to_db, upgrade
    from mailbot.store.models import MESSAGE_TABLE

    engine = make_engine(postgres.url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(insert(MESSAGE_TABLE), [
                {"direction": "in", "message_id": f"<in{n}@example.org>", "subject": "s", "from_addr": f"p{n}@x.org",
                 "to_addrs": "complaints@1mm.org.uk", "kind": "new_case", "at": to_db(T0), "raw": b"x",
                 "attempts": 0, "automatic": False} for n in range(2000)])
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE message")  # no automatic letter yet
        with engine.begin() as conn:
            conn.execute(insert(MESSAGE_TABLE), [
                {"direction": "out", "message_id": f"<ack{n}@1mm.org.uk>", "subject": "s",
                 "from_addr": "complaints@1mm.org.uk", "to_addrs": f"p{n}@x.org", "kind": "acknowledgement",
                 "at": to_db(T0), "raw": b"x", "attempts": 0, "automatic": True, "trigger_from": f"p{n}@x.org"}
                for n in range(500)])
        prebuilt, params = repo.ask_automatic_letters("p7@x.org", "p7@x.org", T0 - timedelta(days=1))
        compiled = prebuilt.statement.compile(dialect=engine.dialect)
        with engine.connect() as conn:
            assert conn.exec_driver_sql(str(compiled), compiled.construct_params(params)).one() == (1, 1)
            [plan] = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled),
                                          compiled.construct_params(params)).one()
    finally:
        engine.dispose()
    plan = plan if isinstance(plan, list) else json.loads(plan)

    def scans(node: dict) -> list[tuple[str, str]]:
        found = [(node.get("Index Name", node["Node Type"]), node.get("Index Cond", ""))] \
            if "Scan" in node["Node Type"] else []
        return found + [scan for child in node.get("Plans", []) for scan in scans(child)]

    # Each count is read from its own index, looked up by its address and its day (the index's condition).
    [(to_index, to_cond), (from_index, from_cond)] = scans(plan[0]["Plan"])
    assert (to_index, from_index) == ("ix_message_cap", "ix_message_cap_from")
    assert to_cond.startswith("(((to_addrs)::text = 'p7@x.org'::text) AND (at >= "), to_cond
    assert from_cond.startswith("(((trigger_from)::text = 'p7@x.org'::text) AND (at >= "), from_cond
