"""What each ``mailbot`` sub-command does, given validated settings. Output is for people or, with --json, programs."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from mailbot.launch import steady_malloc
from mailbot.settings import Settings
from mailbot.store.db import open_database, reading, session
from mailbot.store.faults import DatabaseUnusable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from mailbot.bootstrap import App


def print_json(value: object) -> None:
    """``json.dump(value, sys.stdout, indent=2, ensure_ascii=False)`` and a newline, character for character.

    A list goes out one element at a time: json.dump writes each of its pieces apart (millions of writes, five
    seconds, for `cases --json` on 50,000 cases), and one string of the whole would hold all of it at once. An
    element's own lines are indented one step further, as the list's encoding would; JSON strings hold no newline,
    so every newline in an element's text is one of its lines' ends.
    """
    encode = json.JSONEncoder(indent=2, ensure_ascii=False).encode
    write = sys.stdout.write
    if not isinstance(value, list) or not value:
        write(encode(value) + "\n")
        return
    write("[")
    for index, element in enumerate(value):
        write(("\n  " if index == 0 else ",\n  ") + encode(element).replace("\n", "\n  "))
    write("\n]\n")


def settle_memory() -> None:
    """Tell the cyclic garbage collector that everything built at start-up (modules, the ORM's
    mappings, templates, the directory) stays for the life of the process.

    The collector otherwise walks all of it again on every full collection; taking a backlog in,
    that was about a tenth of the CPU time. Objects created afterwards are collected as usual.

    Nothing is collected first: the command started with the collector off (``mailbot.launch``), so every
    start-up object is still young, and a collection would walk all ~100,000 of them (20 ms of every `run
    --once`) to find a few closures' worth of garbage, which now stays. The collector is switched on here.
    """
    gc.freeze()
    gc.enable()


def run(settings: Settings, once: bool, now: datetime | None) -> int:
    from mailbot.bootstrap import App

    app = App(settings, now=now, counted=False) if once else _app_when_the_database_works(settings)
    settle_memory()
    steady_malloc()
    try:
        return _run(app, settings, once)
    finally:
        # Every connection closed: SQLite folds its write-ahead log into the database file and removes it, so a
        # stopped bot's work is in mailbot.db itself (a copy of that file alone is whole).
        app.engine.dispose()


def _run(app: App, settings: Settings, once: bool) -> int:
    from imapclient.exceptions import IMAPClientError, LoginError

    from mailbot import runtime

    if not once:
        runtime.Daemon(app).run()
        return 0
    try:
        result = runtime.run_once(app)
    except runtime.ActiveElsewhere as exc:
        print(f"mailbot: {exc} is running on this database and does this work; nothing was done")
        return 0
    except (IMAPClientError, OSError) as exc:
        # Recorded as the mailbox's health too (the digest shows it); here it is one line, not a traceback.
        print(f"mailbot: could not read the mailbox at {settings.imap_host}:{settings.imap_port_effective}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        # Refused credentials are configuration; a server that cannot be reached is a server that cannot be used.
        return 2 if isinstance(exc, LoginError) else 3
    print(f"fetched {result['fetched']} message(s); scheduled work queued {result['jobs']} letter(s); "
          f"sent {result['sent']}, deferred {result['deferred']}, failed {result['failed']}")
    return 0


def _app_when_the_database_works(settings: Settings, first_wait: float = 2.0, longest_wait: float = 60.0) -> App:
    """The daemon's start: a database that is locked, down or out of disk is waited for (and the log says
    so at each try); one that waiting cannot mend stops start-up in one line."""
    import logging
    import time

    from mailbot.bootstrap import App

    log = logging.getLogger("mailbot.start")
    wait = first_wait
    while True:
        try:
            return App(settings)
        except DatabaseUnusable as exc:
            if not exc.retryable:
                raise
            gc.enable()  # start-up is not quick now: each failed try's garbage is collected as it waits
            log.warning("%s; trying again in %.0f s", exc, wait)
            time.sleep(wait)
            wait = min(wait * 2, longest_wait)


@contextmanager
def _database(settings: Settings) -> Iterator[Engine]:
    """The database, migrated first, for one command; its connections closed when the command is done."""
    engine = open_database(settings.database_url_effective)
    try:
        yield engine
    finally:
        engine.dispose()


def cases(settings: Settings, as_json: bool) -> int:
    # Read with SQLAlchemy Core alone (store.case_reads): no ORM, no table classes, no mail stack.
    from mailbot.store import case_reads

    with _database(settings) as engine, reading(engine) as conn:
        # --json: every case's whole summary; otherwise only the columns the listing prints.
        if as_json:
            print_json(case_reads.summaries(conn))
            return 0
        rows = case_reads.case_lines(conn)
    if not rows:
        print("no cases yet")
    # One write for the listing, not a print a line (16 ms of a listing of 50,000 cases).
    sys.stdout.write("".join(f"{ref}  {status:<14} stage {stage}  {procedure:<8} {complainant:<32} {messages:>3} msg  "
                             f"{subject}\n" for ref, status, stage, procedure, complainant, messages, subject in rows))
    return 0


def case(settings: Settings, ref: str, as_json: bool) -> int:
    from mailbot.store import case_reads

    with _database(settings) as engine, reading(engine) as conn:
        detail = case_reads.detail(conn, ref)
    if detail is None:
        print(f"mailbot: no case {ref.upper()}", file=sys.stderr)
        return 1
    if as_json:
        print_json(detail)
        return 0
    zone = ZoneInfo(settings.timezone)
    print(f"{detail['ref']}: {detail['subject']}")
    for key in ("status", "stage", "procedure", "channel", "complainant", "assignee", "category"):
        print(f"  {key:<12} {detail[key]}")
    print(f"  {'opened_at':<12} {uk_time(detail['opened_at'], zone)}")  # type: ignore[arg-type]
    for name, due in dict(detail["deadlines"]).items():  # type: ignore[call-overload]
        print(f"  deadline     {name}: {uk_time(due, zone)}")
    print("  messages:")
    for m in detail["messages"]:  # type: ignore[attr-defined]
        arrow = "<-" if m["direction"] == "in" else "->"
        extra = f" [{m['delivery']}]" if m["direction"] == "out" else ""
        print(f"    {uk_time(m['at'], zone)} {arrow} {m['kind']:<20} {m['subject']}{extra}")
    print("  events:")
    for e in detail["events"]:  # type: ignore[attr-defined]
        print(f"    {uk_time(e['at'], zone)} {e['type']} {json.dumps(e['detail']) if e['detail'] else ''}")
    return 0


def uk_time(iso: str | None, zone: ZoneInfo) -> str:
    """An ISO-8601 instant from the --json fields as people in the UK read it: "Tue 17 Nov 2026 17:30 GMT"."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(zone).strftime("%a %d %b %Y %H:%M %Z")


