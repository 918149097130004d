"""Staff replies in a case thread: relayed to the complainant, kept as notes, or obeyed as commands.

A reply is all-or-nothing: if any command in it is malformed or not allowed for the sender's role,
nothing changes, nothing is relayed, and the sender is told why and how to write it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from sqlmodel import Session

from mailbot.domain.commands import COMMAND_REFERENCE, Command, check_permission, parse_commands
from mailbot.domain.directory import DirectorySource
from mailbot.domain.mail import InboundMail
from mailbot.domain.procedures import Signpost
from mailbot.domain.quotes import extract_new_text, without_text_of
from mailbot.services.correspondence import Correspondence, QueuedLetter
from mailbot.services.lifecycle import CaseLifecycle
from mailbot.services.staff_commands import HANDLERS, Refusal, Reply, Turn
from mailbot.services.staff_commands.mentors import MENTOR_COMMANDS
from mailbot.store import repo
from mailbot.store.db import to_db
from mailbot.store.models import Case

# Commands whose letter to the complainant carries the staff member's words, so the words are not relayed twice.
WORDS_GO_IN_A_LETTER = frozenset({"resolve", "stay", "not-a-complaint"}) | MENTOR_COMMANDS
# Commands that need the staff member's words under them.
NEEDS_TEXT = {"full": "your full response", "resolve": "the outcome letter's text", "stay": "your explanation"}


def is_our_letter(payload: bytes) -> bool:
    """An attached message that is one of the bot's own letters (a notification forwarded as an attachment)."""
    head = payload[:65536].lower()
    return b"\nx-mailbot-letter:" in head or head.startswith(b"x-mailbot-letter:")


class StaffDesk:
    def __init__(self, lifecycle: CaseLifecycle, letters: Correspondence, directory: DirectorySource,
                 signposts: tuple[Signpost, ...] = ()) -> None:
        self.lifecycle = lifecycle
        self.letters = letters
        self.directory = directory
        # Where the procedures send people whose matter is not a complaint (#redirect's letter).
        self.signposts = signposts

    # ---- entry point -------------------------------------------------------------------------

    def handle(self, session: Session, case: Case, mail: InboundMail, roles: frozenset[str],
               now: datetime) -> list[QueuedLetter]:
        # Only the staff member's own words: whatever their client did to the quote, no line of a
        # staff-only letter (the notification they answer above all) goes on to the complainant.
        text = without_text_of(extract_new_text(mail.text, mail.html), self.letters.staff_only_texts(session, case))
        parsed = parse_commands(text)
        staff = mail.from_addr
        if not parsed.commands and not parsed.errors and not parsed.body.strip():
            return self._nothing_new(session, case, mail, staff, now)
        problems = [f"{e.line}\n  {e.message}" for e in parsed.errors]
        for command in parsed.commands:
            refusal = check_permission(command, roles)
            if refusal:
                problems.append(f"{command.line}\n  {refusal}")
            elif command.name in NEEDS_TEXT and not parsed.body.strip():
                problems.append(f"{command.line}\n  #{command.name} needs {NEEDS_TEXT[command.name]} below the "
                                f"command lines.")
            elif command.name in NEEDS_TEXT and any(c.name == "note" for c in parsed.commands):
                problems.append(f"{command.line}\n  #{command.name} sends your words to the complainant, so it "
                                f"cannot go with #note.")
        if not problems:
            savepoint = session.begin_nested()
            try:
                reply = self._carry_out(session, case, mail, parsed.commands, parsed.body, staff, now)
            except Refusal as exc:
                savepoint.rollback()
                problems.append(str(exc))
            else:
                savepoint.commit()
                if parsed.commands:
                    return reply.letters + self._confirm(session, case, staff, reply.done, now)
                return reply.letters
        repo.add_event(session, case, now, "command_refused", actor=staff, problems=problems)
        return self._confirm(session, case, staff, [], now, problems=problems)

    def _carry_out(self, session: Session, case: Case, mail: InboundMail, commands: tuple[Command, ...], body: str,
                   staff: str, now: datetime) -> Reply:
        reply = Reply()
        names = {c.name for c in commands}
        if "note" in names:
            repo.add_event(session, case, now, "internal_note", actor=staff, text=body[:4000])
            reply.done.append("Kept your reply as an internal note; nothing was sent to the complainant.")
        elif body.strip() and not names & WORDS_GO_IN_A_LETTER:
            reply.add(self.relay(session, case, mail, body, staff, now))
            reply.done.append(f"Sent your reply to {case.complainant}.")
            self.lifecycle.meet(session, case, ("first_response",), now)
            if "full" in names:
                self.lifecycle.meet(session, case, ("full_response",), now)
        turn = Turn(self, session, case, staff, now, body, mail, reply)
        for command in commands:
            HANDLERS[command.name](turn, command)
            repo.add_event(session, case, now, "command", actor=staff, command=command.name,
                           args={k: str(v) for k, v in asdict(command.args).items()})
        for write in reply.after:
            reply.add(write())
        case.updated_at = to_db(now)
        return reply

    # ---- letters -----------------------------------------------------------------------------

    def relay(self, session: Session, case: Case, mail: InboundMail, body: str, staff: str,
              now: datetime) -> QueuedLetter | None:
        name = self.letters.staff_name(staff)
        return self.letters.complainant_letter(
            session, case, "staff-reply", now, from_name=f"{name}, {self.letters.sender.org_name}",
            **self.letters.staff_words(body, staff),
            attachments=[(a.filename, a.content_type, a.payload) for a in mail.attachments
                         if not is_our_letter(a.payload)],
        )

    def _confirm(self, session: Session, case: Case, staff: str, done: list[str], now: datetime,
                 problems: list[str] | None = None, nothing_new: bool = False) -> list[QueuedLetter]:
        letter = self.letters.staff_letter(session, case, "command-result", now, to=[staff], done=done,
                                           problems=problems or [], command_reference=COMMAND_REFERENCE,
                                           nothing_new=nothing_new)
        return [letter] if letter else []

    def _nothing_new(self, session: Session, case: Case, mail: InboundMail, staff: str,
                     now: datetime) -> list[QueuedLetter]:
        """A reply with no words of its own: nothing goes to the complainant, and the sender hears why."""
        reason = "your reply had no text of its own above the quoted message"
        if mail.attachments:
            reason += f", so its {len(mail.attachments)} attachment(s) were not sent either"
        repo.add_event(session, case, now, "staff_reply_not_relayed", actor=staff, message_id=mail.message_id,
                       reason=reason)
        return self._confirm(session, case, staff, [], now, problems=[reason[0].upper() + reason[1:] + "."],
                             nothing_new=True)
