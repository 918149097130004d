"""Scheduled work, table-driven: which reminders and overdue alerts a case's deadlines bring, and when.

One complaint arrives on Monday 16 November 2026 at 10:00 under the external procedure (first response
due at 17:30 on Tuesday, full response at 17:30 on Wednesday, resolution at 17:30 on Friday 4 December).
The jobs run at each moment of the timeline in turn; each row says what that run queued. Running again
at the same moment queues nothing: a reminder or alert goes once. (The digest has its own tests.)
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import pytest

from tests.services.conftest import World, mail

PRIYA = "priya.shah@1mm.org.uk"  # the case owner (complaints team)
SAM = "sam.carter@1mm.org.uk"  # her manager, copied when a deadline is missed
TOM = "tom.okafor@1mm.org.uk"  # a coordinator: the owner of his mentees' complaints


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=timezone.utc)  # GMT: London time in November


TIMELINE = [
    (at(16, 17, 29), []),
    (at(16, 17, 30), [("deadline-reminder", PRIYA, "first response")]),
    (at(16, 17, 30), []),
    (at(17, 17, 29), []),
    (at(17, 17, 30), [("deadline-overdue", f"{PRIYA},{SAM}", "first response"),
                      ("deadline-reminder", PRIYA, "full response")]),
    (at(18, 17, 30), [("deadline-overdue", f"{PRIYA},{SAM}", "full response")]),
    (at(18, 23, 0), []),
    (at(2, 17, 30, month=12), []),
    (at(3, 17, 30, month=12), [("deadline-reminder", PRIYA, "resolution")]),
    (at(4, 17, 30, month=12), [("deadline-overdue", f"{PRIYA},{SAM}", "resolution")]),
    (at(7, 9, 0, month=12), []),
]


def test_deadline_timeline(world: World) -> None:
    world.receive(mail())
    world.take_letters()
    seen = []
    for when, expected in TIMELINE:
        world.app.fixed_now = when
        world.app.jobs.run_due(when)
        letters = [letter for letter in world.take_letters() if letter.kind != "digest"]
        seen.append((when, [(letter.kind, letter.to) for letter in letters]))
        assert [(kind, to) for kind, to, _ in expected] == seen[-1][1], f"at {when}"
        for letter, (_, _, deadline) in zip(letters, expected):
            assert deadline in letter.subject


def test_a_met_deadline_is_not_chased(world: World) -> None:
    ref = world.receive(mail()).ref
    assert ref is not None
    world.staff_reply(ref, "#full\nHere is our full response: the session moves to Thursday.")
    world.take_letters()
    for when in (at(16, 17, 30), at(17, 17, 30), at(18, 17, 30)):
        world.app.fixed_now = when
        world.app.jobs.run_due(when)
    assert [letter.kind for letter in world.take_letters() if letter.kind != "digest"] == []


@pytest.mark.parametrize("written_before_0009", [False, True])
def test_a_deadline_announced_by_its_notification_is_not_read_again_at_every_pass(world: World,
                                                                                  written_before_0009: bool) -> None:
    # Monday at 18:00: the first response is due on Tuesday at 17:30, so its reminder time (Monday 17:30) has
    # passed; the staff notification was its reminder. The deadline passes must not read it every minute: it is
    # recorded as reminded when it is set, and a deadline set by an older version is recorded at the first pass.
    from sqlalchemy import text

    from mailbot.domain.procedures import OPEN_STATUSES
    from mailbot.store import repo
    from mailbot.store.db import session as new_session

    world.app.fixed_now = at(16, 18, 0)
    world.receive(mail())
    world.take_letters()
    cal = world.app.calendar

    def chased(when: datetime) -> list[str]:
        with new_session(world.app.engine) as s:
            return [d.name for d, _ in repo.deadlines_to_chase(s, OPEN_STATUSES, due_before=when,
                                                               remind_until=cal.reminders_due_until(when))]

    if written_before_0009:
        with world.app.engine.begin() as conn:
            conn.execute(text("UPDATE deadline SET reminded_at = NULL"))
        assert chased(at(16, 18, 1)) == ["first_response"]
    else:
        assert chased(at(16, 18, 1)) == []
    for minute in (1, 2):
        world.app.fixed_now = at(16, 18, minute)
        world.app.jobs.run_due(at(16, 18, minute))
    assert [letter for letter in world.take_letters() if letter.kind != "digest"] == []
    assert chased(at(16, 18, 3)) == []
    # It is still alerted when it is missed.
    world.app.fixed_now = at(17, 17, 30)
    world.app.jobs.run_due(at(17, 17, 30))
    assert ("deadline-overdue", f"{PRIYA},{SAM}") in [
        (letter.kind, letter.to) for letter in world.take_letters()]


def tom_leaves(world: World) -> None:
    """Tom Okafor's entry goes from staff.toml (the directory is re-read when the file changes)."""
    staff = world.app.settings.data_dir / "staff.toml"
    text = staff.read_text()
    start = text.index('name = "Tom Okafor"')
    staff.write_text(text[:text.rindex("[[staff]]", 0, start)] + text[text.index("[[staff]]", start):])
    os.utime(staff, ns=(time.time_ns(), time.time_ns() + 10**9))


