"""The ``mailbot`` command. Its sub-commands and their --json fields are a public contract."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Sequence
from zoneinfo import ZoneInfo

from mailbot import logs
from mailbot.settings import ConfigError, load_settings
from mailbot.store.faults import DatabaseUnusable


def _parse_now(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--now must be an ISO-8601 date-time, e.g. 2026-11-23T09:00:00+00:00; "
                                         f"got {value!r}") from None
    return dt


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date: give YYYY-MM-DD") from None


def _audit_head(value: str) -> tuple[int, str]:
    """PLACE:HASH as the daily line prints it (a leading "audit trail head on DATE: " is allowed)."""
    place, _, digest = value.rsplit(": ", 1)[-1].strip().partition(":")
    if not place.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise argparse.ArgumentTypeError(f"{value!r} is not PLACE:HASH (a number, a colon and 64 hex digits)")
    return int(place), digest


def _run_description() -> str:
    """What `mailbot run --help` says: the mode these settings run in, and where the settings come from."""
    where = ("Settings come from MAILBOT_* environment variables and a .env file in the working directory "
             "(.env.example lists them all).")
    try:
        s = load_settings()
    except ConfigError as exc:
        return f"The settings do not load: {exc}. {where}"
    if s.imap_host:
        how = {"password": "a password", "command": "a token from MAILBOT_OAUTH_TOKEN_COMMAND",
               "microsoft": "a token from Microsoft Entra ID", "google": "a Google service account's token"}[s.auth]
        mode = f"With these settings it reads the mailbox {s.imap_user}@{s.imap_host} over IMAP (signing in with {how})"
    else:
        mode = (f"With these settings it runs in local mode: it takes mail on {s.local_smtp_host}:{s.local_smtp_port} "
                f"(MAILBOT_IMAP_HOST is not set)")
    sends = f"sends letters through {s.smtp_host}" if s.smtp_host else f"writes letters to {s.data_dir / 'sent'}"
    http = (f" It answers /healthz and /metrics on http://{s.http_host}:{s.http_port}." if s.http_port
            else " Its HTTP listener is off (MAILBOT_HTTP_PORT=0).")
    return f"{mode}, {sends}, and keeps its data in {s.database_url_effective.split('@')[-1]}.{http} {where}"


def _version() -> str:
    from mailbot.console import version

    return version()


class _ShowVersion(argparse.Action):
    """`--version`, with the installed version looked up only when asked for (the lookup reads the package
    metadata: a few hundredths of a second every other command need not spend)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(f"mailbot {_version()}")
        parser.exit()


def build_parser(describe_run: bool = False) -> argparse.ArgumentParser:
    """The command line; ``describe_run`` reads the settings to say what `run` would do (for `run --help` only)."""
    parser = argparse.ArgumentParser(prog="mailbot", description="The 1MM complaints bot.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--version", action=_ShowVersion, help="show the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bot (the daemon), or one pass with --once",
                         description=_run_description() if describe_run else None)
    run.add_argument("--once", action="store_true", help="process the mailbox, run due work, deliver, then exit")
    run.add_argument("--now", type=_parse_now, help="the time to act as (ISO-8601), with --once")

    cases = sub.add_parser("cases", help="list the cases")
    cases.add_argument("--json", action="store_true")

    case = sub.add_parser("case", help="show one case with its messages and events")
    case.add_argument("ref")
    case.add_argument("--json", action="store_true")

    unfiled = sub.add_parser("unfiled", help="inbound mail filed on no case (automated or unreadable)")
    unfiled.add_argument("--json", action="store_true")

    sub.add_parser("demo", help="play the sample complaints in data/samples through the whole pipeline")

    letters = sub.add_parser("letters", help="review the letters' wording")
    letters.add_argument("--preview", metavar="DIR", required=True, type=Path,
                         help="write every letter, filled with sample data, as .eml and .html into DIR")

    digest = sub.add_parser("digest", help="send (or preview) the managers' daily digest by hand")
    digest.add_argument("--now", type=_parse_now, help="the time to act as (ISO-8601)")
    digest.add_argument("--to", metavar="EMAIL", help="only this recipient")
    digest.add_argument("--preview", metavar="FILE.html", type=Path, help="write the HTML instead of sending")

    status = sub.add_parser("status", help="what the bot has been doing, and whether it is healthy (exit 0, 1 "
                                           "degraded, 3 failing)")
    status.add_argument("--json", action="store_true")
    status.add_argument("--now", type=_parse_now, default=None, help=argparse.SUPPRESS)
    backup = sub.add_parser("backup", help="copy the database, the signing key and the directories into DIR "
                                           "(consistent while the bot runs)")
    backup.add_argument("dir", type=Path)
    export = sub.add_parser("export-person", help="subject access: write everything held about EMAIL into DIR "
                                                  "(their mail as .eml, records as JSON, an index.html to read)")
    export.add_argument("email")
    export.add_argument("dir", type=Path)
    erase = sub.add_parser("erase-person", help="remove a person's data everywhere, keeping the figures (refused "
                                                "while they have an open or held case, unless --force)")
    erase.add_argument("email")
    erase.add_argument("--reason", required=True, help="why (recorded; do not name the person)")
    erase.add_argument("--force", action="store_true", help="erase even with an open or held case")
    annual = sub.add_parser("report", help="the annual review: figures for the complaints opened between two UK "
                                           "dates, both included (HTML with charts, CSV one row per case, or JSON)")
    annual.add_argument("--from", dest="start", required=True, type=_parse_date, metavar="YYYY-MM-DD")
    annual.add_argument("--to", dest="end", required=True, type=_parse_date, metavar="YYYY-MM-DD")
    annual.add_argument("--format", choices=("html", "csv", "json"), default=None,
                        help="default: from --out's extension, else html")
    annual.add_argument("--out", type=Path, metavar="PATH", help="write here instead of standard output")
    annual.add_argument("--now", type=_parse_now, help="the time to report as of (ISO-8601)")
    audit = sub.add_parser("audit", help="the tamper-evident audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="prove no event was changed or removed (exit 0), or name the "
                                                 "first ones that were (exit 1)")
    verify.add_argument("--expect", metavar="PLACE:HASH", action="append", default=[], type=_audit_head,
                        help="a head written earlier to the log or the digest: the chain must still pass through "
                             "it (repeatable)")
    verify.add_argument("--json", action="store_true")
    audit_sub.add_parser("head", help="print the chain's head as the daily log line gives it")
    auth = sub.add_parser("auth", help="check the sign-in to the mailbox and the SMTP server")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    auth_sub.add_parser("test", help="sign in to IMAP and SMTP as the bot would, and say what worked")
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply schema migrations")
    return parser


