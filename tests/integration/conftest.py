"""The bot, wired to a fresh Dovecot and SMTP sink for each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.bot import Bot, new_bot
from tests.servers import DovecotServer, SmtpSink


@pytest.fixture
def bot(tmp_path: Path, dovecot: DovecotServer, smtp_sink: SmtpSink) -> Bot:
    return new_bot(tmp_path / "bot", dovecot, smtp_sink)
