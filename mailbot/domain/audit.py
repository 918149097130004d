"""The tamper-evident audit trail, as pure functions: what an event's hashes are, and what is wrong with a chain.

Every event holds a hash of its contents (its case, time, type, actor and detail) under a random salt of its
own, and its place in the chain (``seq``, 1, 2, 3 ...) with a chain hash: the hash of the one before, its place
and its content hash. So changing an event's contents breaks its content hash; removing one leaves a gap in the
places; and rewriting the whole chain, which someone with the database could do, gives a different head from
the one written each day to the log and the digest (``verify``'s ``expected`` heads).

Anonymisation (retention, erase-person) replaces an event's contents by a recorded redaction: the event's
salt is removed with the words, so its content hash, still linked in the chain, can no longer be tested
against guesses (an address, a name); ``redacted_by`` names the erasure or retention event that did it, and
that event records how many it redacted, so marking an edited event "redacted" is caught too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

GENESIS = "0" * 64
# Event types that redact others (store.erasure); their detail says how many ("events").
REDACTORS = frozenset({"person_erased", "retention_anonymised"})


def stamp(at: datetime) -> str:
    """The time as hashed: UTC to the microsecond, whatever the database hands back (naive UTC or aware).
    ``2026-12-07T14:03:02.123456Z``, as ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")`` wrote it (in under half the time)."""
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds") + "Z"


# json.dumps with arguments of its own builds an encoder on every call; the hash is taken of every event written.
_HASHED = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def content_hash(salt: str, case_id: int | None, at: datetime, type_: str, actor: str, detail: str) -> str:
    """What an event's contents hash to. Every trail ever written is checked against this: its bytes never change
    (tests/unit/test_audit.py keeps one event's hash from before)."""
    body = _HASHED.encode([case_id, stamp(at), type_, actor, detail])
    return hashlib.sha256(bytes.fromhex(salt) + body.encode("utf-8")).hexdigest()


def link(previous: str, seq: int, content: str) -> str:
    """The chain hash at place ``seq``: it covers every event before it through ``previous``."""
    return hashlib.sha256(f"{previous}:{seq}:{content}".encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Row:
    """One event as stored (``store.audit`` reads them in chain order)."""

    id: int
    seq: int | None
    case_id: int | None
    at: datetime
    type: str
    actor: str
    detail: str
    salt: str | None
    content_hash: str | None
    chain_hash: str | None
    redacted_by: int | None


@dataclass(frozen=True)
class Finding:
    event_id: int | None
    seq: int | None
    problem: str

    def line(self) -> str:
        where = f"event {self.event_id}" if self.event_id is not None else "the trail"
        if self.seq is not None:
            where += f" (place {self.seq} in the chain)"
        return f"{where}: {self.problem}"


@dataclass
class Verdict:
    events: int = 0
    redacted: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    findings: list[Finding] | None = None

    @property
    def ok(self) -> bool:
        return not self.findings


def _count(detail: str) -> int | None:
    try:
        value = json.loads(detail).get("events") if detail else None
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def verify(rows: Iterable[Row], head: tuple[int, str] | None, expected: Mapping[int, str] = {},
           unsealed: Iterable[int] = ()) -> Verdict:
    """Check a chain read in ``seq`` order; ``head`` is the recorded (seq, hash) of its last event, ``expected``
    heads copied elsewhere (the log, the digest) by place, ``unsealed`` events that have no place in it."""
    verdict, findings = Verdict(), []
    previous, expect_seq = GENESIS, 1
    places: dict[int, int] = {}  # event id -> seq
    redacted: list[Row] = []
    redactors: dict[int, Row] = {}
    for row in rows:
        verdict.events += 1
        assert row.seq is not None
        if row.seq != expect_seq:
            missing = f"place {expect_seq}" if row.seq == expect_seq + 1 else f"places {expect_seq} to {row.seq - 1}"
            findings.append(Finding(row.id, row.seq, f"the chain jumps here: {missing} removed"))
        places[row.id] = row.seq
        if row.redacted_by is not None:
            verdict.redacted += 1
            redacted.append(row)
        elif row.salt is None or row.content_hash is None:
            findings.append(Finding(row.id, row.seq, "its contents have no hash to check them by"))
        elif content_hash(row.salt, row.case_id, row.at, row.type, row.actor, row.detail) != row.content_hash:
            findings.append(Finding(row.id, row.seq, f"its contents were changed after it was recorded "
                                                     f"(a {row.type} event of {stamp(row.at)[:10]})"))
        if row.type in REDACTORS:
            redactors[row.id] = row
        if link(previous, row.seq, row.content_hash or "") != row.chain_hash:
            findings.append(Finding(row.id, row.seq, "its chain hash does not follow from the event before it"))
        previous = row.chain_hash or ""
        if row.seq in expected and expected[row.seq] != row.chain_hash:
            findings.append(Finding(row.id, row.seq, f"the chain here is not the one recorded earlier "
                                                     f"({expected[row.seq][:16]}...): it was rewritten"))
        expect_seq = row.seq + 1
        verdict.head_seq, verdict.head_hash = row.seq, previous
    for seq in sorted(set(expected) - set(places.values())):
        findings.append(Finding(None, seq, "a head recorded earlier is no longer in the chain: events were removed"))
    if head is not None and head != (verdict.head_seq, verdict.head_hash):
        findings.append(Finding(None, head[0], f"the recorded head is place {head[0]}, but the chain ends at place "
                                               f"{verdict.head_seq} with a different hash: its last events were "
                                               f"removed or rewritten"))
    by_redactor: dict[int, int] = {}
    for row in redacted:
        assert row.redacted_by is not None and row.seq is not None
        redactor = redactors.get(row.redacted_by)
        if redactor is None or (redactor.seq or 0) < row.seq:
            findings.append(Finding(row.id, row.seq, "it is marked redacted, but by no erasure or retention "
                                                     "recorded after it"))
        by_redactor[row.redacted_by] = by_redactor.get(row.redacted_by, 0) + 1
    for redactor_id, count in by_redactor.items():
        redactor = redactors.get(redactor_id)
        if redactor is not None and _count(redactor.detail) != count:
            findings.append(Finding(redactor.id, redactor.seq, f"it redacted {_count(redactor.detail)} event(s), "
                                                               f"but {count} are marked as redacted by it"))
    for event_id in unsealed:
        findings.append(Finding(event_id, None, "it has no place in the chain: it was written outside the bot"))
    verdict.findings = findings
    return verdict
