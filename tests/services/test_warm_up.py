"""The daemon's warm-up (runtime.warm_up): what a new complaint needs is ready before the first one arrives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mailbot.holiday_store import FILE_NAME as HOLIDAYS_FILE
from mailbot.letters import LetterRenderer
from mailbot.runtime import warm_up
from tests.services.conftest import REPO, World, mail


def _compiled(renderer: LetterRenderer) -> set[str]:
    if "env" not in renderer.__dict__:
        return set()
    return {template.name for template in renderer.env.cache.values()}  # type: ignore[union-attr]


def test_the_letters_a_new_complaint_writes_are_compiled_before_the_first_one(world: World) -> None:
    renderer = world.app.renderer
    assert _compiled(renderer) == set()  # nothing compiled by building the bot (an idle run --once stays light)
    warm_up(world.app)
    opening = {p.letters["open"] for p in world.app.procedures.values()}
    assert opening and "acknowledgement" in opening
    expected = {f"letters/{name}.{ext}" for name in opening | {"staff-notification"} for ext in ("txt", "html")}
    compiled = _compiled(renderer)
    assert expected <= compiled, expected - compiled
    # and the complaint that follows writes the same letters as ever, from the warmed templates
    outcome = world.receive(mail(body="My mentor did not turn up to three sessions."))
    kinds = sorted(letter.kind for letter in world.take_letters())
    assert outcome.ref and kinds == ["acknowledgement", "staff-notification"]
    assert _compiled(renderer) == compiled


def test_a_template_that_does_not_compile_is_left_for_its_letter_to_report(tmp_path: Path) -> None:
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    broken = tmp_path / "templates" / "letters" / "staff-notification.html"
    broken.write_text("{% if %}" + broken.read_text())
    renderer = LetterRenderer(tmp_path / "templates")
    renderer.compile(["staff-notification", "acknowledgement", "no-such-letter"])  # no exception
    compiled = _compiled(renderer)
    assert {"letters/acknowledgement.txt", "letters/acknowledgement.html", "letters/staff-notification.txt"} <= compiled
    assert "letters/staff-notification.html" not in compiled


def test_the_bank_holidays_the_first_deadlines_count_past_are_kept_before_the_first_complaint(world: World) -> None:
    kept = world.app.settings.data_dir / HOLIDAYS_FILE
    assert not kept.exists()  # building the bot asks nothing of the holidays package
    warm_up(world.app)
    year = world.now.year
    assert sorted(json.loads(kept.read_text())["years"]) == [str(year), str(year + 1)]
    stamp = kept.stat().st_mtime_ns
    world.receive(mail(body="My mentor did not turn up to three sessions."))
    assert kept.stat().st_mtime_ns == stamp  # the complaint's deadlines found every day they needed