def unfiled(settings: Settings, as_json: bool) -> int:
    from mailbot.store import case_reads

    with _database(settings) as engine, reading(engine) as conn:
        rows = case_reads.unfiled(conn)
    if as_json:
        print_json(rows)
        return 0
    for row in rows:
        print(f"{uk_time(row['at'], ZoneInfo(settings.timezone))} {row['kind']:<16} {row['from']:<32} "
              f"{row['subject']}")
    return 0


def db_upgrade(settings: Settings) -> int:
    """The database at the newest schema, and the bank holidays the coming months count past learnt and kept in
    the data directory (deploy-time work, so the first complaint after an installation does not wait for it)."""
    from mailbot.bootstrap import working_calendar
    from mailbot.settings import ConfigError

    engine = open_database(settings.database_url_effective)
    print(f"database at {engine.url.render_as_string(hide_password=True)} is up to date")
    try:
        working_calendar(settings).ask_ahead(datetime.now(UTC))
    except ConfigError:
        pass  # MAILBOT_CLOSURES is wrong: the bot's start says so in one line; the schema is up to date regardless
    return 0


def demo(settings: Settings) -> int:
    from mailbot.demo import play

    return play(settings)


def preview_letters(settings: Settings, folder: Path) -> int:
    from mailbot.preview import write_previews

    written = write_previews(settings, folder)
    print(f"wrote {len(written)} letter(s) to {folder}")
    return 0


def digest(settings: Settings, now: datetime | None, to: str | None, preview: Path | None) -> int:
    from mailbot import runtime
    from mailbot.bootstrap import App
    from mailbot.services.digest import DigestError

    app = App(settings, now=now)
    try:
        if preview is not None:
            app.digest.preview(app.clock(), to, preview)
            print(f"wrote the digest preview to {preview}")
            return 0
        queued = app.digest.send_now(app.clock(), to)
    except DigestError as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return 1
    try:
        report = runtime.deliver(app)
    except runtime.ActiveElsewhere as exc:
        print(f"digest: queued {queued}; {exc}, running on this database, sends it")
        return 0
    print(f"digest: queued {queued}, sent {report.sent}, deferred {report.deferred}, failed {report.failed}")
    return 0


