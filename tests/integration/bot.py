"""A harness that runs the real bot against the real test servers, in-process or as the `mailbot` command."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from mailbot import runtime
from mailbot.bootstrap import App
from mailbot.settings import Settings, load_settings
from tests.servers import DovecotServer, SmtpSink

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-for-signing-at-least-32-bytes"


def make_mail(
    frm: str = "Jane Doe <jane@example.com>",
    subject: str = "My complaint",
    body: str = "I am unhappy with the service.",
    to: str = "complaints@1mm.org.uk",
    message_id: str | None = None,
    date: datetime | None = None,
    **headers: str,
) -> bytes:
    """An ordinary message as a mail client writes it; extra headers by keyword (Reply_To -> Reply-To)."""
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(timezone.utc))
    msg["Message-ID"] = message_id or make_msgid(domain="example.com")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def msgid(raw: bytes) -> str:
    return email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"].strip("<>")


@dataclass
class Bot:
    root: Path
    dovecot: DovecotServer
    sink: SmtpSink
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
        env.update({
            # This checkout's code, whichever checkout the editable install points at (a benchmark run from a
            # second work tree would otherwise time the first's code), unless the caller's PYTHONPATH names one.
            "PYTHONPATH": os.pathsep.join([*filter(None, [os.environ.get("PYTHONPATH")]), str(REPO)]),
            "MAILBOT_IMAP_HOST": self.dovecot.host,
            "MAILBOT_IMAP_PORT": str(self.dovecot.port),
            "MAILBOT_IMAP_USER": "complaints",
            "MAILBOT_IMAP_PASSWORD": "secret",
            "MAILBOT_IMAP_SECURITY": "none",
            "MAILBOT_SMTP_HOST": self.sink.host,
            "MAILBOT_SMTP_PORT": str(self.sink.port),
            "MAILBOT_SMTP_SECURITY": "none",
            "MAILBOT_DATA_DIR": str(self.data_dir),
            "MAILBOT_TEMPLATES_DIR": str(REPO / "templates"),
            "MAILBOT_SECRET": SECRET,
            "MAILBOT_IMAP_POLL_INTERVAL": "30",
            # Tests that run on the wall clock must not meet the day's digest after 08:00; the digest's own
            # tests switch it back on.
            "MAILBOT_DIGEST_TIME": "off",
            # Most tests load the mailbox before the first run; the first-run tests unset this.
            "MAILBOT_FIRST_RUN": "process-existing",
            # The tests run on the sample directory with a real (throwaway) mailbox: a trial, as far as it knows.
            "MAILBOT_SAMPLE_DIRECTORY": "allow",
            # Many bots run at once in the tests; the HTTP listener's own tests give it a free port.
            "MAILBOT_HTTP_PORT": "0",
        })
        env.update(self.extra)
        return env

    def settings(self) -> Settings:
        env = self.env()
        overrides = {k[len("MAILBOT_"):].lower(): v for k, v in env.items() if k.startswith("MAILBOT_")}
        return load_settings(**overrides)

    def app(self, now: datetime | None = None) -> App:
        return App(self.settings(), now=now)

    def once(self, now: datetime | None = None) -> dict[str, object]:
        app = self.app(now)
        try:
            return runtime.run_once(app)
        finally:
            app.engine.dispose()

    def append(self, raw: bytes, internaldate: datetime | None = None, folder: str = "INBOX") -> int:
        return self.dovecot.append(raw, folder=folder, internaldate=internaldate)

    def deliver(self, raw: bytes, received: datetime) -> None:
        """Drop a message into the mailbox as a local MTA would, with any arrival time (even a future one,
        which IMAP APPEND refuses); Dovecot reports the file's time as the INTERNALDATE."""
        maildir = self.dovecot.maildir()
        if not (maildir / "new").is_dir():
            # Let Dovecot create the mailbox itself, with its own owner and index files.
            imap = self.dovecot.client()
            try:
                imap.select_folder("INBOX")
            finally:
                imap.logout()
        name = f"{time.time_ns()}.test.{len(raw)}"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(raw)
        tmp.chmod(0o644)
        stamp = received.timestamp()
        os.utime(tmp, (stamp, stamp))
        owner = maildir.stat()
        os.chown(tmp, owner.st_uid, owner.st_gid)
        os.rename(tmp, maildir / "new" / name)

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "mailbot", *args], env=self.env(), cwd=self.root,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"mailbot {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def case_json(self, ref: str) -> dict:
        import json

        return json.loads(self.cli("case", ref, "--json").stdout)

    def cases_json(self) -> list[dict]:
        import json

        return json.loads(self.cli("cases", "--json").stdout)

    def letters(self, template: str | None = None, to: str | None = None, case: str | None = None) -> list:
        """Letters at the sink in arrival order; letters sent in one pass over several connections may
        arrive in any order among themselves, so pick by ``case`` rather than by position there."""
        out = []
        for m in self.sink.messages():
            if template and m.message["X-Mailbot-Letter"] != template:
                continue
            if to and to.lower() not in [r.lower() for r in m.rcpt_tos]:
                continue
            if case and m.message["X-Mailbot-Case"] != case:
                continue
            out.append(m)
        return out


class Daemon:
    """`mailbot run` as a real process, stopped with SIGTERM like a service manager would."""

    def __init__(self, bot: Bot, name: str = "daemon", **env: str) -> None:
        self.bot = bot
        self.log = bot.root / f"{name}.log"
        self.env = env  # settings of this instance's own (MAILBOT_HTTP_PORT, say)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "mailbot", "run"], env={**self.bot.env(), **self.env},
                                         cwd=self.bot.root, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def stop(self, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"mailbot run did not stop on SIGTERM:\n{self.log.read_text()[-3000:]}") from None

    def wait_log(self, needle: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.exists() and needle in self.log.read_text():
                return
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in daemon log:\n{self.log.read_text()[-3000:]}")


def new_bot(root: Path, dovecot: DovecotServer, sink: SmtpSink) -> Bot:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("staff.toml", "participants.csv"):
        shutil.copy(REPO / "data" / name, data / name)
    return Bot(root=root, dovecot=dovecot, sink=sink)


def staff_reply(notification, frm: str, body: str, quote: bool = True, to: str | None = None,
                subject: str | None = None) -> bytes:
    """What a member of staff's mail client sends when they answer a notification: to its Reply-To,
    threaded, with the notification quoted below (as Gmail/Outlook do)."""
    original = notification.message
    quoted = ""
    if quote:
        old = original.get_body(preferencelist=("plain",)).get_content()
        quoted = "\n\nOn Mon, 16 Nov 2026 at 10:05, One Million Mentors <complaints@1mm.org.uk> wrote:\n" + \
            "\n".join("> " + line for line in old.splitlines())
    return make_mail(
        frm=frm, to=to or original["Reply-To"], subject=subject or f"Re: {original['Subject']}",
        body=body + quoted, In_Reply_To=original["Message-ID"], References=original["Message-ID"],
    )


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``check`` until it is true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
