"""Queries and small writes shared by the services. Callers own the transaction."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, event, func, insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import configure_mappers, make_transient_to_detached
from sqlmodel import Session, col, select

from mailbot.store import ahead, audit, due_reads
from mailbot.store.db import chunks, from_db, to_db
from mailbot.store.models import (
    CASE_TABLE,
    CURSOR_TABLE,
    DEADLINE_TABLE,
    EVENT_TABLE,
    MESSAGE_TABLE,
    RESTRICTION_TABLE,
    SEQUENCE_TABLE,
    Case,
    Deadline,
    Event,
    MailboxCursor,
    MailMessage,
    MentorAction,
    Restriction,
)
from mailbot.store.prebuilt import Prebuilt, rows_together

# The statements every message runs, built once, with values as bind parameters (why, and what it
# saves: store.prebuilt's docstring and bench/README.md).
_LIVE_CASE_ID_BY_REF = Prebuilt(sa_select(CASE_TABLE.c.id).where(
    CASE_TABLE.c.ref == bindparam("ref"), CASE_TABLE.c.anonymised_at.is_(None)).limit(1))
_CASE_BY_REF = select(Case).where(col(Case.ref) == bindparam("ref"))
_REF_OF_MESSAGE = Prebuilt(
    sa_select(CASE_TABLE.c.ref).join(MESSAGE_TABLE, MESSAGE_TABLE.c.case_id == CASE_TABLE.c.id)
    .where(MESSAGE_TABLE.c.message_id == bindparam("message_id")).limit(1))
_DIRECTIONS_SEEN = Prebuilt(
    sa_select(MESSAGE_TABLE.c.direction).where(MESSAGE_TABLE.c.message_id == bindparam("message_id"))
    .group_by(MESSAGE_TABLE.c.direction))
_NEXT_SEQ = Prebuilt(
    update(SEQUENCE_TABLE).where(SEQUENCE_TABLE.c.year == bindparam("seq_year"))
    .values(last_seq=SEQUENCE_TABLE.c.last_seq + 1).returning(SEQUENCE_TABLE.c.last_seq))
_INSERT_CASE = Prebuilt(insert(CASE_TABLE).returning(CASE_TABLE.c.id))
_INSERT_MESSAGE = Prebuilt(insert(MESSAGE_TABLE).returning(MESSAGE_TABLE.c.id))
# With the id taken ahead (PostgreSQL): nothing to wait for, so they go with the next statement (store.ahead).
_WRITE_CASE = Prebuilt(insert(CASE_TABLE))
_WRITE_MESSAGE = Prebuilt(insert(MESSAGE_TABLE))
_ADD_EVENT = Prebuilt(insert(EVENT_TABLE).returning(EVENT_TABLE.c.id))
_AUTOMATIC_SINCE = sa_select(func.count(MESSAGE_TABLE.c.id)).where(
    MESSAGE_TABLE.c.direction == "out",
    MESSAGE_TABLE.c.automatic == True,  # noqa: E712  (SQL expression)
    MESSAGE_TABLE.c.to_addrs == bindparam("address"),
    MESSAGE_TABLE.c.at >= bindparam("since", type_=MESSAGE_TABLE.c.at.type),
)
# Only an automatic letter has a trigger_from (services.correspondence writes it on no other), so the count says no
# more than that. Saying "automatic" too would let PostgreSQL read it from ix_message_cap, whose rows are the same
# letters: with statistics taken while there were none, it did, reading every automatic letter of the window for
# each count (0.42 against 0.06 ms of the server's time a complaint with 50,000 cases prefilled, and growing as a
# backlog was answered).
_AUTOMATIC_CAUSED_SINCE = sa_select(func.count(MESSAGE_TABLE.c.id)).where(
    MESSAGE_TABLE.c.trigger_from == bindparam("sender"),
    MESSAGE_TABLE.c.at >= bindparam("since", type_=MESSAGE_TABLE.c.at.type),
)
# Both counts in one round trip (each subquery on its own index: ix_message_cap, ix_message_cap_from).
_AUTOMATIC_COUNTS = Prebuilt(sa_select(_AUTOMATIC_SINCE.scalar_subquery(), _AUTOMATIC_CAUSED_SINCE.scalar_subquery()))
_INSERT_DEADLINES = Prebuilt(insert(DEADLINE_TABLE))
# The person's restrictions in force, on whichever case (the caller leaves out its own): asked ahead of a new
# complaint's case, whose id it cannot know yet.
_RESTRICTED = Prebuilt(
    sa_select(RESTRICTION_TABLE.c.case_id, CASE_TABLE.c.ref, RESTRICTION_TABLE.c.mode)
    .join(CASE_TABLE, CASE_TABLE.c.id == RESTRICTION_TABLE.c.case_id)
    .where(RESTRICTION_TABLE.c.complainant == bindparam("complainant"), RESTRICTION_TABLE.c.state == "restricted")
    .order_by(RESTRICTION_TABLE.c.id)
)
_FIRST_MESSAGE_ID = Prebuilt(
    sa_select(MESSAGE_TABLE.c.message_id).where(MESSAGE_TABLE.c.case_id == bindparam("case_id"))
    .order_by(MESSAGE_TABLE.c.id).limit(1))


class StoreLookup:
    """The store seen through the threading rules' eyes (see domain.threads.CaseLookup)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def case_exists(self, ref: str) -> bool:
        """A case mail may thread into: not one whose personal data was removed (mail from the person
        afterwards is new)."""
        return _LIVE_CASE_ID_BY_REF.scalar(self.session.connection(), {"ref": ref}) is not None

    def case_for_message_ids(self, message_ids: tuple[str, ...]) -> str | None:
        if not message_ids:
            return None
        # The newest id is the most specific: a reply's References end with its parent.
        # On the connection: every message the rows could be is flushed as soon as it is added.
        connection = self.session.connection()
        for mid in reversed(message_ids[-50:]):
            ref = _REF_OF_MESSAGE.scalar(connection, {"message_id": mid})
            if ref:
                return str(ref)
        return None


