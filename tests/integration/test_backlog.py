"""A large backlog in `run --once`: a second process delivers while intake runs; nothing is lost or doubled."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from datetime import datetime, timedelta, timezone

from mailbot.app import BACKGROUND_DELIVERY_BACKLOG
from tests.integration.bot import Bot, make_mail

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


def test_a_backlog_is_delivered_by_a_second_process_exactly_once(bot: Bot) -> None:
    count = BACKGROUND_DELIVERY_BACKLOG + 10
    for i in range(count):
        bot.deliver(make_mail(frm=f"person{i:04d}@example.org", subject=f"Complaint {i}",
                              message_id=f"<backlog-{i:04d}@example.org>"), received=T0 + timedelta(seconds=i))
    result = bot.cli("run", "--once", "--now", (T0 + timedelta(hours=1)).isoformat())
    assert "delivering in a second process" in result.stderr
    summary = re.search(r"fetched (\d+) message\(s\); scheduled work queued (\d+) letter\(s\); sent (\d+), "
                        r"deferred 0, failed 0", result.stdout)
    assert summary, result.stdout
    fetched, scheduled, sent = map(int, summary.groups())
    assert fetched == count and sent == 2 * count + scheduled

    acks = Counter(m.message["In-Reply-To"] for m in bot.letters("acknowledgement"))
    assert len(acks) == count and set(acks.values()) == {1}
    assert len(bot.letters("staff-notification")) == count
    with sqlite3.connect(bot.data_dir / "mailbot.db") as db:
        states = dict(db.execute("SELECT delivery, count(*) FROM message WHERE direction = 'out' GROUP BY 1"))
        last_uid = db.execute("SELECT last_uid FROM mailboxcursor").fetchone()[0]
    assert states == {"sent": sent} and last_uid == count
    # A second run finds nothing new and sends nothing again.
    again = bot.cli("run", "--once", "--now", (T0 + timedelta(hours=2)).isoformat())
    assert "fetched 0 message(s)" in again.stdout and "sent 0," in again.stdout
