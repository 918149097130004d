"""The web form's way into the pipeline, and each case's private status page.

A submission that passed the form's checks (domain.webform) becomes a message and goes to the Ingestor with
the form's own record of who sent it (``Arrival.submission``, which no message can set): the same chain, the
same casework, one transaction, committed before the confirmation page is shown. Information added on a
status page arrives as a reply in the complainant's thread would.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy.engine import Engine
from sqlmodel import Session

from mailbot.domain import data_requests
from mailbot.domain.commands import POSTAL_DOMAIN, OnBehalf
from mailbot.domain.mail import parse_mail
from mailbot.domain.webform import Submission, check_status_token, compose, message
from mailbot.services.correspondence import Correspondence
from mailbot.services.ingest import Ingestor
from mailbot.services.mailbox import Arrival
from mailbot.store import repo
from mailbot.store.db import from_db
from mailbot.store.db import session as new_session
from mailbot.store.models import Case

# Letters a complainant may read again on their page (never a letter to staff, never an internal note).
COMPLAINANT_LETTERS = frozenset({
    "acknowledgement", "acknowledge-only", "staff-reply", "outcome", "extension", "escalation", "escalation-declined",
    "not-a-complaint", "restriction-warning", "restriction-notice", "restriction-lifted", "restriction-expired",
    "contact-terminated", "staff-redirect",
    "data-request-acknowledgement", "data-request-extension", "data-request-answered",
})


@dataclass(frozen=True)
class Receipt:
    """What the confirmation page shows: the reference and the stage-1 promises in the letter's words."""

    ref: str | None
    opened: bool  # a new case (not, say, mail from a restricted address filed on its case)
    deadlines: dict[str, str]
    procedure_title: str
    status_link: str | None
    emailed: bool  # the acknowledgement goes by email (not by post)


@dataclass(frozen=True)
class SentLetter:
    at: datetime
    subject: str
    text: str


@dataclass(frozen=True)
class CaseStatus:
    ref: str
    status: str
    stage_label: str
    procedure_title: str
    deadlines: dict[str, str]
    letters: tuple[SentLetter, ...]
    noun: str = "complaint"  # "request" for a request about personal data (domain.data_requests)


class WebIntake:
    def __init__(self, engine: Engine, ingestor: Ingestor, letters: Correspondence, secret: bytes, address: str,
                 domain: str, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.ingestor = ingestor
        self.letters = letters
        self.secret = secret
        self.address = address
        self.domain = domain
        self.clock = clock
        # Called after each commit that queued letters (the runtime sets it to wake its delivery loop).
        self.on_commit: Callable[[], None] = lambda: None

    def submit(self, submission: Submission) -> Receipt:
        now = self.clock()
        values = submission.values
        email = submission.email
        raw = compose(submission, to=self.address, from_fallback=f"web-form@{POSTAL_DOMAIN}",
                      message_id=f"<{secrets.token_hex(12)}.web@{self.domain}>", now=now)
        who = OnBehalf(" ".join(values.get("name", "").split())[:200], email, "web",
                       "" if email else " ".join(values.get("postal", "").split())[:500])
        outcome = self.ingestor.ingest(Arrival(raw, now, submission=who, form=dict(values)))
        self.on_commit()
        if outcome.ref is None:
            return Receipt(None, False, {}, "", None, bool(email))
        with new_session(self.engine) as session:
            case = repo.case_by_ref(session, outcome.ref)
            assert case is not None
            context = self.letters.letter_context(session, case)
            return Receipt(case.ref, outcome.action == "new_case", dict(context["deadlines"]),  # type: ignore[arg-type]
                           str(context["procedure_title"]), self.letters.status_link(case), bool(email))

    def case_status(self, ref: str, token: str) -> CaseStatus | None:
        """The page for a genuine link; None for anything else (the page says only "not found")."""
        with new_session(self.engine) as session:
            case = repo.case_by_ref(session, ref.upper())
            if case is None or not check_status_token(self.secret, case.ref, case.status_nonce, token):
                return None
            context = self.letters.letter_context(session, case)
            letters = tuple(SentLetter(*found) for found in self._letters_to_complainant(session, case))
            return CaseStatus(case.ref, case.status, str(context["stage_label"]), str(context["procedure_title"]),
                              dict(context["deadlines"]) if case.status in ("open", "escalated") else {},  # type: ignore[arg-type]
                              letters, "request" if case.procedure == data_requests.PROCEDURE else "complaint")

    @staticmethod
    def _letters_to_complainant(session: Session, case: Case) -> list[tuple[datetime, str, str]]:
        found = []
        for row in repo.letters_to(session, case.id or 0, case.complainant):
            if row.kind not in COMPLAINANT_LETTERS or row.delivery not in ("sent", "pending", "by_post"):
                continue
            mail = parse_mail(row.raw)
            at = from_db(row.at)
            assert at is not None
            found.append((at, mail.subject, mail.text))
        return found

    def add_information(self, ref: str, token: str, text: str) -> str | None:
        """Information added on the status page, taken in as a reply in the complainant's thread; the case's
        reference, or None for a link that is not genuine."""
        now = self.clock()
        with new_session(self.engine) as session:
            case = repo.case_by_ref(session, ref.upper())
            if case is None or not check_status_token(self.secret, case.ref, case.status_nonce, token):
                return None
            thread = self.letters.complainant_thread(session, case)
            complainant, name, subject = case.complainant, case.complainant_name, case.subject or ""
        msg = message(name=name, email=complainant, to=self.address, subject=f"Re: [{case.ref}] {subject}",
                      body=text + "\n\n(Added on the complaint's web page.)\n",
                      message_id=f"<{secrets.token_hex(12)}.web@{self.domain}>", now=now, thread=tuple(thread))
        self.ingestor.ingest(Arrival(msg.as_bytes(), now, form={"added_information": text}))
        self.on_commit()
        return case.ref