# session.info: case id -> its first message's Message-ID (None: a case opened in this session, no message yet).
_FIRST_MESSAGES = "mailbot_first_messages"
# session.info: the cases insert_case attached in the session's open transaction, each with its (sub)transaction.
_INSERTED_CASES = "mailbot_inserted_cases"


def insert_message(session: Session, values: dict[str, object]) -> int:
    """Insert a message row, inbound or outbound, and return its id.

    A plain INSERT on the session's connection: these rows are not read back as ORM objects in the
    transaction that writes them, and the unit of work (with the autoflush it forced on the next
    query) cost more than the statement.
    """
    _unforesee_message(session, values)
    connection = session.connection()
    row_id = ahead.new_id(connection, "message")
    if row_id is None:
        row_id = int(_INSERT_MESSAGE.scalar(connection, values))
    else:
        _WRITE_MESSAGE.write(connection, {**values, "id": row_id})
    known = session.info.get(_FIRST_MESSAGES)
    if known is not None and values.get("case_id") in known and known[values["case_id"]] is None:
        known[values["case_id"]] = values["message_id"]  # the first message of a case opened here
    return row_id


def record_inbound(session: Session, values: dict[str, object]) -> int:
    """Insert an inbound message, already filed (its kind and case decided); returns its id."""
    return insert_message(session, {**values, "direction": "in"})


def case_by_ref(session: Session, ref: str) -> Case | None:
    return session.exec(_CASE_BY_REF, params={"ref": ref.upper()}).first()


def insert_case(session: Session, **values: object) -> Case:
    """A new case, written by a plain INSERT and returned as a persistent object of the session.

    The object is attached as if just loaded (``make_transient_to_detached``), so changes made to it
    later in the transaction flush as UPDATEs: the unit of work's INSERT path (with its flush of
    everything pending) cost more than the rest of opening a case.
    """
    connection = session.connection()
    case_id = ahead.new_id(connection, "case")
    if case_id is None:
        case_id = _INSERT_CASE.scalar(connection, values)
    else:
        _WRITE_CASE.write(connection, {**values, "id": case_id})
    case = _loaded_case({**values, "id": case_id})
    make_transient_to_detached(case)
    session.add(case)
    # Attached as persistent, a rollback would only expire it: _forget_rolled_back takes it out of the session.
    session.info.setdefault(_INSERTED_CASES, []).append((case, session.get_nested_transaction()
                                                         or session.get_transaction()))
    session.info.setdefault(_FIRST_MESSAGES, {})[case.id] = None  # its first message is the next one written
    return case


