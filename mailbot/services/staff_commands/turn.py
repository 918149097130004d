"""One staff reply being carried out, as every staff command handler sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Callable

from sqlmodel import Session

from mailbot.domain.commands import Command
from mailbot.domain.mail import InboundMail
from mailbot.services.correspondence import QueuedLetter
from mailbot.store.models import Case

if TYPE_CHECKING:
    from mailbot.services.correspondence import Correspondence
    from mailbot.services.lifecycle import CaseLifecycle
    from mailbot.services.staffdesk import StaffDesk


class Refusal(Exception):
    """A command that cannot be carried out on this case as it stands; nothing is changed."""


@dataclass
class Reply:
    """What a staff reply did, for the confirmation and the audit trail."""

    done: list[str] = field(default_factory=list)
    letters: list[QueuedLetter] = field(default_factory=list)
    # Letters written after every command has run, so one reply's commands read as one decision
    # (e.g. "#restrict ..." followed by "#letters-only" gives one letter naming both).
    after: list[Callable[[], QueuedLetter | None]] = field(default_factory=list)

    def add(self, letter: QueuedLetter | None) -> None:
        if letter is not None:
            self.letters.append(letter)


@dataclass
class Turn:
    """Who is acting on which case, when, with what words, and the reply being built."""

    desk: StaffDesk
    session: Session
    case: Case
    staff: str  # the member of staff's address
    now: datetime
    body: str  # the reply's text below its command lines
    mail: InboundMail
    reply: Reply

    @property
    def lifecycle(self) -> CaseLifecycle:
        return self.desk.lifecycle

    @property
    def letters(self) -> Correspondence:
        return self.desk.letters


# Every staff command is one of these, registered by name in staff_commands.HANDLERS.
Handler = Callable[[Turn, Command], None]
