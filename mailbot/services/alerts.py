"""Mail to the administrator (MAILBOT_ADMIN_EMAIL) when the bot cannot do its job, and when it can again.

One letter per condition when it starts (the mailbox or the SMTP server refused sign-in, the mailbox has
not been read for 15 minutes, letters failed for good), however long it lasts and however often it is
looked at; one "recovered" letter when it clears. Which alerts stand is kept in the audit trail
(``admin_alert`` events), so a restart neither repeats nor forgets one. Each is logged at ERROR too: an
alert about the SMTP server may be unable to leave by it.
"""

from __future__ import annotations

import logging
import socket
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Callable

from sqlalchemy.engine import Connection, Engine

from mailbot.domain.health import alert_conditions
from mailbot.store import health_reads
from mailbot.store.db import reading
from mailbot.store.db import session as new_session

if TYPE_CHECKING:
    from sqlmodel import Session

    from mailbot.services.correspondence import Correspondence

log = logging.getLogger(__name__)
TEMPLATE = "admin-alert"

# What to do first, by the condition's kind.
ADVICE = {
    "sign-in": "Run `mailbot auth test` on the bot's host: it says which server refused and why. For Microsoft 365 "
               "or Google, check the app's permission and its secret or key; for a password, that it was not changed.",
    "smtp-sign-in": "Run `mailbot auth test` on the bot's host. Letters wait in the outbox meanwhile and go out once "
                    "sign-in works again; none is lost.",
    "unread": "Check that the mail server is up and reachable from the bot's host, and that the bot is running "
              "(`mailbot status`).",
    "letters-failed": "Run `mailbot status`, and look at the failed letters' cases (`mailbot case REF`): the server's "
                      "answer is in each case's trail. The people they were for have not had them.",
}


class Alerts:
    def __init__(self, engine: Engine, letters: Callable[[], Correspondence], admin: str | None,
                 reads_a_mailbox: bool, clock: Callable[[], datetime]) -> None:
        """``letters`` builds the letters' service, the first time an alert is written."""
        self.engine = engine
        self.letters = letters
        self.admin = admin
        self.reads_a_mailbox = reads_a_mailbox
        self.clock = clock
        # Whether the last check left an alert standing (unknown until the first check), so that every
        # good read of the mailbox need not look.
        self._standing = True
        # The intake thread and the scheduler both check: one at a time, or both could raise the same alert.
        self._lock = threading.Lock()

    def check_if_standing(self) -> int:
        """After a good read: clear what has cleared, if anything was standing."""
        return self.check() if self._standing else 0

    def check(self, now: datetime | None = None) -> int:
        """Raise what has started and clear what has stopped; returns the letters queued."""
        if not self.admin:
            return 0
        now = now or self.clock()
        with self._lock:
            # A look first, on a reading connection: nearly always nothing has started or stopped, and then
            # nothing is written (and the writer's session, the ORM and the letters are not needed).
            with reading(self.engine) as conn:
                current, standing = self._conditions(conn, now)
            if current.keys() == standing.keys():
                self._standing = bool(current)
                return 0
            return self._raise_and_clear(now)

    def _conditions(self, conn: Connection, now: datetime) -> tuple[dict[str, str], dict[str, str]]:
        """(the conditions now, the alerts standing), each by condition, with its words."""
        return (alert_conditions(health_reads.facts(conn, now, self.reads_a_mailbox, running=True)),
                health_reads.raised_alerts(conn))

    def _raise_and_clear(self, now: datetime) -> int:
        queued = 0
        with new_session(self.engine) as session:
            # Looked at again in the writer's transaction: what it writes is decided on what is there now.
            current, standing = self._conditions(session.connection(), now)
            for condition, words in current.items():
                if condition not in standing:
                    log.error("alert: %s", words, extra={"event": "alert", "condition": condition})
                    queued += self._letter(session, condition, words, now, raised=True)
            for condition, words in standing.items():
                if condition not in current:
                    log.info("recovered: %s", words, extra={"event": "alert", "condition": condition})
                    queued += self._letter(session, condition, words, now, raised=False)
            session.commit()
        self._standing = bool(current)
        return queued

    def _letter(self, session: Session, condition: str, words: str, now: datetime, raised: bool) -> int:
        from mailbot.store import repo  # the ORM's module: only when an alert starts or stops

        assert self.admin
        repo.add_event(session, None, now, "admin_alert", condition=condition, raised=raised, words=words)
        letter = self.letters().queue(
            session, case=None, template=TEMPLATE, to=[self.admin], now=now, automatic=False,
            auto_submitted="auto-generated", reply_to=self.admin,
            context={"raised": raised, "words": words, "condition": condition, "host": socket.gethostname(),
                     "advice": ADVICE.get(condition.split(":", 1)[0], "")})
        return 1 if letter is not None else 0
