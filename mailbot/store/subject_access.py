"""Subject access (`mailbot export-person EMAIL DIR`): everything held about one person, as files they can read.

Their cases are those where they are the complainant or a mentor a complaint was about, and any case holding
mail from or to them. Their own mail and our letters to them are written out whole (`.eml`); everything else on
those cases (staff mail, staff letters, internal notes) is listed as existing, with its date and kind, for the
data-protection officer to decide on, and never written out. Mail of theirs filed on no case is included too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import or_
from sqlmodel import Session, col, select

from mailbot.files import make_private_dir, write_private_file
from mailbot.store import case_reads
from mailbot.store.db import from_db
from mailbot.store.models import Case, Event, MailMessage, MentorAction

# Event details that carry what staff wrote: withheld like the notes themselves.
STAFF_WORDS = ("text", "note", "body", "reason")
INTERNAL_EVENTS = frozenset({"internal_note"})


@dataclass
class CaseExport:
    ref: str
    role: str  # complainant, or the mentor it was about, or someone on it
    status: str
    opened: str
    included: list[dict[str, str]] = field(default_factory=list)
    withheld: list[dict[str, str]] = field(default_factory=list)


def _mine(message: MailMessage, email: str) -> bool:
    if message.direction == "in":
        return (message.from_addr or "").lower() == email
    return email in [a.strip().lower() for a in (message.to_addrs or "").split(",")]


def _when(value: datetime | None) -> str:
    moment = from_db(value)
    return moment.isoformat() if moment else ""


def export_person(session: Session, email: str, target: Path, templates_dir: Path, now: datetime) -> list[Path]:
    """Write the export into ``target`` (made 0700; files 0600); returns what was written."""
    email = email.strip().lower()
    make_private_dir(target)
    written: list[Path] = []

    def put(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        write_private_file(path, data)
        written.append(path)

    as_mentor = set(session.exec(select(MentorAction.case_id).where(MentorAction.mentor_email == email)).all())
    with_mail = set(session.exec(select(MailMessage.case_id).where(
        col(MailMessage.case_id).is_not(None),
        or_(MailMessage.from_addr == email, col(MailMessage.to_addrs).contains(email)))).all())
    cases = session.exec(select(Case).where(or_(Case.complainant == email, col(Case.id).in_(as_mentor | with_mail)))
                         .order_by(col(Case.id))).all()
    exports: list[CaseExport] = []
    for case in cases:
        role = "complainant" if case.complainant == email else (
            "the mentor it was about" if case.id in as_mentor else "named in its mail")
        export = CaseExport(case.ref, role, case.status, _when(case.opened_at))
        folder = target / case.ref
        messages = session.exec(select(MailMessage).where(MailMessage.case_id == case.id)
                                .order_by(col(MailMessage.id))).all()
        for number, message in enumerate(messages, 1):
            entry = {"when": _when(message.at), "kind": message.kind, "direction": message.direction}
            if _mine(message, email):
                name = f"{number:03d}-{'from-you' if message.direction == 'in' else 'to-you'}-{message.kind}.eml"
                put(folder / name, message.raw)
                export.included.append({**entry, "file": f"{case.ref}/{name}", "subject": message.subject})
            else:
                export.withheld.append(entry)
        events = []
        for event in session.exec(select(Event).where(Event.case_id == case.id).order_by(col(Event.id))).all():
            if event.type in INTERNAL_EVENTS:
                export.withheld.append({"when": _when(event.at), "kind": "internal note", "direction": ""})
                continue
            try:
                detail = json.loads(event.detail) if event.detail else {}
            except ValueError:
                detail = {}
            events.append({"at": _when(event.at), "type": event.type,
                           "detail": {k: v for k, v in detail.items() if k not in STAFF_WORDS}})
        put(folder / "events.json", json.dumps(events, indent=2).encode())
        summary = case_reads.summaries(session.connection(), only=case.id)[0]
        put(folder / "case.json", json.dumps({"case": summary, "restriction": summary["restriction"],
                                              "your_role": role}, indent=2, default=str).encode())
        exports.append(export)
    unfiled = session.exec(select(MailMessage).where(col(MailMessage.case_id).is_(None), MailMessage.direction == "in",
                                                     MailMessage.from_addr == email).order_by(col(MailMessage.id))).all()
    loose = []
    for number, message in enumerate(unfiled, 1):
        name = f"{number:03d}-from-you-{message.kind}.eml"
        put(target / "not-on-a-case" / name, message.raw)
        loose.append({"when": _when(message.at), "kind": message.kind, "file": f"not-on-a-case/{name}",
                      "subject": message.subject})
    env = Environment(loader=FileSystemLoader(str(templates_dir)), autoescape=select_autoescape(("html",)))
    html = env.get_template("export/index.html").render(email=email, made=now.isoformat(), cases=exports, loose=loose)
    put(target / "index.html", html.encode())
    return written
