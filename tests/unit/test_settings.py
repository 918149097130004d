"""The settings as a deployer meets them."""

from __future__ import annotations

from pathlib import Path

from mailbot.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting() -> None:
    """.env.example is how a deployer learns the variables: none may be missing from it."""
    text = (REPO / ".env.example").read_text()
    missing = [name for name in Settings.model_fields if f"MAILBOT_{name.upper()}=" not in text]
    assert missing == []