def test_the_jobs_chase_a_new_owner_when_the_old_one_has_left(world: World) -> None:
    world.receive(mail(frm="Amira Khan <amira.khan@example.org>"))  # her coordinator, Tom, owns the case
    world.take_letters()
    tom_leaves(world)
    when = at(17, 17, 30)
    world.app.fixed_now = when
    world.app.jobs.run_due(when)
    letters = [letter for letter in world.take_letters() if letter.kind != "digest"]
    assert letters and letters[0].kind == "staff-notification" and letters[0].to == PRIYA
    assert all("tom.okafor" not in letter.to for letter in letters)
    assert {letter.kind for letter in letters[1:]} <= {"deadline-reminder", "deadline-overdue"} and letters[1:]


def test_an_owner_who_left_is_replaced_even_when_no_deadline_is_near(world: World) -> None:
    """The chase reads only deadlines that can need a letter now; a case whose owner left is still handed on."""
    world.receive(mail(frm="Amira Khan <amira.khan@example.org>"))
    world.take_letters()
    tom_leaves(world)
    when = at(16, 11, 0)  # an hour after it arrived: every deadline is days away
    world.app.fixed_now = when
    world.app.jobs.run_due(when)
    assert [(letter.kind, letter.to) for letter in world.take_letters() if letter.kind != "digest"] == [
        ("staff-notification", PRIYA)]


