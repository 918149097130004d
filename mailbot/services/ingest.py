"""Intake: one raw message in, one transaction out.

The inbound message, the case change, the audit events, the mailbox cursor and every letter the
message causes are committed together, so a crash at any point either keeps all of it or none of
it; the delivery worker sends the letters afterwards.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from mailbot.domain.chain import RouteConfig, Verdict, route
from mailbot.domain.directory import DirectorySource
from mailbot.domain.mail import (
    REUSED_MESSAGE_ID,
    InboundMail,
    bytes_only,
    parse_each,
    parse_mail,
    same_message,
    with_own_id,
)
from mailbot.services.correspondence import Correspondence
from mailbot.services.lifecycle import CaseLifecycle
from mailbot.services.mailbox import Arrival, CursorPosition, Reader
from mailbot.services.observe import Observer, Unobserved
from mailbot.services.staffdesk import StaffDesk
from mailbot.store import repo
from mailbot.store.db import session as new_session
from mailbot.store.db import to_db
from mailbot.store.models import Case

log = logging.getLogger(__name__)


class StoreRouteLookup(repo.StoreLookup):
    """The chain's view of the store and the staff directory."""

    def __init__(self, session: Session, directory: DirectorySource) -> None:
        super().__init__(session)
        self.directory = directory
        # The chain asks both questions of the message it routes: one query answers them (a lookup lives
        # for one routing, before anything about the message is written).
        self._seen: tuple[str, frozenset[str]] | None = None

    def _directions(self, message_id: str) -> frozenset[str]:
        if self._seen is None or self._seen[0] != message_id:
            self._seen = (message_id, repo.directions_seen(self.session, message_id))
        return self._seen[1]

    def is_duplicate(self, message_id: str) -> bool:
        return "in" in self._directions(message_id)

    def is_our_message(self, message_id: str) -> bool:
        # Only whether the letter exists: its direction, not the whole row with its raw bytes.
        return "out" in self._directions(message_id)

    def staff_roles(self, address: str) -> frozenset[str] | None:
        member = self.directory.get().staff_member(address)
        return member.roles if member else None


@dataclass(frozen=True)
class IngestOutcome:
    message_id: str
    action: str
    kind: str
    ref: str | None
    letters: tuple[str, ...]


