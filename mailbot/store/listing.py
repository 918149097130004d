"""The case listing (`mailbot cases` without --json), read with SQLAlchemy Core alone.

The listing is the command people run most, so it loads neither the ORM nor the table classes
(``store.models``, built with SQLModel and pydantic): those imports alone took about 0.15 s of a 0.6 s
command. It names the few columns it reads as light table clauses; ``tests/unit/test_store.py`` holds them
to the real tables, so a renamed column fails there and not in front of a user.
"""

from __future__ import annotations

from sqlalchemy import column, func, select, table
from sqlalchemy.engine import Connection

CASES = table("case", column("id"), column("ref"), column("year"), column("seq"), column("status"), column("stage"),
              column("procedure"), column("complainant"), column("subject"))
MESSAGES = table("message", column("id"), column("case_id"))


def case_lines(connection: Connection) -> list[dict[str, object]]:
    """Each case as `mailbot cases` lists it (its reference, status, stage, procedure, complainant, messages and
    subject), in one query: the listing needs none of the summary's dates, deadlines or restriction."""
    c, m = CASES.c, MESSAGES.c
    counts = select(m.case_id, func.count(m.id).label("n")).group_by(m.case_id).subquery()
    query = (select(c.ref, c.status, c.stage, c.procedure, c.complainant, c.subject, counts.c.n)
             .outerjoin_from(CASES, counts, counts.c.case_id == c.id).order_by(c.year, c.seq))
    return [{"ref": ref, "status": status, "stage": stage, "procedure": procedure, "complainant": complainant,
             "message_count": n or 0, "subject": subject}
            for ref, status, stage, procedure, complainant, subject, n in connection.execute(query)]