def auth_test(settings: Settings) -> int:
    """Sign in to the mailbox and the SMTP server exactly as the bot does, and say plainly what happened.

    Exit 0 when every configured server accepted the sign-in, 1 when one refused or could not be reached.
    Nothing is fetched and nothing is sent; no password or token is printed.
    """
    from mailbot.mail.auth_check import check_imap, check_smtp

    method = {
        "password": "the password",
        "command": "an OAuth2 token from MAILBOT_OAUTH_TOKEN_COMMAND (XOAUTH2)",
        "microsoft": f"an OAuth2 token from Microsoft Entra ID for app {settings.ms_client_id} in tenant "
                     f"{settings.ms_tenant_id} (XOAUTH2)",
        "google": f"an OAuth2 token for the service account in {settings.google_service_account_file}, acting as "
                  f"{settings.imap_user} (XOAUTH2)",
    }[settings.auth]
    results = []
    if settings.imap_host:
        results.append(check_imap(settings))
    else:
        print("IMAP: not configured (local mode: mail comes in on the embedded SMTP listener)")
    if settings.smtp_host:
        results.append(check_smtp(settings))
    else:
        print("SMTP: not configured (letters are written to data/sent/)")
    for ok, line in results:
        print(line)
    if results:
        print(f"Signed in with {method}." if all(ok for ok, _ in results) else
              f"Sign-in failed; the bot signs in with {method}.")
    return 0 if all(ok for ok, _ in results) else 1


def version() -> str:
    from mailbot.status import version as installed_version

    return installed_version()


def status(settings: Settings, as_json: bool, now: datetime | None = None) -> int:
    """What the bot has been doing, and whether it is healthy: exit 0 healthy, 1 degraded, 3 failing."""
    from datetime import timezone

    from mailbot.status import report as health_report

    now = now or datetime.now(timezone.utc)
    with _database(settings) as engine:
        report = health_report(settings, engine, now)
    if as_json:
        print_json(report)
    else:
        zone = ZoneInfo(settings.timezone)
        print(f"mailbot {report['version']}: {report['state']}" + "".join(f"\n  - {r}" for r in report["reasons"]))
        print(f"  mode          {report['mode']} (sign-in: {settings.auth}), letters via {report['smtp']}")
        print(f"  running       {report['running'] or 'no mailbot is running on this database'}")
        for b in report["mailboxes"]:
            print(f"  mailbox       {b['mailbox']}: last read {uk_time(b['last_success'], zone)}")
        print(f"  last sent     {uk_time(report['last_sent'], zone)}")
        if settings.auth != "password":
            print(f"  sign-in       IMAP {report['sign_in_state']['imap']}, SMTP {report['sign_in_state']['smtp']}; "
                  f"token expires {uk_time(report['token_expires_at'], zone)}")
        print("  outbox        " + (", ".join(f"{n} {k}" for k, n in sorted(report["outbox"].items())) or "empty"))
        print(f"  failed (day)  {report['failed_last_day']}")
        print(f"  schema        {report['schema_revision']}")
    return int(report["exit_status"])


def export_person(settings: Settings, email: str, target: Path) -> int:
    """`mailbot export-person EMAIL DIR`: exit 0 with a summary, 2 when DIR is not empty (nothing is mixed in)."""
    from datetime import timezone

    from mailbot.store import repo
    from mailbot.store.subject_access import export_person as export

    if "@" not in email:
        print(f"mailbot: {email!r} is not an email address", file=sys.stderr)
        return 2
    if target.exists() and any(target.iterdir()):
        print(f"mailbot: {target} is not empty: give a new or empty folder, so the export holds nothing else",
              file=sys.stderr)
        return 2
    now = datetime.now(timezone.utc)
    with _database(settings) as engine:
        with session(engine) as s:
            written = export(s, email, target, settings.templates_dir, now)
            repo.add_event(s, None, now, "subject_access_export", files=len(written))
            s.commit()
    print(f"wrote {len(written)} file(s) to {target}; open {target / 'index.html'}")
    return 0


