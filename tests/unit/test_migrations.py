"""The Alembic migrations build exactly the schema the models describe, so an upgrade never loses a column."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from mailbot.store.db import (
    SCHEMA_HEAD,
    alembic_config,
    make_engine,
    schema_version,
    upgrade,
)


def test_migrations_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    engine = make_engine(url)
    upgrade(engine)
    upgrade(engine)  # idempotent: a second start changes nothing
    engine.dispose()
    # Raises if autogenerate would still find something to add or change.
    command.check(alembic_config(url))


def test_the_quick_start_check_knows_the_newest_migration(tmp_path: Path) -> None:
    # upgrade() skips Alembic when the database is at SCHEMA_HEAD: a new migration must move it.
    url = f"sqlite:///{tmp_path / 'head.db'}"
    assert ScriptDirectory.from_config(alembic_config(url)).get_current_head() == SCHEMA_HEAD
    engine = make_engine(url)
    assert schema_version(engine) is None
    upgrade(engine)
    assert schema_version(engine) == SCHEMA_HEAD
    engine.dispose()
