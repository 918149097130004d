"""Shared pytest fixtures: real mail servers (see tests/servers.py) and the shared/ folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.servers import (
    ClamdServer,
    DovecotServer,
    PostgresServer,
    SmtpSink,
    clamd_binary,
    dovecot_binary,
    postgres_bindir,
    throwaway_dovecot,
)


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    """A fresh Dovecot per test: start + stop take ~0.05 s, so isolation costs almost nothing.

    A missing dovecot fails the test instead of skipping it, because a skipped check is a hidden defect.
    """
    if dovecot_binary() is None:
        pytest.fail("dovecot is not installed: run scripts/setup.sh (it installs dovecot-imapd)", pytrace=False)
    with throwaway_dovecot() as server:
        yield server


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    """An SMTP sink in a child process (start ~0.1 s), storing what it accepts under tmp_path."""
    with SmtpSink(tmp_path / "sink") as sink:
        yield sink


@pytest.fixture
def shared_dir() -> Path:
    """The project's shared/ folder, which sits beside the checkout (procedures, notes, corpus)."""
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"no shared folder at {path}")
    return path


@pytest.fixture
def clamd(tmp_path: Path) -> Iterator[ClamdServer]:
    """A real clamd on a Unix socket, with a signature database the test writes (the EICAR test file's)."""
    if clamd_binary() is None:
        pytest.fail("clamd is not installed: run scripts/setup.sh (it installs clamav-daemon)", pytrace=False)
    with ClamdServer(tmp_path / "clamd") as server:
        yield server


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL (initdb ~0.6 s): the production database option, tested for real."""
    if postgres_bindir() is None:
        pytest.fail("PostgreSQL is not installed: run scripts/setup.sh (it installs postgresql)", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="mailbot-pg-"))
    server = PostgresServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_engine(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine on an empty database at the newest schema: a SQLite file, then a throwaway PostgreSQL, for the
    reads that must come back the same from both."""
    from mailbot.store.db import make_engine, upgrade

    url = (request.getfixturevalue("postgres").url if request.param == "postgresql"
           else f"sqlite:///{tmp_path / 'store.db'}")
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()
