"""The audit chain's rules (domain.audit): what verify says of a chain as recorded, and of each way of tampering."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from mailbot.domain import audit
from mailbot.domain.audit import Row

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def chain(contents: list[tuple[str, str]], redact: dict[int, int] = {}) -> list[Row]:
    """Events as the store records them: (type, detail) each, linked in order; ``redact`` {place: redactor place}."""
    rows, previous = [], audit.GENESIS
    for seq, (type_, detail) in enumerate(contents, start=1):
        salt = f"{seq:032x}"
        at = T0 + timedelta(minutes=seq)
        content = audit.content_hash(salt, 7, at, type_, "priya@1mm.org.uk", detail)
        previous = audit.link(previous, seq, content)
        rows.append(Row(seq + 100, seq, 7, at, type_, "priya@1mm.org.uk", detail, salt, content, previous, None))
    for place, by in redact.items():
        rows[place - 1] = replace(rows[place - 1], detail='{"redacted": true}', salt=None, redacted_by=by + 100)
    return rows


EVENTS = [("received", '{"from": "jane@example.com"}'), ("internal_note", '{"text": "call her back"}'),
          ("resolved", '{"outcome": "upheld"}'), ("person_erased", '{"events": 2, "reason": "asked"}'),
          ("digest_sent", "")]
GOOD = chain(EVENTS, redact={1: 4, 2: 4})


def head(rows: list[Row]) -> tuple[int, str]:
    return rows[-1].seq or 0, rows[-1].chain_hash or ""


def problems(rows: list[Row], recorded_head: tuple[int, str] | None = None, **kw: object) -> list[str]:
    verdict = audit.verify(rows, recorded_head if recorded_head is not None else head(rows), **kw)  # type: ignore[arg-type]
    return [f.line() for f in verdict.findings or []]


def test_a_chain_as_recorded_verifies_with_its_redactions_counted() -> None:
    verdict = audit.verify(GOOD, head(GOOD))
    assert verdict.ok and verdict.events == 5 and verdict.redacted == 2 and verdict.head_seq == 5


def test_the_hash_of_a_redacted_event_cannot_be_tested_against_a_guess() -> None:
    # The salt went with the words: without it, hashing the old contents gives nothing to compare.
    redacted = GOOD[0]
    assert redacted.salt is None
    for guess_salt in ("", "00" * 16):
        assert audit.content_hash(guess_salt, 7, redacted.at, "received", "priya@1mm.org.uk",
                                  '{"from": "jane@example.com"}') != redacted.content_hash


def _edit_detail(rows: list[Row]) -> list[Row]:
    rows = list(rows)
    rows[2] = replace(rows[2], detail='{"outcome": "not upheld"}')
    return rows


def _edit_time(rows: list[Row]) -> list[Row]:
    rows = list(rows)
    rows[2] = replace(rows[2], at=rows[2].at + timedelta(days=1))
    return rows


def _edit_and_rehash(rows: list[Row]) -> list[Row]:
    rows = list(rows)
    row = rows[2]
    content = audit.content_hash(row.salt or "", 7, row.at, row.type, row.actor, '{"outcome": "not upheld"}')
    rows[2] = replace(row, detail='{"outcome": "not upheld"}', content_hash=content)
    return rows


def _remove_middle(rows: list[Row]) -> list[Row]:
    return rows[:2] + rows[3:]


def _forge_redaction(rows: list[Row]) -> list[Row]:
    rows = list(rows)
    rows[2] = replace(rows[2], detail='{"outcome": "not upheld"}', salt=None, redacted_by=104)
    return rows


def _redacted_by_nothing(rows: list[Row]) -> list[Row]:
    rows = list(rows)
    rows[4] = replace(rows[4], salt=None, redacted_by=999)
    return rows


def _drop_salt(rows: list[Row]) -> list[Row]:
    rows = list(rows)
    rows[2] = replace(rows[2], salt=None)
    return rows


@pytest.mark.parametrize("tamper, event_id, words", [
    (_edit_detail, 103, "its contents were changed after it was recorded (a resolved event of 2026-03-02)"),
    (_edit_time, 103, "its contents were changed"),
    (_edit_and_rehash, 103, "its chain hash does not follow from the event before it"),
    (_remove_middle, 104, "the chain jumps here: place 3 removed"),
    (_forge_redaction, 104, "it redacted 2 event(s), but 3 are marked as redacted by it"),
    (_redacted_by_nothing, 105, "it is marked redacted, but by no erasure or retention recorded after it"),
    (_drop_salt, 103, "its contents have no hash to check them by"),
])
def test_each_way_of_tampering_is_named(tamper, event_id: int, words: str) -> None:  # type: ignore[no-untyped-def]
    found = problems(tamper(GOOD), recorded_head=head(GOOD))
    assert any(line.startswith(f"event {event_id} ") and words in line for line in found), found


def test_removing_the_last_events_is_caught_by_the_recorded_head() -> None:
    found = problems(GOOD[:4], recorded_head=head(GOOD))
    assert found == ["the trail (place 5 in the chain): the recorded head is place 5, but the chain ends at place 4 "
                     "with a different hash: its last events were removed or rewritten"]


def test_a_whole_chain_rewritten_verifies_alone_but_not_against_a_head_kept_elsewhere() -> None:
    edited = list(EVENTS)
    edited[2] = ("resolved", '{"outcome": "not upheld"}')
    rewritten = chain(edited, redact={1: 4, 2: 4})
    assert problems(rewritten) == []  # consistent with itself and its own head row
    kept = {3: GOOD[2].chain_hash or ""}
    assert problems(rewritten, expected=kept) == [
        f"event 103 (place 3 in the chain): the chain here is not the one recorded earlier ({kept[3][:16]}...): "
        f"it was rewritten"]
    assert problems(GOOD, expected=kept) == []


def test_a_head_kept_elsewhere_past_the_end_means_events_were_removed() -> None:
    found = problems(GOOD[:4], recorded_head=head(GOOD[:4]), expected={5: GOOD[4].chain_hash or ""})
    assert found == ["the trail (place 5 in the chain): a head recorded earlier is no longer in the chain: "
                     "events were removed"]


def test_an_event_written_outside_the_bot_has_no_place() -> None:
    assert problems(GOOD, unsealed=[200]) == ["event 200: it has no place in the chain: it was written outside "
                                              "the bot"]


def test_the_time_is_hashed_the_same_whatever_form_the_database_returns() -> None:
    naive = T0.replace(tzinfo=None)
    bst = T0.astimezone(timezone(timedelta(hours=1)))
    assert audit.stamp(T0) == audit.stamp(naive) == audit.stamp(bst) == "2026-03-02T09:00:00.000000Z"


def test_an_empty_trail_verifies_at_the_genesis_head() -> None:
    verdict = audit.verify([], (0, audit.GENESIS))
    assert verdict.ok and verdict.head_seq == 0 and json.dumps(verdict.head_hash) == json.dumps("0" * 64)


@pytest.mark.parametrize(("contents", "recorded"), [
    (("00112233445566778899aabbccddeeff", 7, datetime(2026, 3, 2, 9, 15), "received", "priya@1mm.org.uk",
      '{"from": "jane@example.com"}'), "d44325d2cd0d616f59a5efde76a3562d8534af6849d8688b9c01915d49ac8e01"),
    (("ffeeddccbbaa99887766554433221100", None, datetime(2026, 12, 7, 14, 3, 2, 123456, timezone(timedelta(hours=1))),
      "note", "Zoë Ó'Brien <zoe@1mm.org.uk>", '{"text": "caf\\u00e9 \\u2014 \\"quoted\\""}'),
     "4b49b22531aa2c026ddd3b4c9f3797ad50ec116c1bf44f751e61f50c8b817159"),
])
def test_an_events_hash_is_the_one_every_earlier_version_recorded(contents: tuple, recorded: str) -> None:
    # Trails written by the bot since the chain began are verified against this function: its bytes never change.
    assert audit.content_hash(*contents) == recorded