def test_the_chase_reads_a_page_at_a_time_and_misses_nothing(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from mailbot.store import repo

    monkeypatch.setattr(repo, "CHASE_PAGE", 3)
    for n in range(8):
        world.receive(mail(frm=f"person{n}@example.org"))
    world.take_letters()
    when = at(17, 17, 30)
    world.app.fixed_now = when
    world.app.jobs.run_due(when)
    kinds = [letter.kind for letter in world.take_letters() if letter.kind != "digest"]
    assert kinds.count("deadline-overdue") == 8 and kinds.count("deadline-reminder") == 8
    world.app.jobs.run_due(when)
    assert [letter for letter in world.take_letters() if letter.kind != "digest"] == []


def test_retention_removes_personal_data_six_years_after_closing_unless_held(world: World) -> None:
    from sqlmodel import select

    from mailbot.store.db import session as new_session
    from mailbot.store.models import MailMessage

    kept = world.receive(mail(frm="Held Person <held@example.org>", subject="Held")).ref
    gone = world.receive(mail(frm="Jane Doe <jane@example.org>", subject="Jane's complaint")).ref
    assert kept and gone
    for ref in (kept, gone):
        world.staff_reply(ref, "#resolve upheld\nWe are sorry.")
    world.staff_reply(kept, "#hold a legal claim is expected")
    closed = world.case(gone)
    world.advance(days=6 * 365)
    world.app.jobs.run_due(world.now)
    assert world.case(gone).complainant == closed.complainant  # not quite six years yet
    world.advance(days=3)
    world.app.jobs.run_due(world.now)
    after = world.case(gone)
    assert after.complainant.endswith("@erased.invalid") and after.subject == "(removed)" and after.anonymised_at
    for key in ("ref", "status", "procedure", "category", "outcome", "opened_at", "closed_at", "stage", "channel"):
        assert getattr(after, key) == getattr(closed, key), key
    with new_session(world.app.engine) as s:
        raws = s.exec(select(MailMessage.raw).where(MailMessage.case_id == after.id)).all()
    assert raws and all(raw == b"" for raw in raws)
    assert "retention_anonymised" in world.events(gone)
    # Gone from the database file and its write-ahead log too, not just from the rows.
    files = b"".join(p.read_bytes() for p in world.app.settings.data_dir.glob("mailbot.db*"))
    assert b"jane@example.org" not in files and b"Jane's complaint" not in files
    assert b"held@example.org" in files
    assert world.case(kept).anonymised_at is None and world.case(kept).complainant == "held@example.org"
    world.staff_reply(kept, "#release")
    world.advance(minutes=1)
    world.app.jobs.run_due(world.now)
    assert world.case(kept).anonymised_at is not None



def write_staff(world: World, text: str) -> None:
    staff = world.app.settings.data_dir / "staff.toml"
    staff.write_text(text)
    os.utime(staff, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new stamp even on a coarse clock


def entries(text: str, *names: str) -> str:
    """staff.toml with only these people's entries."""
    blocks = text.split("[[staff]]")
    return "".join("[[staff]]" + block for block in blocks[1:] if any(f'name = "{n}"' in block for n in names))


def test_a_case_nobody_can_take_is_recorded_once_and_handed_on_when_someone_can(world: World) -> None:
    ref = world.receive(mail(frm="Amira Khan <amira.khan@example.org>")).ref  # Tom, her coordinator, owns it
    assert ref is not None
    world.take_letters()
    full = (world.app.settings.data_dir / "staff.toml").read_text()
    # staff.toml cut down to someone who takes no cases: Tom has gone and nobody can take his.
    write_staff(world, entries(full, "Jo Mensah"))
    for minute in range(3):  # the daemon's pass, minute after minute
        world.app.fixed_now = at(16, 11, minute)
        world.app.jobs.run_due(at(16, 11, minute))
    assert world.events(ref).count("handover_impossible") == 1
    assert world.case(ref).assignee == TOM
    # Her follow-ups meanwhile try again too, and are passed on to staff, but add nothing to the trail's record.
    for n in range(2):
        world.receive(mail(frm="Amira Khan <amira.khan@example.org>", subject=f"Re: [{ref}] My complaint",
                           body=f"Any news? ({n})"))
    assert world.events(ref).count("message_received") == 2
    assert world.events(ref).count("handover_impossible") == 1
    world.take_letters()
    world.app.fixed_now = at(16, 11, 4)
    world.app.jobs.run_due(at(16, 11, 4))
    assert world.events(ref).count("handover_impossible") == 1
    assert [letter for letter in world.take_letters() if letter.kind != "digest"] == []
    # The complaints team is back: the next pass hands the case on.
    write_staff(world, entries(full, "Jo Mensah", "Priya Shah"))
    world.app.fixed_now = at(16, 11, 5)
    world.app.jobs.run_due(at(16, 11, 5))
    assert world.case(ref).assignee == PRIYA
    assert world.events(ref).count("handed_over") == 1
    assert [(letter.kind, letter.to) for letter in world.take_letters() if letter.kind != "digest"] == [
        ("staff-notification", PRIYA)]
    # Stuck again later (its new owner gone too): recorded again, once.
    write_staff(world, entries(full, "Jo Mensah"))
    for minute in (6, 7):
        world.app.fixed_now = at(16, 11, minute)
        world.app.jobs.run_due(at(16, 11, minute))
    assert world.events(ref).count("handover_impossible") == 2


def test_the_look_before_the_work_never_misses_what_the_work_would_do(world: World) -> None:
    # Each pass first asks the database, without the ORM, whether any job has something due (store.due_reads), and
    # builds the work only then. Hour by hour through three weeks of two complaints (one arriving after the day's
    # reminders, whose first deadline its notification announced), whenever the look finds nothing, the work run
    # anyway must queue no letter and change no deadline; whenever it finds something, the pass runs as usual.
    from sqlalchemy import text

    from mailbot.domain.procedures import OPEN_STATUSES
    from mailbot.store import due_reads
    from mailbot.store.db import reading

    world.app.fixed_now = at(16, 18, 0)
    world.receive(mail(frm="Late Sender <late@example.org>", subject="Sent in the evening"))
    with world.app.engine.begin() as conn:  # as an older version left it: the announced deadline not yet recorded
        conn.execute(text("UPDATE deadline SET reminded_at = NULL"))
    staff = frozenset(member.email for member in world.app.directory.get().staff)

    def deadlines() -> list[tuple[object, ...]]:
        with reading(world.app.engine) as conn:
            return [tuple(row) for row in conn.execute(text(
                "SELECT id, reminded_at, overdue_alerted_at, met_at, superseded FROM deadline ORDER BY id"))]

    found = []
    when = at(16, 18, 30)
    while when < at(9, 9, 0, month=12):
        world.app.fixed_now = when
        if when == at(17, 10, 0):
            world.receive(mail())  # the second complaint, on Tuesday morning
        with reading(world.app.engine) as conn:
            due = due_reads.work_due(conn, when, world.app.calendar, OPEN_STATUSES, staff, 6)
        if due is None:
            before = deadlines()
            assert world.app.scheduled_work.run(when) == 0, when
            assert deadlines() == before, when
        else:
            found.append((when, due))
            world.app.jobs.run_due(when)
        when = datetime.fromtimestamp(when.timestamp() + 3600, tz=timezone.utc)
    assert world.take_letters() != []
    # The look found each thing the two timelines hold, and nothing else: the announced deadline to record at the
    # first pass, then the moments of TIMELINE (the evening complaint's clock starts with the next working day, so
    # both complaints' reminders and alerts fall at the same moments).
    assert found[0] == (at(16, 18, 30), "deadlines")
    assert [moment for moment, _ in found] == [at(16, 18, 30), at(17, 17, 30), at(18, 17, 30),
                                               at(3, 17, 30, month=12), at(4, 17, 30, month=12)]