# What ``Case(**values)`` would fill in for the columns not given (none of Case's fields has a default factory).
_CASE_DEFAULTS = {name: field.default for name, field in Case.model_fields.items() if not field.is_required()}
if any(field.default_factory for field in Case.model_fields.values()):
    raise TypeError("a Case field has a default factory: _loaded_case must call it")


def _loaded_case(values: Mapping[str, object]) -> Case:
    """A Case built as a query builds one from its row: attributes set with no history and no pydantic pass.
    ``Case(**values)`` set each attribute through SQLModel's and SQLAlchemy's hooks: 48 us against 5."""
    configure_mappers()  # as constructing or querying would (about 1 us once done)
    case = Case._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    case.__dict__.update(_CASE_DEFAULTS)
    case.__dict__.update(values)
    return case


def allocate_ref(session: Session, year: int) -> tuple[int, str]:
    """The next per-year sequence number and its reference, inside the caller's transaction."""
    # One UPDATE ... RETURNING: its row lock serialises two processes allocating at once on PostgreSQL
    # (as SELECT ... FOR UPDATE did); SQLite serialises writers anyway.
    # On PostgreSQL a transaction that already holds the row counts on by itself (store.ahead).
    connection = session.connection()
    seq = ahead.counted(connection, year)
    if seq is not None:
        return seq, f"1MM-{year}-{seq:04d}"  # its row is written before the commit
    seq = _NEXT_SEQ.scalar(connection, {"seq_year": year})
    if seq is None:
        # The year's first case. Two processes can both get here: the row is inserted only if absent (the
        # second waits for the first's row, then inserts nothing), and the UPDATE then numbers them in turn.
        connection.execute(_year_row(connection.dialect.name), {"year": year, "last_seq": 0})
        seq = _NEXT_SEQ.scalar(connection, {"seq_year": year})
    ahead.hold_counter(connection, year, seq)
    return seq, f"1MM-{year}-{seq:04d}"


def _year_row(dialect: str):  # type: ignore[no-untyped-def]
    """INSERT of a year's sequence row that does nothing when another transaction inserted it first."""
    # Imported here: a year's first case needs one of them, and the PostgreSQL dialect is ~25 ms of every start.
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(SEQUENCE_TABLE).on_conflict_do_nothing(index_elements=[SEQUENCE_TABLE.c.year])


def case_id(session: Session, case: Case | None) -> int | None:
    """The case's id, flushing it first if it was added as an ORM object and not yet written."""
    if case is not None and case.id is None:
        session.flush()
    return case.id if case else None


def add_event(session: Session, case: Case | None, at: datetime, type_: str, actor: str = "", **detail: object) -> None:
    """Append to the audit trail in the caller's transaction. Its contents are hashed now; it is written and
    linked into the chain when the transaction commits, or earlier if anything else runs first (store.audit).

    A plain INSERT rather than an ORM object: events are write-only here, and the unit of work's
    bookkeeping for them was a measurable share of each acknowledgement's time.
    """
    audit.add(session, _event_row(session, case, at, type_, actor, detail))


def add_event_now(session: Session, case: Case | None, at: datetime, type_: str, actor: str = "",
                  **detail: object) -> int:
    """``add_event`` written at once, for a caller that needs the event's id; returns it."""
    connection = session.connection()
    audit.write_pending(connection)  # the events added before it keep their order
    return int(_ADD_EVENT.scalar(connection, audit.written_now(connection, _event_row(session, case, at, type_,
                                                                                      actor, detail))))


def _event_row(session: Session, case: Case | None, at: datetime, type_: str, actor: str,
               detail: dict[str, object]) -> dict[str, object]:
    return audit.stamp_event(session, {
        "case_id": case_id(session, case), "at": to_db(at), "type": type_, "actor": actor,
        "detail": _DETAIL.encode(detail) if detail else "",
    })


# json.dumps(detail, default=str, sort_keys=True), its encoder built once rather than for each event.
_DETAIL = json.JSONEncoder(default=str, sort_keys=True)


