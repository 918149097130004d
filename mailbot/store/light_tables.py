"""The tables as light SQLAlchemy Core clauses: the columns the read-only commands read, without the ORM.

`mailbot cases`, `case`, `unfiled` (``store.case_reads``) and `mailbot status` (``store.health_reads``) are the
commands people and monitors run most, and a `run --once` mostly finds nothing to do (``store.mailbox_rows``,
``store.due_reads``, ``store.outbox``), so they load neither the ORM nor the table classes (``store.models``, built
with SQLModel and pydantic: about 0.15 s of a 0.6 s command). Each table is named once here with the columns those
reads use; ``tests/unit/test_store.py`` holds every one to the real table, so a renamed column fails there and not in
front of a user. Times and flags are typed as the tables' own, so they are written and read as those columns are;
a time is written as ``store.db.to_db`` gives it (aware, in UTC), which is what the tables' own type checks for.
"""

from __future__ import annotations

from sqlalchemy import Boolean, DateTime, LargeBinary, column, table

_TIME = DateTime(timezone=True)

CASES = table("case", column("id"), column("ref"), column("year"), column("seq"), column("status"), column("stage"),
              column("procedure"), column("channel"), column("postal_address"), column("complainant"),
              column("from_addr"), column("reply_to"), column("subject"), column("opened_at", _TIME),
              column("assignee"), column("category"), column("outcome"), column("merged_into"),
              column("updated_at", _TIME), column("closed_at", _TIME), column("stage_started_at", _TIME),
              column("held_reason"), column("anonymised_at", _TIME))
MESSAGES = table("message", column("id"), column("case_id"), column("direction"), column("message_id"),
                 column("subject"), column("at", _TIME), column("kind"), column("from_addr"), column("to_addrs"),
                 column("delivery"), column("sent_at", _TIME), column("last_error"), column("raw", LargeBinary),
                 column("attempts"), column("automatic", Boolean), column("next_attempt_at", _TIME),
                 column("claimed_until", _TIME))
DEADLINES = table("deadline", column("id"), column("case_id"), column("name"), column("due_at", _TIME),
                  column("superseded", Boolean), column("met_at", _TIME), column("reminded_at", _TIME),
                  column("overdue_alerted_at", _TIME))
RESTRICTIONS = table("restriction", column("case_id"), column("state"), column("mode"), column("options"),
                     column("reason"), column("warned_at", _TIME), column("warned_by"), column("started_at", _TIME),
                     column("ends_at", _TIME), column("review_at", _TIME), column("decided_by"),
                     column("exceptional"), column("ended_at", _TIME), column("reviewed_at", _TIME))
EVENTS = table("event", column("id"), column("case_id"), column("at", _TIME), column("type"), column("detail"),
               column("actor"))
MENTOR_ACTIONS = table("mentoraction", column("id"), column("case_id"), column("mentor_email"), column("action"),
                       column("reason"), column("by"), column("at", _TIME))
CURSORS = table("mailboxcursor", column("id"), column("mailbox"), column("uidvalidity"), column("last_uid"),
                column("last_success_at", _TIME), column("last_error"), column("last_error_at", _TIME),
                column("error_count"), column("auth_failures"))
AUDIT_HEAD = table("audit_head", column("id"), column("seq"), column("hash"))
DIGEST_RUNS = table("digestrun", column("recipient"), column("day"))
