"""Peak memory of `mailbot run --once` (the bot and its SMTP worker) taking in one complaint with a large attachment.

    .venv/bin/python bench/large_mail.py [MEGABYTES] [--count N]   # default: one 30 MB attachment (42.5 MB as mail)

Prints the message's size, the peak RSS of the bot and its SMTP worker together, and the peak above an empty
run's, as a multiple of the message (issue 11: no worse than a few times the message size). With ``--count N``,
N such complaints (from N senders) wait in the mailbox at once, as after an outage: the peak should stay near
one message's, not grow with N.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from tests.integration.bot import new_bot  # noqa: E402
from tests.servers import DovecotServer, SmtpSink  # noqa: E402


def complaint(attachment_bytes: int, sender: str = "jane@example.com") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "complaints@1mm.org.uk", "Video evidence"
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content("See the attached video.")
    if attachment_bytes:
        msg.add_attachment(os.urandom(attachment_bytes), maintype="video", subtype="quicktime", filename="video.mov")
    return msg.as_bytes()


def peak_rss(attachment_bytes: int, count: int = 1) -> tuple[int, int]:
    """(the message's size, the peak RSS of `run --once` and its children) for ``count`` such complaints."""
    root = Path(tempfile.mkdtemp(prefix="mailbot-large-"))
    root.chmod(0o755)
    try:
        with DovecotServer(root / "dovecot") as dovecot, SmtpSink(root / "sink") as sink:
            bot = new_bot(root / "bot", dovecot, sink)
            imap = dovecot.client()
            try:
                for n in range(count):
                    raw = complaint(attachment_bytes, f"person{n}@example.com")
                    imap.append("INBOX", raw)
            finally:
                imap.logout()
            proc = subprocess.Popen([sys.executable, "-m", "mailbot", "run", "--once"], env=bot.env(), cwd=bot.root,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            watched = psutil.Process(proc.pid)
            peak = 0
            while proc.poll() is None:
                try:
                    peak = max(peak, watched.memory_info().rss
                               + sum(child.memory_info().rss for child in watched.children(recursive=True)))
                except psutil.NoSuchProcess:
                    pass
                time.sleep(0.01)
            if proc.returncode != 0 or sink.count() != 2 * count:
                raise SystemExit(f"the run failed: exit {proc.returncode}, {sink.count()} letters")
            return len(raw), peak
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("megabytes", nargs="?", type=float, default=30.0, help="attachment size")
    parser.add_argument("--count", type=int, default=1, help="complaints of that size waiting at once")
    args = parser.parse_args()
    _, empty = peak_rss(0)
    size, peak = peak_rss(int(args.megabytes * 1024 * 1024), args.count)
    print(f"{args.count} message(s) of {size / 1e6:.1f} MB: peak RSS {peak / 1e6:.0f} MB (an empty run: "
          f"{empty / 1e6:.0f} MB); {(peak - empty) / size:.1f}x one message above the empty run")


if __name__ == "__main__":
    main()