# ---- what the messages in hand will ask, asked ahead in one round trip ------------------------------------
#
# Handling a new complaint asks the store three things, each a round trip on PostgreSQL: is its Message-ID
# known, how many automatic letters its sender has had today, and is the person restricted on another case.
# All three are known from the message before anything is written, so intake asks them together, for the next
# few messages at once (``foresee``; services.ingest), and the functions below take the answer from there:
# once, for exactly the same question, and only while nothing the answer depends on has been written since (a
# message row with that Message-ID, an automatic letter to that address or caused by that sender, any
# restriction; a rollback of any kind forgets everything). Anything else is asked as usual. On PostgreSQL the
# transaction's writes still waiting (store.prebuilt) go with the questions only if one of them could change an
# answer; otherwise they wait on for the commit, where a whole transaction's cases, messages and deadlines go
# as one INSERT a table. The ids new cases and their messages will take are asked for there too (store.ahead).

Ask = tuple[Prebuilt, dict[str, Any]]
_FORESEEN = "mailbot_foreseen"  # session.info: {(statement, its parameters): rows}
_FORESEEN_BY = "mailbot_foreseen_by"  # session.info: {what a row may touch: the keys of the answers it makes stale}


def ask_directions(message_id: str) -> Ask:
    return _DIRECTIONS_SEEN, {"message_id": message_id}


def ask_automatic_letters(address: str, sender: str | None, since: datetime) -> Ask:
    return _AUTOMATIC_COUNTS, {"address": address, "sender": sender or "", "since": to_db(since)}


def ask_restrictions(person: str) -> Ask:
    return _RESTRICTED, {"complainant": person}


def foresee(session: Session, asks: list[Ask], complaints: int = 1) -> None:
    """Ask these now, together (one round trip on PostgreSQL), for the functions that will ask them next, for
    the next ``complaints`` messages; whatever was foreseen before is forgotten."""
    unique = list({_key(prebuilt, params): (prebuilt, params) for prebuilt, params in asks}.items())
    connection = session.connection()
    listening = _listening(unique)
    ids = ahead.asks_for_ids(connection, complaints)  # and the ids new cases would take, if too few are left
    answers = rows_together(connection, [ask for _, ask in unique] + [(pb, params) for _, _, pb, params in ids],
                            before_waiting=not _changed_by_waiting(connection, listening))
    for (table, size, _, _), rows in zip(ids, answers[len(unique):]):
        ahead.took_ids(connection, table, size, rows)
    session.info[_FORESEEN] = {key: rows for (key, _), rows in zip(unique, answers)}
    session.info[_FORESEEN_BY] = listening


def _changed_by_waiting(connection: Connection, listening: dict[tuple[str, ...], list[tuple[Any, ...]]]) -> bool:
    """Whether a write still waiting on the connection (PostgreSQL, store.prebuilt) could change an answer: a
    message row that would make it stale (``_touches``). If none could, the questions go without them, and the
    transaction's writes wait for its commit and go there as one INSERT a table. (Restrictions and cases are
    never written in a way a question here could read.)"""
    return any(touched in listening for row in _WRITE_MESSAGE.waiting(connection) for touched in _touches(row))