class Ingestor:
    def __init__(self, engine: Engine, route_config: RouteConfig, lifecycle: CaseLifecycle, staff_desk: StaffDesk,
                 letters: Correspondence, directory: DirectorySource, clock: Callable[[], datetime],
                 observer: Observer | None = None) -> None:
        self.engine = engine
        self.observer: Observer = observer or Unobserved()
        self.route_config = route_config
        # Staff verdicts go to the staff desk; everything else to the case's lifecycle.
        self.lifecycle = lifecycle
        self.staff_desk = staff_desk
        # For telling staff about mail the pipeline failed on.
        self.letters = letters
        self.directory = directory
        self.clock = clock

    def ingest_batch(self, arrivals: Iterable[Arrival], cursor: CursorPosition | None = None,
                     max_seconds: float | None = None,
                     on_commit: Callable[[], None] | None = None,
                     on_committed: Callable[[list[int]], None] | None = None,
                     reader: Reader | None = None) -> list[IngestOutcome]:
        """Process arrivals in order in one transaction, with the cursor moved to the last of them.

        A message the pipeline cannot handle is rolled back alone and kept as a processing error; the
        batch, its letters and the cursor commit together. Batching matters for a backlog: one commit and
        one cursor write per fetch, not per message.

        Each transaction is first tried without a savepoint per message (on PostgreSQL a savepoint and its
        release are two round trips a message, and SQLAlchemy's nested transaction costs more CPU than the
        statements). If any message fails, the whole transaction is rolled back and its messages are
        processed again in a fresh session, each in its own savepoint, so the failed one is kept apart as
        before and the others are filed as if nothing had happened. Nothing outside the database is done
        for a message until its transaction has committed: the outcome's log line and count come after.

        With ``max_seconds``, the batch is committed (cursor included) whenever a transaction has run
        that long and carries on in a new one: the delivery worker, sending while intake runs, needs the
        writer's lock to mark a letter sent and to read the outbox, and must not wait behind a whole fetch.
        ``on_commit`` is called after each commit (to wake that worker: there are letters to send).
        Intake uses a limit of 50 ms (INTAKE_TRANSACTION_SECONDS); without one, a fetch is one transaction.
        ``on_committed`` gets the UIDs each commit made processed (to move them to the processed folder).

        Outside the careful pass, messages are read a few at a time (``ASK_AHEAD``) and what handling them
        will ask the store is asked for all of them at once (``repo.foresee``): one round trip for several
        messages on PostgreSQL. Those messages are handled at one ``now``, the moment they were read.

        ``reader`` parses the arrivals, in order, as they are asked for (by default here, one by one:
        ``parse_each``; a backlog's in a child process: mail.parse_pool).
        """
        outcomes: list[IngestOutcome] = []
        arrivals = list(arrivals)
        pending = zip(arrivals, (reader or parse_each)([arrival.raw for arrival in arrivals]))
        ahead: deque[tuple[Arrival, InboundMail]] = deque()  # read, not yet handled

        def read_ahead(count: int) -> None:
            size = sum(len(arrival.raw) for arrival, _ in ahead)
            while len(ahead) < count and (not ahead or size < ASK_AHEAD_BYTES):
                read = next(pending, None)
                if read is None:
                    return
                ahead.append(read)
                size += len(read[0].raw)

        careful = False  # after a failure, the rest of these arrivals go one savepoint each at once
        read_ahead(1)
        while ahead:
            taken: list[tuple[Arrival, InboundMail]] = []
            started = time.monotonic()
            done: list[IngestOutcome] = []
            failed = False
            asked = 0  # how many of the messages ahead had their questions asked in this transaction
            with self.directory.steady(), new_session(self.engine) as session:
                try:
                    while ahead:
                        if careful:
                            current, mail = ahead.popleft()
                            taken.append((current, mail))
                            done.append(self._one(session, mail, current))
                        else:
                            if not asked:
                                read_ahead(ASK_AHEAD)
                                now = self.clock()
                                self._ask_ahead(session, [mail for arrival, mail in ahead if not arrival.unfetchable],
                                                now)
                                asked = len(ahead)
                            current, mail = ahead.popleft()
                            taken.append((current, mail))
                            asked -= 1
                            done.append(self._process(session, mail, current, now=now))
                            # What a savepoint's release did: this message's ORM changes are written before
                            # the next message's plain statements read the tables.
                            session.flush()
                        read_ahead(1)
                        if max_seconds is not None and time.monotonic() - started >= max_seconds:
                            break
                    self._commit(session, cursor, taken)
                except OperationalError:
                    raise  # the database itself is unwell: this transaction is retried later, from the cursor
                except Exception:  # noqa: BLE001  (the careful pass below finds the message and keeps it)
                    if careful:
                        raise
                    session.rollback()
                    failed = True
            if failed:
                careful = True
                with self.directory.steady(), new_session(self.engine) as session:
                    done = [self._one(session, mail, one) for one, mail in taken]
                    self._commit(session, cursor, taken)
            for outcome in done:
                _log_outcome(outcome)
                self.observer.message(outcome.action)
            outcomes.extend(done)
            if on_commit is not None:
                on_commit()
            uids = _uids(taken)
            if on_committed is not None and uids:
                on_committed(uids)
        return outcomes

    def _commit(self, session: Session, cursor: CursorPosition | None,
                taken: list[tuple[Arrival, InboundMail]]) -> None:
        uids = _uids(taken)
        if cursor is not None and uids:
            self._advance_cursor(session, cursor, max(uids))
        session.commit()

    def skip_existing(self, cursor: CursorPosition, last_uid: int) -> None:
        """The cursor of a mailbox read for the first time, moved past what is there (nothing, or mail a
        first run was told to skip, which the audit trail records)."""
        with new_session(self.engine) as session:
            self._advance_cursor(session, cursor, last_uid)
            if last_uid:
                repo.add_event(session, None, self.clock(), "first_run_skipped", mailbox=cursor.mailbox,
                               uidvalidity=cursor.uidvalidity, up_to_uid=last_uid)
            session.commit()

    def _one(self, session: Session, mail: InboundMail, arrival: Arrival) -> IngestOutcome:
        """One message in its own savepoint: if the pipeline fails on it, it is rolled back alone and kept."""
        savepoint = session.begin_nested()
        try:
            outcome = self._process(session, mail, arrival)
            savepoint.commit()
        except OperationalError:
            raise  # the database itself is unwell: this transaction is retried later, from the cursor
        except Exception as exc:  # noqa: BLE001  (one bad message must not stop the mailbox)
            log.exception("could not process message %s", mail.message_id)
            savepoint.rollback()
            outcome = self._keep(session, mail, arrival, exc)
        return outcome

    def _keep(self, session: Session, mail: InboundMail, arrival: Arrival, exc: Exception) -> IngestOutcome:
        """Keep a failed message with what was read of it; if the store refuses even that, keep its bytes alone.

        A failure here used to fail the whole transaction, so intake stopped at the message for good (a NUL
        or an over-long header on PostgreSQL did it). Its bytes under a hash of them can always be stored.
        """
        kept = session.begin_nested()
        try:
            outcome = self._keep_failed(session, mail, arrival, exc)
            kept.commit()
            return outcome
        except OperationalError:
            raise
        except Exception:  # noqa: BLE001  (the message must still be kept and passed)
            log.exception("could not keep message %s as read; keeping its bytes alone", mail.message_id)
            kept.rollback()
            return self._keep_failed(session, bytes_only(arrival.raw, "the store refused what was read of it"),
                                     arrival, exc)

    def ingest(self, arrival: Arrival, cursor: CursorPosition | None = None) -> IngestOutcome:
        return self.ingest_batch([arrival], cursor)[0]

    def _keep_failed(self, session: Session, mail: InboundMail, arrival: Arrival, exc: Exception) -> IngestOutcome:
        """Keep a message the pipeline could not handle, move past it, and leave it where staff will see it."""
        if repo.inbound_seen(session, mail.message_id):
            mail = self._unless_another_message(session, mail)
        if not repo.inbound_seen(session, mail.message_id):
            error = f"{type(exc).__name__}: {exc}"[:1000]
            repo.record_inbound(session, {
                "message_id": mail.message_id, "subject": mail.subject, "from_addr": mail.from_addr,
                "to_addrs": ",".join(mail.to), "kind": "processing_error", "at": to_db(arrival.received_at),
                "raw": arrival.raw, "uid": arrival.uid, "detail": json.dumps({"error": error})})
            repo.add_event(session, None, self.clock(), "processing_error", message_id=mail.message_id,
                           sender=mail.from_addr, error=error)
            # Staff hear of it as of unreadable mail; if even that letter fails, the record above stays.
            alert = session.begin_nested()
            try:
                self.letters.alert_unreadable(session, None, mail, [f"the bot failed on it: {error}"], self.clock())
                alert.commit()
            except Exception:  # noqa: BLE001
                log.exception("could not alert staff about message %s", mail.message_id)
                alert.rollback()
        return IngestOutcome(mail.message_id, "error", "processing_error", None, ())

    def _keep_unfetchable(self, session: Session, mail: InboundMail, arrival: Arrival, error: str) -> IngestOutcome:
        """Record a message the server would not give (the bot's own note of it stands in for its bytes) and
        tell staff, who can still open it in the mailbox. Without this, one such message stopped the mailbox
        for good: every fetch of it failed, and nothing after it was read."""
        if repo.inbound_seen(session, mail.message_id):
            return IngestOutcome(mail.message_id, "duplicate", "duplicate", None, ())
        now = self.clock()
        said = " ".join(error.split())[:300]
        repo.record_inbound(session, {
            "message_id": mail.message_id, "subject": mail.subject, "from_addr": "", "to_addrs": "",
            "kind": "processing_error", "at": to_db(arrival.received_at), "raw": mail.raw, "uid": arrival.uid,
            "detail": json.dumps({"error": f"the mail server would not give this message: {said}"})})
        repo.add_event(session, None, now, "message_unfetchable", message_id=mail.message_id, error=said)
        letters = self.letters.alert_unreadable(session, None, mail, [
            f"the mail server would not give the bot this message ({said}); it is still in the mailbox"], now)
        return IngestOutcome(mail.message_id, "error", "processing_error", None,
                             tuple(letter.kind for letter in letters))

    @staticmethod
    def _unless_another_message(session: Session, mail: InboundMail) -> InboundMail:
        """A message whose Message-ID is already kept: itself when it is that message again (a duplicate), else
        under an id of its own, so it is filed rather than dropped as a duplicate of somebody else's mail."""
        kept = repo.inbound_raw(session, mail.message_id)
        return mail if kept is not None and same_message(mail, parse_mail(kept)) else with_own_id(mail)

    def _ask_ahead(self, session: Session, mails: list[InboundMail], now: datetime) -> None:
        """Whether each message is known, and what a new case for it would ask: one round trip on PostgreSQL
        for them all, not three for each."""
        repo.foresee(session, [ask for mail in mails
                               for ask in (repo.ask_directions(mail.message_id), *self.lifecycle.asks_ahead(mail, now))],
                     complaints=len(mails))

    def _process(self, session: Session, mail: InboundMail, arrival: Arrival,
                 now: datetime | None = None) -> IngestOutcome:
        """Handle one message; with ``now``, its questions were asked ahead at that moment (``_ask_ahead``)."""
        if arrival.unfetchable is not None:
            return self._keep_unfetchable(session, mail, arrival, arrival.unfetchable)
        if now is None:
            now = self.clock()
            self._ask_ahead(session, [mail], now)
        lookup = StoreRouteLookup(session, self.directory)
        if lookup.is_duplicate(mail.message_id):
            mail = self._unless_another_message(session, mail)
        verdict = route(mail, lookup, self.route_config)
        if verdict.action == "duplicate":
            return IngestOutcome(mail.message_id, "duplicate", "duplicate", None, ())
        case = repo.case_by_ref(session, verdict.ref) if verdict.ref else None
        # Mail for a merged case belongs to the case it was merged into (and its restriction, if any).
        seen: set[str] = set()
        while case is not None and case.status == "merged" and case.merged_into and case.ref not in seen:
            seen.add(case.ref)
            case = repo.case_by_ref(session, case.merged_into)
        if verdict.action == "new_case":
            case = self.lifecycle.open_case(session, mail, arrival.received_at, now, on_behalf=arrival.submission)
        elif verdict.action == "ceo_direct" and case is None:
            case = self.lifecycle.open_case_for_the_ceo(session, mail, verdict, arrival.received_at, now)
        elif verdict.action == "on_behalf":
            case = self.lifecycle.open_case_on_behalf(session, mail, verdict, arrival.received_at, now)
        if verdict.action == "staff":
            assert case is not None
            self._record(session, mail, arrival, verdict, verdict.kind, case)
            repo.add_event(session, case, now, "staff_message", actor=mail.from_addr, rules=list(verdict.rules))
            letters = self.staff_desk.handle(session, case, mail, verdict.staff_roles, now)
        else:
            # Decided first, so the message's row is written once, as what it is.
            filing = self.lifecycle.file(session, verdict, mail, case, now)
            self._record(session, mail, arrival, verdict, filing.kind, filing.case)
            letters = self.lifecycle.handle(session, verdict, mail, filing, arrival.received_at, now)
        return IngestOutcome(mail.message_id, verdict.action, verdict.kind, case.ref if case else None,
                             tuple(letter.kind for letter in letters))

    @staticmethod
    def _record(session: Session, mail: InboundMail, arrival: Arrival, verdict: Verdict, kind: str,
                case: Case | None) -> None:
        detail: dict[str, object] = {"rules": list(verdict.rules), "action": verdict.action}
        if verdict.thread:
            detail["thread_rule"] = verdict.thread.rule
        if not mail.readable or REUSED_MESSAGE_ID in mail.defects:
            detail["defects"] = list(mail.defects)
        if arrival.form is not None:
            detail["channel"] = "web"
            detail["form"] = arrival.form
        repo.record_inbound(session, {
            "case_id": repo.case_id(session, case),
            "message_id": mail.message_id,
            "subject": mail.subject,
            "from_addr": mail.from_addr,
            "to_addrs": ",".join(mail.to),
            "kind": kind,
            "at": to_db(arrival.received_at),
            "raw": arrival.raw,
            "uid": arrival.uid,
            "detail": json.dumps(detail),
        })

    @staticmethod
    def _advance_cursor(session: Session, position: CursorPosition, uid: int) -> None:
        repo.advance_cursor(session, position.mailbox, position.uidvalidity, uid)


def _uids(taken: list[tuple[Arrival, InboundMail]]) -> list[int]:
    """The IMAP UIDs of a transaction's arrivals (the web form's have none)."""
    return [arrival.uid for arrival, _ in taken if arrival.uid is not None]


def _log_outcome(outcome: IngestOutcome) -> None:
    """One line per message: what it was, its case, the letters it caused (ids only: never its text)."""
    log.info("message <%s>: %s (%s)%s%s", outcome.message_id, outcome.action, outcome.kind,
             f", case {outcome.ref}" if outcome.ref else "",
             f", letters: {', '.join(outcome.letters)}" if outcome.letters else "",
             extra={"event": "message", "message_id": outcome.message_id, "verdict": outcome.action,
                    "kind": outcome.kind, "case": outcome.ref, "letters": list(outcome.letters)})


# Messages read ahead, whose questions of the store are asked together (Ingestor.ingest_batch): at most this many,
# and no more once they come to this many bytes (a backlog of large mail is not all parsed at once).
ASK_AHEAD = 16
ASK_AHEAD_BYTES = 4 * 1024 * 1024
