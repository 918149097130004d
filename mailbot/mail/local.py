"""The embedded default (local mode): an SMTP listener on loopback that drops mail into a local Maildir.

With no IMAP server configured, ``mailbot run`` takes complaints on 127.0.0.1:2525, keeps each one
in ``data/maildir`` before answering 250 (so nothing accepted is lost), and the same intake
pipeline then processes the Maildir's new messages.
"""

from __future__ import annotations

import logging
import mailbox
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from mailbot.services.mailbox import Arrival

log = logging.getLogger(__name__)


class _DropIntoMaildir:
    def __init__(self, box: mailbox.Maildir, on_arrival: Callable[[], None]) -> None:
        self.box = box
        self.on_arrival = on_arrival

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.box.add(data)
        self.on_arrival()
        return "250 OK: queued for the complaints bot"


class LocalListener:
    """aiosmtpd on loopback, writing into the inbound Maildir."""

    def __init__(self, maildir: Path, host: str, port: int, on_arrival: Callable[[], None]) -> None:
        # Imported here: only local mode listens, and aiosmtpd is a noticeable share of every start-up.
        from aiosmtpd.controller import Controller

        self.box = mailbox.Maildir(str(maildir), create=True)
        self.controller = Controller(_DropIntoMaildir(self.box, on_arrival), hostname=host, port=port,
                                     decode_data=False, data_size_limit=50 * 1024 * 1024)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def pending_files(maildir: Path) -> list[Path]:
    """Messages waiting in new/, oldest first; read one at a time so memory stays flat."""
    new = maildir / "new"
    if not new.is_dir():
        return []
    return sorted((p for p in new.iterdir() if p.is_file()), key=lambda p: (p.stat().st_mtime_ns, p.name))


def arrival_from_file(path: Path) -> Arrival:
    """The file's modification time is when the listener accepted it: the receipt time."""
    received = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    return Arrival(raw=path.read_bytes(), received_at=received)


def mark_processed(path: Path) -> None:
    """Move a processed message from new/ to cur/, as a mail client would after reading it."""
    target = path.parent.parent / "cur" / f"{path.name}:2,S"
    target.parent.mkdir(exist_ok=True)
    os.replace(path, target)