def _rows(session: Session, prebuilt: Prebuilt, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    foreseen = session.info.get(_FORESEEN)
    if foreseen:
        rows = foreseen.pop(_key(prebuilt, params), None)
        if rows is not None:
            return rows
    return prebuilt.rows(session.connection(), params)


def _key(prebuilt: Prebuilt, params: dict[str, Any]) -> tuple[Any, ...]:
    return (prebuilt, *sorted(params.items()))


# The one rule for which answers a message row makes stale: those listening for something the row touches.
# A row touches its Message-ID, and if it is an automatic letter, its address and the sender who caused it. An
# answer listens for the Message-ID asked about (directions_seen) or for the address and the sender whose
# automatic letters it counts (automatic_letters). Restrictions listen for none; any other question, for all.
_ANY = ("any",)


def _touches(row: Mapping[str, Any]) -> list[tuple[str, ...]]:
    touched = [("message_id", row.get("message_id")), _ANY]
    if row.get("automatic"):
        touched += [("automatic_to", row.get("to_addrs")), ("automatic_from", row.get("trigger_from") or "")]
    return touched


def _listens(prebuilt: Prebuilt, params: Mapping[str, Any]) -> list[tuple[str, ...]]:
    if prebuilt is _DIRECTIONS_SEEN:
        return [("message_id", params["message_id"])]
    if prebuilt is _AUTOMATIC_COUNTS:
        return [("automatic_to", params["address"]), ("automatic_from", params["sender"])]
    return [] if prebuilt is _RESTRICTED else [_ANY]


def _listening(asks: list[tuple[tuple[Any, ...], Ask]]) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
    """What the rows written next may touch, with the keys of the answers each would make stale."""
    listening: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for key, (prebuilt, params) in asks:
        for listened in _listens(prebuilt, params):
            listening.setdefault(listened, []).append(key)
    return listening


def _unforesee_message(session: Session, values: dict[str, object]) -> None:
    """A message row written: what was foreseen that it could change is stale."""
    foreseen = session.info.get(_FORESEEN)
    if foreseen:
        listening = session.info[_FORESEEN_BY]
        for touched in _touches(values):
            for key in listening.get(touched, ()):
                foreseen.pop(key, None)


@event.listens_for(Session, "after_flush")
def _unforesee_restrictions(session: Session, _context: Any) -> None:
    foreseen = session.info.get(_FORESEEN)
    if foreseen and any(isinstance(row, Restriction) for row in (*session.new, *session.dirty, *session.deleted)):
        for key in [key for key in foreseen if key[0] is _RESTRICTED]:
            del foreseen[key]


@event.listens_for(Session, "after_soft_rollback")
@event.listens_for(Session, "after_commit")
def _forget_foreseen(session: Session, *_: Any) -> None:
    session.info.pop(_FORESEEN, None)
    session.info.pop(_FORESEEN_BY, None)


def directions_seen(session: Session, message_id: str) -> frozenset[str]:
    """In which directions (``in``, ``out``) a message with this Message-ID is recorded, in one query."""
    # Straight on the connection (no autoflush, no ORM result): asked for every message, and message rows
    # are plain INSERTs, written as soon as they are added.
    return frozenset(row[0] for row in _rows(session, *ask_directions(message_id)))


def inbound_raw(session: Session, message_id: str) -> bytes | None:
    """The bytes of the inbound message kept under this Message-ID (one at most: uq_message_direction_id)."""
    raw = session.connection().execute(
        sa_select(MESSAGE_TABLE.c.raw).where(MESSAGE_TABLE.c.message_id == message_id,
                                             MESSAGE_TABLE.c.direction == "in")).scalar()
    return None if raw is None else bytes(raw)


def inbound_seen(session: Session, message_id: str) -> bool:
    return "in" in directions_seen(session, message_id)


def outbound_by_message_id(session: Session, message_id: str) -> MailMessage | None:
    return session.exec(
        select(MailMessage).where(MailMessage.direction == "out", MailMessage.message_id == message_id)
    ).first()


def letters_not_to(session: Session, case_id: int, complainant: str) -> list[bytes]:
    """The raw bytes of every letter on a case that did not go to the complainant: staff-only mail."""
    rows = session.connection().execute(
        sa_select(MESSAGE_TABLE.c.to_addrs, MESSAGE_TABLE.c.raw)
        .where(MESSAGE_TABLE.c.case_id == case_id, MESSAGE_TABLE.c.direction == "out")
        .order_by(MESSAGE_TABLE.c.id))
    return [bytes(raw or b"") for to_addrs, raw in rows
            if complainant.lower() not in (to_addrs or "").lower().split(",")]


def automatic_letters(session: Session, address: str, sender: str | None, since: datetime) -> tuple[int, int]:
    """Automatic letters queued since then to this address, and in answer to mail from this From address
    (0 for no sender): what the per-address cap counts."""
    # On the connection: outbox letters are plain INSERTs (Correspondence.queue), so there is nothing to flush.
    row = _rows(session, *ask_automatic_letters(address, sender, since))[0]
    return int(row[0] or 0), (int(row[1] or 0) if sender else 0)


def cursor_for(session: Session, mailbox: str) -> MailboxCursor:
    cur = session.exec(select(MailboxCursor).where(MailboxCursor.mailbox == mailbox)).first()
    if cur is None:
        cur = MailboxCursor(mailbox=mailbox)
        session.add(cur)
        session.flush()
    return cur


# The common case in one statement, built once: the cursor exists, with this UIDVALIDITY, behind this UID.
_MOVE_CURSOR = Prebuilt(
    update(CURSOR_TABLE)
    .where(CURSOR_TABLE.c.mailbox == bindparam("box"), CURSOR_TABLE.c.uidvalidity == bindparam("validity"),
           CURSOR_TABLE.c.last_uid < bindparam("uid"))
    .values(last_uid=bindparam("uid"))
)


def advance_cursor(session: Session, mailbox: str, uidvalidity: int, uid: int) -> None:
    """The mailbox's cursor moved up to ``uid`` (started again when the mailbox's UIDVALIDITY changed)."""
    # On the connection: the ORM's UPDATE path costs several times the statement.
    if _MOVE_CURSOR.run(session.connection(), {"box": mailbox, "validity": uidvalidity, "uid": uid}) == 1:
        return
    cur = cursor_for(session, mailbox)
    if cur.uidvalidity != uidvalidity:
        cur.uidvalidity = uidvalidity
        cur.last_uid = 0
    cur.last_uid = max(cur.last_uid, uid)


# ---- a case's deadlines, restriction and thread -------------------------------------------------


def insert_deadlines(session: Session, case_id: int, stage: int, due: dict[str, datetime],
                     reminded_at: datetime | None = None, reminded: Collection[str] = ()) -> None:
    """A stage's deadlines as plain INSERTs: nothing reads them back as objects in the transaction that writes
    them. Those named in ``reminded`` are recorded as reminded at ``reminded_at``."""
    _INSERT_DEADLINES.write_many(session.connection(), [
        {"case_id": case_id, "stage": stage, "name": name, "due_at": to_db(at),
         "reminded_at": to_db(reminded_at) if name in reminded else None} for name, at in due.items()])


def open_deadlines(session: Session, case_id: int) -> list[Deadline]:
    """The case's deadlines still running: neither met nor replaced by a later stage's."""
    return list(session.exec(select(Deadline).where(Deadline.case_id == case_id, Deadline.superseded == False,  # noqa: E712
                                                    col(Deadline.met_at).is_(None))).all())


def active_deadlines(session: Session, case_id: int) -> dict[str, datetime]:
    """The current stage's deadlines by name (met or not), as the letters quote them."""
    rows = session.exec(select(Deadline).where(Deadline.case_id == case_id, Deadline.superseded == False)  # noqa: E712
                        .order_by(col(Deadline.id))).all()
    return {row.name: from_db(row.due_at) for row in rows}  # type: ignore[misc]


def active_restriction(session: Session, case_id: int) -> Restriction | None:
    return session.exec(select(Restriction).where(Restriction.case_id == case_id,
                                                  Restriction.state == "restricted")).first()


def restriction_of(session: Session, case_id: int) -> Restriction | None:
    """The case's restriction record in whatever state (warned, restricted, lifted...), if it has one."""
    return session.exec(select(Restriction).where(Restriction.case_id == case_id)).first()


def restrictions_on_other_cases(session: Session, case_id: int, person: str) -> list[tuple[str, str]]:
    """(reference, mode) of the person's restrictions in force on cases other than this one."""
    session.flush()  # restrictions are ORM rows: a pending one must count
    rows = _rows(session, *ask_restrictions(person))
    return [(ref, mode or "") for other, ref, mode in rows if other != case_id]


def first_message_id(session: Session, case_id: int) -> str | None:
    """The case's first message (the complaint), which staff mail references to stay in the case's thread.
    Remembered for the session: it never changes, and a new case's staff copy needs no query for it."""
    known = session.info.setdefault(_FIRST_MESSAGES, {})
    if known.get(case_id) is None:
        session.flush()  # the inbound row may be pending
        known[case_id] = _FIRST_MESSAGE_ID.scalar(session.connection(), {"case_id": case_id})
    return known[case_id]


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: Any) -> None:
    """A rolled-back transaction or savepoint takes the cases it inserted with it, and SQLite hands their ids out
    again: the objects leave the session (else the next case given the same id cannot be attached, and a good
    complaint after a failed one failed too), and what was remembered of cases goes."""
    session.info.pop(_FIRST_MESSAGES, None)
    kept = []
    for case, transaction in session.info.get(_INSERTED_CASES, ()):
        inside = transaction
        while inside is not None and inside is not previous_transaction:
            inside = inside.parent
        if inside is None:
            kept.append((case, transaction))
        elif case in session:
            session.expunge(case)
    session.info[_INSERTED_CASES] = kept


