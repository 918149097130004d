"""The Alembic migrations build exactly the schema the models describe, so an upgrade never loses a column."""

from __future__ import annotations

from pathlib import Path

from alembic import command

from mailbot.store.db import alembic_config, make_engine, upgrade


def test_migrations_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    engine = make_engine(url)
    upgrade(engine)
    upgrade(engine)  # idempotent: a second start changes nothing
    engine.dispose()
    # Raises if autogenerate would still find something to add or change.
    command.check(alembic_config(url))
