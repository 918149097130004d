"""The production database option: the same flows on PostgreSQL, migrations included."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.integration.bot import Bot, make_mail, staff_reply
from tests.servers import PostgresServer

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


def test_the_bot_runs_on_postgresql(bot: Bot, postgres: PostgresServer) -> None:
    bot.extra["MAILBOT_DATABASE_URL"] = postgres.url
    bot.append(make_mail(subject="On Postgres"), internaldate=T0)
    bot.append(make_mail(frm="bob@example.org", subject="Second"), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    bot.once(now=T0 + timedelta(seconds=2))
    assert len(bot.letters("acknowledgement")) == 2
    [note] = bot.letters("staff-notification", case="1MM-2026-0001")
    bot.append(staff_reply(note, "Priya Shah <priya.shah@1mm.org.uk>", "#resolve upheld\nSorted."))
    bot.once(now=T0 + timedelta(hours=1))
    cases = bot.cases_json()
    assert [c["ref"] for c in cases] == ["1MM-2026-0001", "1MM-2026-0002"]
    assert bot.case_json("1MM-2026-0001")["status"] == "resolved"
    assert bot.cli("db", "upgrade").returncode == 0