@event.listens_for(Session, "after_commit")
def _forget_inserted(session: Session) -> None:
    if not session.in_nested_transaction():  # the real commit (not a savepoint's): the cases stay
        session.info.pop(_INSERTED_CASES, None)


def complainant_thread(session: Session, case_id: int, complainant: str) -> list[str]:
    """Message ids the complainant has seen, oldest first: their mail and our letters to them."""
    return list(session.exec(select(MailMessage.message_id).where(
        MailMessage.case_id == case_id,
        ((MailMessage.direction == "in") & (MailMessage.from_addr == complainant))
        | ((MailMessage.direction == "out") & (MailMessage.to_addrs == complainant)),
    ).order_by(col(MailMessage.id))).all())


def letters_to(session: Session, case_id: int, address: str) -> list[MailMessage]:
    """Our letters on the case to this address, oldest first."""
    return list(session.exec(select(MailMessage).where(
        MailMessage.case_id == case_id, MailMessage.direction == "out", MailMessage.to_addrs == address,
    ).order_by(col(MailMessage.id))).all())


def last_raw_from(session: Session, case_id: int, sender: str) -> bytes | None:
    """The raw bytes of the newest message on the case from this address."""
    return session.exec(select(MailMessage.raw).where(MailMessage.case_id == case_id, MailMessage.direction == "in",
                                                      MailMessage.from_addr == sender)
                        .order_by(col(MailMessage.id).desc())).first()