# Exit statuses, one table for every command (README, "Exit statuses").
EXIT_DONE, EXIT_FAILED, EXIT_CONFIG, EXIT_UNUSABLE = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(describe_run="run" in words and ("-h" in words or "--help" in words))
    args = parser.parse_args(words)
    logging.basicConfig(level=logging.INFO if args.verbose or args.command == "run" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic narrates every start at INFO; only its warnings are news to an operator.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # aiosmtpd logs every SMTP command of the local listener at INFO; that is debugging detail.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # mail-parser logs a WARNING for every part type it does not turn into text (signatures, delivery
    # reports): content domain.mail handles itself.
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    try:
        status = _dispatch(args)
        sys.stdout.flush()  # a reader that went away is found here, not in Python's own flush at exit
        return status
    except ConfigError as exc:
        print(f"mailbot: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except DatabaseUnusable as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except BrokenPipeError:
        # `mailbot cases | head`: the reader has what it wanted. Nothing more can be printed, and Python's own
        # flush at exit would complain again, so standard output goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_DONE


def _dispatch(args: argparse.Namespace) -> int:
    from mailbot import console

    if args.command != "run" and not gc.isenabled():
        # Off while the libraries loaded (mailbot.launch); `run` switches it on once it has built the bot. Here
        # the libraries are kept out of its way first, as there (console.settle_memory): switched on over them,
        # its first collections walked all of them, 28-30 ms of a 0.4 s `mailbot cases`. (Called in a process
        # whose collector is on, a test's, this leaves it alone.)
        console.settle_memory()

    settings = load_settings()
    default = logging.INFO if args.verbose or args.command == "run" else logging.WARNING
    logs.configure(getattr(logging, settings.log_level) if settings.log_level else default, settings.log_format)
    now = getattr(args, "now", None)
    if now is not None and now.tzinfo is None:
        # A bare local time means the organisation's time zone, as a person would read it.
        now = now.replace(tzinfo=ZoneInfo(settings.timezone))
    if args.command == "demo":
        return console.demo(settings)
    if args.command == "run":
        if now and not args.once:
            print("mailbot: --now only works with --once", file=sys.stderr)
            return 2
        return console.run(settings, once=args.once, now=now)
    if args.command == "cases":
        return console.cases(settings, as_json=args.json)
    if args.command == "case":
        return console.case(settings, args.ref, as_json=args.json)
    if args.command == "unfiled":
        return console.unfiled(settings, as_json=args.json)
    if args.command == "db":
        return console.db_upgrade(settings)
    if args.command == "status":
        return console.status(settings, as_json=args.json, now=now)
    if args.command == "backup":
        return console.backup(settings, args.dir)
    if args.command == "export-person":
        return console.export_person(settings, args.email, args.dir)
    if args.command == "erase-person":
        return console.erase_person(settings, args.email, args.reason, args.force)
    if args.command == "report":
        return console.annual_report(settings, args.start, args.end, args.format, args.out, now)
    if args.command == "audit":
        if args.audit_command == "head":
            return console.audit_head(settings)
        return console.audit_verify(settings, dict(args.expect), as_json=args.json)
    if args.command == "auth":
        return console.auth_test(settings)
    if args.command == "letters":
        return console.preview_letters(settings, args.preview)
    if args.command == "digest":
        return console.digest(settings, now=now, to=args.to, preview=args.preview)
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
