"""``mailbot demo``: play the sample complaints in data/samples through the whole pipeline and say what happened.

It runs on a throwaway database and letter box in a temporary folder, so it never touches the
real data; the directories (staff, participants, procedures) are copied from the data dir.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import shutil
import tempfile
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from mailbot import runtime
from mailbot.bootstrap import REPO_ROOT, App
from mailbot.services.mailbox import Arrival
from mailbot.settings import Settings

EXPLAIN = {
    "duplicate": "already processed (same Message-ID): no letter",
    "follow_up": "joined its case: no second acknowledgement",
    "automated": "automated mail: filed, never answered",
    "unreadable": "unreadable: kept and shown to staff",
    "staff": "staff reply in the thread",
}


def _arrival_time(raw: bytes) -> datetime:
    """The sample's Date header stands in for the server's arrival time, so the demo is repeatable."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    try:
        return parsedate_to_datetime(msg["Date"]).astimezone(timezone.utc)
    except (TypeError, ValueError):
        return datetime.now(timezone.utc)


def play(settings: Settings) -> int:
    samples_dir = settings.data_dir / "samples"
    if not samples_dir.is_dir():
        samples_dir = REPO_ROOT / "data" / "samples"
    samples = sorted(samples_dir.glob("*.eml"))
    if not samples:
        print(f"no sample mail (*.eml) in {samples_dir}")
        return 1
    with tempfile.TemporaryDirectory(prefix="mailbot-demo-") as tmp:
        work = Path(tmp)
        for name in ("staff.toml", "participants.csv", "procedures.toml"):
            for source in (settings.data_dir / name, REPO_ROOT / "data" / name):
                if source.exists():
                    shutil.copy(source, work / name)
                    break
        demo_settings = settings.replace(
            data_dir=work, database_url=f"sqlite:///{work / 'demo.db'}", smtp_host=None, imap_host=None,
            secret="demo-secret",
        )
        print(f"Playing {len(samples)} sample message(s) from {samples_dir}\n")
        for path in samples:
            raw = path.read_bytes()
            received = _arrival_time(raw)
            app = App(demo_settings, now=received)
            outcome = app.ingestor.ingest(Arrival(raw=raw, received_at=received))
            runtime.deliver(app)
            app.engine.dispose()
            what = f"opened case {outcome.ref}" if outcome.action == "new_case" else EXPLAIN.get(outcome.action, "")
            on_case = f" (case {outcome.ref})" if outcome.ref and outcome.action != "new_case" else ""
            print(f"{path.name}: {outcome.kind}{on_case} - {what}")
            for letter in outcome.letters:
                print(f"    letter sent: {letter}")
        print("\nLetters in the outbox (written to a local Maildir):")
        for key, msg in sorted(mailbox.Maildir(str(work / "sent"), create=True).items(),
                               key=lambda kv: kv[1]["Date"] or ""):
            print(f"  to {msg['To']}: {msg['Subject']}  [X-Mailbot-Letter: {msg['X-Mailbot-Letter']}]")
        first = next(iter(sorted(mailbox.Maildir(str(work / "sent")).values(), key=lambda m: m["Date"] or "")), None)
        if first is not None:
            body = email.message_from_bytes(first.as_bytes(), policy=email.policy.default)
            text = body.get_body(preferencelist=("plain",))
            print("\nThe first letter, as the complainant reads it:\n")
            print("\n".join("    " + line for line in (text.get_content() if text else "").splitlines()))
    return 0
