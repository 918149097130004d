"""`run --once` with a backlog: a second process delivers the outbox while the first takes mail in.

Intake and delivery are each CPU-bound Python, so in one process (threads share the GIL) a backlog
is taken in first and delivered afterwards. A spawned process uses the second core instead: it
delivers each letter as soon as intake has committed it. It imports only what delivery needs.

The two processes share SQLite's one writer slot through a WriteGate, so a letter accepted by the
server is marked sent within one intake transaction (ingest.TRANSACTION_BUDGET), not whenever
SQLite's busy wait happens to find the database free.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from typing import Any, Callable

from mailbot.services.delivery import Deliverer, DeliveryReport, Transport
from mailbot.settings import Settings
from mailbot.store.db import ProcessWriteGate, WriteGate, make_engine

log = logging.getLogger(__name__)

# Between passes, while intake may still be committing letters (seconds).
IDLE_POLL = 0.02


def transport_factory(settings: Settings) -> Callable[[], Transport]:
    """SMTP when a host is set, else the local Maildir of sent letters."""
    if settings.smtp_host:
        from mailbot.mail.smtp import SmtpTransport

        host, port, security = settings.smtp_host, settings.smtp_port_effective, settings.smtp_security
        user, password = settings.smtp_user, settings.smtp_password
        return lambda: SmtpTransport(host, port, security, user, password)
    from mailbot.mail.maildir import MaildirTransport

    sent = settings.data_dir / "sent"
    return lambda: MaildirTransport(sent)


class DeliveryProcess:
    """The delivery process, seen from intake: start it, share its gate, then finish it for its report."""

    def __init__(self, settings: Settings, now: datetime | None) -> None:
        context = multiprocessing.get_context("spawn")  # no forked copy of intake's connections and threads
        self.gate: WriteGate = ProcessWriteGate(context)
        self._finish = context.Event()
        self._report, child_end = context.Pipe(duplex=False)
        self._process = context.Process(target=deliver_until_finished, name="mailbot-delivery", daemon=True,
                                        args=(settings, now, self.gate, self._finish, child_end))
        self._process.start()
        child_end.close()

    def finish(self) -> DeliveryReport | None:
        """Tell it intake is done; it makes one last pass and exits. None if it failed (the caller delivers)."""
        self._finish.set()
        report: DeliveryReport | None = None
        try:
            # Read before joining: a child blocked writing a large report to the pipe would never exit.
            while self._process.is_alive() and not self._report.poll(0.05):
                pass
            if self._report.poll():
                report = self._report.recv()
        except (EOFError, OSError):
            report = None
        self._process.join()
        if self._process.exitcode != 0:
            log.warning("the delivery process exited with %s; delivering in this one", self._process.exitcode)
            return None
        return report


def deliver_until_finished(settings: Settings, now: datetime | None, gate: WriteGate, finish: Any,
                           report_to: Connection) -> None:
    """The delivery process: pass after pass until told intake is done, then one more, then report."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = make_engine(settings.database_url_effective)
    deliverer = Deliverer(engine, transport_factory(settings), lambda: now or datetime.now(timezone.utc))
    deliverer.gate = gate
    try:
        report = asyncio.run(_passes(deliverer, finish))
    finally:
        engine.dispose()
    report_to.send(report)
    report_to.close()


async def _passes(deliverer: Deliverer, finish: Any) -> DeliveryReport:
    total = DeliveryReport()
    parent = multiprocessing.parent_process()
    while True:
        # Read the flag before the pass: a pass that starts after intake's last commit sees every letter.
        last = finish.is_set() or (parent is not None and not parent.is_alive())
        total.add(await deliverer.deliver_due())
        if last:
            return total
        await asyncio.sleep(IDLE_POLL)