def add_deadline(session: Session, case_id: int, stage: int, name: str, due: datetime) -> None:
    session.add(Deadline(case_id=case_id, stage=stage, name=name, due_at=to_db(due)))


def restriction_record(session: Session, case: Case) -> Restriction:
    """The case's restriction record, created (with nothing in force) the first time a command needs it."""
    row = restriction_of(session, case.id or 0)
    if row is None:
        row = Restriction(case_id=case.id, complainant=case.complainant, state="none")
        session.add(row)
    return row


def latest_restricted_mail(session: Session, case_id: int) -> MailMessage | None:
    """The newest message on the case that a restriction filed or only acknowledged."""
    return session.exec(select(MailMessage).where(
        MailMessage.case_id == case_id, MailMessage.direction == "in",
        col(MailMessage.kind).in_(("restricted_filed", "restricted_acknowledged")),
    ).order_by(col(MailMessage.id).desc())).first()


def add_mentor_action(session: Session, case_id: int, mentor: str, action: str, reason: str, by: str,
                      at: datetime) -> None:
    session.add(MentorAction(case_id=case_id, mentor_email=mentor, action=action, reason=reason, by=by,
                             at=to_db(at)))


def last_mentor_on_case(session: Session, case_id: int, action: str | None = None) -> str | None:
    """The mentor the case's last mentor action (of this kind, if given) named."""
    query = select(MentorAction.mentor_email).where(MentorAction.case_id == case_id)
    if action is not None:
        query = query.where(MentorAction.action == action)
    return session.exec(query.order_by(col(MentorAction.id).desc())).first()


def mentor_has(session: Session, mentor: str, actions: tuple[str, ...], case_id: int | None = None) -> bool:
    """Whether any of these actions is recorded against the mentor (on any case, or on this one)."""
    query = select(MentorAction.id).where(MentorAction.mentor_email == mentor, col(MentorAction.action).in_(actions))
    if case_id is not None:
        query = query.where(MentorAction.case_id == case_id)
    return session.exec(query).first() is not None


# ---- what the scheduled jobs look for ----------------------------------------------------------


def restrictions_due_review(session: Session, now: datetime,
                            open_statuses: tuple[str, ...]) -> list[tuple[Restriction, Case]]:
    """Restrictions in force whose six-month review is due and not yet asked for, on cases still open."""
    return list(session.exec(
        select(Restriction, Case).join(Case, col(Case.id) == col(Restriction.case_id))
        .where(due_reads.review_filter(Restriction, Case, now, open_statuses))
    ).all())


def restrictions_at_term(session: Session, now: datetime) -> list[tuple[Restriction, Case]]:
    """Restrictions in force whose term has ended."""
    return list(session.exec(
        select(Restriction, Case).join(Case, col(Case.id) == col(Restriction.case_id))
        .where(due_reads.expiry_filter(Restriction, now))
    ).all())


# Rows the deadline chase reads at a time: it never holds more than this many cases as objects.
CHASE_PAGE = 200