def erase_person(settings: Settings, email: str, reason: str, force: bool) -> int:
    """`mailbot erase-person EMAIL --reason TEXT [--force]`: exit 0 when done, 1 when refused (one line why)."""
    from datetime import timezone

    from mailbot.domain.procedures import OPEN_STATUSES
    from mailbot.store import erasure

    email = email.strip().lower()
    if "@" not in email:
        print(f"mailbot: {email!r} is not an email address", file=sys.stderr)
        return 2
    now = datetime.now(timezone.utc)
    with _database(settings) as engine:
        with session(engine) as s:
            own, about = erasure.person_cases(s, email)
            blocking = [c for c in own if c.status in OPEN_STATUSES or c.held_reason]
            if blocking and not force:
                first = blocking[0]
                why = f"on hold ({first.held_reason})" if first.held_reason else f"still {first.status}"
                print(f"mailbot: not erased: {first.ref} is {why}; close or #release it first, or use --force",
                      file=sys.stderr)
                return 1
            names = sorted({c.complainant_name for c in own if c.complainant_name})
            erasure.secure_delete(s)
            touched = erasure.erase_person(s, email, names, now, reason=reason)
            s.commit()
        erasure.scrub_file(engine)
    print(f"erased: {touched} case(s) anonymised or cleaned; their figures are kept")
    return 0


def annual_report(settings: Settings, start: date, end: date, fmt: str | None, out: Path | None,
                  now: datetime | None) -> int:
    """`mailbot report`: exit 0 with the report written (to --out or standard output), 2 on a period that is not one."""
    from datetime import timezone

    from mailbot.bootstrap import working_calendar
    from mailbot.services import annual_report as annual

    if end < start:
        print(f"mailbot: --to {end.isoformat()} is before --from {start.isoformat()}", file=sys.stderr)
        return 2
    if fmt is None:
        suffix = out.suffix.lower().lstrip(".") if out is not None else ""
        fmt = suffix if suffix in annual.FORMATS else "html"
    calendar = working_calendar(settings)
    now = now or datetime.now(timezone.utc)
    with _database(settings) as engine:
        data, cases = annual.build(engine, calendar, start, end, now)
    text = annual.render(fmt, data, cases, calendar, now, settings.templates_dir, settings.org_name)
    if out is None:
        sys.stdout.write(text)
        return 0
    out.write_text(text, encoding="utf-8", newline="")
    print(f"wrote the {fmt} report on {data['cases']} complaint(s) to {out}", file=sys.stderr)
    return 0


def audit_verify(settings: Settings, expected: dict[int, str], as_json: bool = False) -> int:
    """`mailbot audit verify`: exit 0 when every event is as recorded, 1 naming the ones that are not."""
    from mailbot.store import audit

    with _database(settings) as engine:
        with audit.snapshot(engine) as conn:
            verdict = audit.verify(conn, expected)
    findings = verdict.findings or []
    if as_json:
        print(json.dumps({"ok": verdict.ok, "events": verdict.events, "redacted": verdict.redacted,
                          "head": f"{verdict.head_seq}:{verdict.head_hash}", "checked_heads": sorted(expected),
                          "problems": [{"event_id": f.event_id, "place": f.seq, "problem": f.problem}
                                       for f in findings]}, indent=2))
    elif verdict.ok:
        print(f"audit trail verified: {verdict.events} events, none changed or removed ({verdict.redacted} "
              f"redacted by erasure or retention, as recorded); head {verdict.head_seq}:{verdict.head_hash}"
              + (f"; it passes through the {len(expected)} head(s) given" if expected else ""))
    else:
        print(f"audit trail FAILED: {len(findings)} problem(s) in {verdict.events} events", file=sys.stderr)
        for finding in findings[:50]:
            print(f"  {finding.line()}", file=sys.stderr)
        if len(findings) > 50:
            print(f"  ... and {len(findings) - 50} more (--json lists them all)", file=sys.stderr)
    return 0 if verdict.ok else 1


def audit_head(settings: Settings) -> int:
    from datetime import timezone

    from mailbot.store.audit_head import head_line

    with _database(settings) as engine:
        with reading(engine) as conn:
            print(head_line(conn, datetime.now(timezone.utc)))
    return 0


def backup(settings: Settings, target: Path) -> int:
    """`mailbot backup DIR`: exit 0 with the files written, or 2 with one line saying what to do instead."""
    from mailbot.store.backup import BackupRefused
    from mailbot.store.backup import backup as make_backup

    try:
        written = make_backup(settings.database_url_effective, settings.data_dir, target)
    except BackupRefused as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    if settings.secret:
        print("mailbot: the signing key is MAILBOT_SECRET, not a file: keep it with this backup", file=sys.stderr)
    return 0
