"""Service tests: the real services over a real SQLite file, with no mail server.

Mail arrives as ``Arrival`` objects straight into the ingestor (what the IMAP adapter hands it), letters
are read from the outbox table, and delivery goes through a fake ``Transport``. The real servers stay in
tests/integration; these run in seconds.
"""

from __future__ import annotations

import email
import email.policy
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from sqlmodel import col, select

from mailbot.bootstrap import App
from mailbot.domain.signing import signed_address
from mailbot.services.ingest import IngestOutcome
from mailbot.services.mailbox import Arrival
from mailbot.settings import load_settings
from mailbot.store.db import session as new_session
from mailbot.store.models import Case, Event, MailMessage

REPO = Path(__file__).resolve().parents[2]
SECRET = "service-tests-secret-at-least-32-bytes-long"
ADDRESS = "complaints@1mm.org.uk"
# Monday 16 November 2026, 10:00 in London (GMT): a working day, well inside office hours.
MONDAY = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Letter:
    """A letter in the outbox as a reader sees it."""

    kind: str
    to: str
    subject: str
    text: str
    message_id: str
    delivery: str


@dataclass
class World:
    app: App

    @property
    def now(self) -> datetime:
        assert self.app.fixed_now is not None
        return self.app.fixed_now

    def advance(self, **delta: float) -> None:
        """Move the one clock on (every service reads it through the app)."""
        self.app.fixed_now = self.now + timedelta(**delta)

    def receive(self, raw: bytes) -> IngestOutcome:
        return self.app.ingestor.ingest(Arrival(raw, self.now))

    def outbox(self) -> list[Letter]:
        with new_session(self.app.engine) as s:
            rows = s.exec(select(MailMessage).where(MailMessage.direction == "out").order_by(col(MailMessage.id)))
            letters = []
            for row in rows:
                parsed = email.message_from_bytes(row.raw, policy=email.policy.default)
                body = parsed.get_body(("plain",))
                letters.append(Letter(row.kind, row.to_addrs, str(parsed["Subject"]),
                                      body.get_content() if body is not None else "", row.message_id,
                                      row.delivery or ""))
            return letters

    def take_letters(self) -> list[Letter]:
        """The letters queued since the last call."""
        letters = self.outbox()
        new, self._seen = letters[getattr(self, "_seen", 0):], len(letters)
        return new

    def case(self, ref: str) -> Case:
        with new_session(self.app.engine) as s:
            found = s.exec(select(Case).where(Case.ref == ref)).one()
            s.expunge(found)
            return found

    def inbound_kinds(self, ref: str) -> list[str]:
        with new_session(self.app.engine) as s:
            case = s.exec(select(Case).where(Case.ref == ref)).one()
            return list(s.exec(select(MailMessage.kind).where(MailMessage.case_id == case.id,
                                                              MailMessage.direction == "in")
                               .order_by(col(MailMessage.id))).all())

    def events(self, ref: str | None = None) -> list[str]:
        with new_session(self.app.engine) as s:
            query = select(Event.type).order_by(col(Event.id))
            if ref is not None:
                case = s.exec(select(Case).where(Case.ref == ref)).one()
                query = query.where(Event.case_id == case.id)
            return list(s.exec(query).all())

    def staff_reply(self, ref: str, body: str, frm: str = "priya.shah@1mm.org.uk") -> IngestOutcome:
        """A member of staff answering in the case's thread, through its signed reply address."""
        return self.receive(mail(frm=frm, to=signed_address(ref, SECRET.encode(), ADDRESS), subject=f"Re: [{ref}]",
                                 body=body, date=self.now))


def mail(frm: str = "Jane Doe <jane@example.com>", subject: str = "My complaint",
         body: str = "I am unhappy with the service.", to: str = ADDRESS, date: datetime = MONDAY,
         message_id: str | None = None, **headers: str) -> bytes:
    """An ordinary message as a mail client writes it; extra headers by keyword (In_Reply_To -> In-Reply-To)."""
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id or make_msgid(domain="example.com")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("staff.toml", "participants.csv"):
        shutil.copy(REPO / "data" / name, data / name)
    settings = load_settings(data_dir=data, templates_dir=REPO / "templates", secret=SECRET, address=ADDRESS)
    app = App(settings, now=MONDAY)
    try:
        yield World(app)
    finally:
        app.engine.dispose()
