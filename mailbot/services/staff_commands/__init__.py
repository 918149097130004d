"""Every staff command as a small function with one signature, in one table keyed by the command names.

A handler is ``(turn, command) -> None``: it reads and changes ``turn.case`` in ``turn.session``, adds
letters and lines for the confirmation to ``turn.reply``, and raises ``Refusal`` when the command cannot be
carried out on this case as it stands (the whole reply is then rolled back). A new command is a row in
``domain.commands.COMMANDS`` (its grammar) and one function registered here; tests/unit/test_commands.py
checks that the two tables name the same commands.
"""

from __future__ import annotations

from mailbot.services.staff_commands import case, mentors, restrictions
from mailbot.services.staff_commands.turn import Handler, Refusal, Reply, Turn

HANDLERS: dict[str, Handler] = {**case.HANDLERS, **mentors.HANDLERS, **restrictions.HANDLERS}

__all__ = ["HANDLERS", "Handler", "Refusal", "Reply", "Turn"]