def deadlines_to_chase(session: Session, open_statuses: tuple[str, ...], due_before: datetime,
                       remind_until: datetime) -> Iterator[tuple[Deadline, Case]]:
    """Running deadlines on open cases that may need a letter now, soonest first, a page at a time: not yet
    alerted as overdue, and either due by ``due_before`` or not yet reminded and due by ``remind_until``. Everything further off waits in the database, however many open cases there are."""
    after: tuple[datetime, int] | None = None
    while True:
        query = (select(Deadline, Case).join(Case, col(Case.id) == col(Deadline.case_id))
                 .where(due_reads.chase_filter(Deadline, Case, open_statuses, due_before, remind_until)))
        if after is not None:
            query = query.where((col(Deadline.due_at) > after[0])
                                | ((col(Deadline.due_at) == after[0]) & (col(Deadline.id) > after[1])))
        page = session.exec(query.order_by(col(Deadline.due_at), col(Deadline.id)).limit(CHASE_PAGE)).all()
        yield from page
        if len(page) < CHASE_PAGE:
            return
        last = page[-1][0]
        after = (last.due_at, last.id or 0)


def open_cases_assigned_outside(session: Session, open_statuses: tuple[str, ...],
                                staff: frozenset[str]) -> list[Case]:
    """Open cases whose owner is not one of these addresses (no longer in staff.toml)."""
    return list(session.exec(select(Case).where(due_reads.gone_filter(Case, open_statuses, staff))).all())


# The events that change (or fail to change) who owns a case.
OWNER_EVENTS = ("handed_over", "handover_impossible", "reassigned", "reviewer_assigned")


def owners_without_successor(session: Session, case_ids: list[int]) -> set[int]:
    """Of these cases, those whose owner's last change is a hand-over that found nobody to take the case: it is
    recorded already, and nothing has changed owner since."""
    stuck: set[int] = set()
    e = EVENT_TABLE.c
    for page in chunks(case_ids):
        latest = (sa_select(e.case_id, func.max(e.id).label("last")).where(e.case_id.in_(page), e.type.in_(OWNER_EVENTS))
                  .group_by(e.case_id).subquery())
        query = (sa_select(e.case_id).join_from(EVENT_TABLE, latest, latest.c.last == e.id)
                 .where(e.type == "handover_impossible"))
        stuck.update(row[0] for row in session.connection().execute(query))
    return stuck


def inbound_from(session: Session, case_id: int, sender: str) -> list[bytes]:
    """The raw bytes of every message on the case from this address, oldest first."""
    return list(session.exec(select(MailMessage.raw).where(MailMessage.case_id == case_id,
                                                           MailMessage.direction == "in",
                                                           MailMessage.from_addr == sender)
                             .order_by(col(MailMessage.id))).all())


def latest_inbound_from(session: Session, case_id: int, sender: str) -> datetime | None:
    """When the newest message on the case from this address arrived (None: none did)."""
    return from_db(session.exec(select(MailMessage.at).where(MailMessage.case_id == case_id,
                                                             MailMessage.direction == "in",
                                                             MailMessage.from_addr == sender)
                                .order_by(col(MailMessage.at).desc())).first())


def case_messages(session: Session, case_id: int) -> list[MailMessage]:
    """Every message on the case, in and out, oldest first."""
    return list(session.exec(select(MailMessage).where(MailMessage.case_id == case_id)
                             .order_by(col(MailMessage.id))).all())


def case_events(session: Session, case_id: int, types: tuple[str, ...]) -> list[tuple[datetime, str, dict]]:
    """(when, type, detail) of the case's events of these types, oldest first."""
    rows = session.exec(select(Event).where(Event.case_id == case_id, col(Event.type).in_(types))
                        .order_by(col(Event.id))).all()
    return [(from_db(e.at), e.type, json.loads(e.detail) if e.detail else {}) for e in rows]  # type: ignore[misc]


def assigned_away_from(session: Session, case_id: int) -> set[str]:
    """Everyone staff moved the case away from with #assign."""
    return {str(detail.get("previous")) for _, _, detail in case_events(session, case_id, ("reassigned",))
            if detail.get("previous")}


def letter_to_among(session: Session, message_ids: tuple[str, ...], address: str) -> bool:
    """Whether one of these message ids is a letter we sent to this address."""
    if not message_ids:
        return False
    rows = session.exec(select(MailMessage.to_addrs).where(MailMessage.direction == "out",
                                                           col(MailMessage.message_id).in_(message_ids[-50:]))).all()
    return any(address in (to or "").lower().split(",") for to in rows)


def cap_window(now: datetime) -> datetime:
    return now - timedelta(hours=24)
