"""The driver behind scripts/compose-smoke.sh (run that; it makes sure Docker and the base images are there).

A Dovecot and an SMTP sink on loopback (the tests' own, tests/servers.py) stand in for the charity's mail
servers. The stack is the project's docker-compose.yml with an override that puts both containers on the host's
network (no bridge is needed, nothing leaves loopback) on free ports. It is built and started from cold; the
bot must become healthy without a traceback, acknowledge one complaint, and answer /healthz and `mailbot status`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.bot import make_mail  # noqa: E402
from tests.servers import DovecotServer, SmtpSink, free_port  # noqa: E402

PROJECT = "mailbotsmoke"


def say(message: str) -> None:
    print(f"compose-smoke: {message}", flush=True)


def override(http_port: int, pg_port: int) -> str:
    health = (f'["CMD", "python", "-c", "import urllib.request; '
              f"urllib.request.urlopen('http://127.0.0.1:{http_port}/healthz', timeout=20)\"]")
    return f"""services:
  mailbot:
    build:
      context: {REPO}
      network: host
    network_mode: host
    environment:
      MAILBOT_DATABASE_URL: postgresql+psycopg://mailbot:smoke@127.0.0.1:{pg_port}/mailbot
      MAILBOT_HTTP_HOST: 127.0.0.1
      MAILBOT_HTTP_PORT: "{http_port}"
    healthcheck:
      test: {health}
      interval: 3s
      timeout: 20s
      retries: 3
  db:
    network_mode: host
    environment:
      PGPORT: "{pg_port}"
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -h 127.0.0.1 -p {pg_port} -U mailbot"]
      interval: 2s
      retries: 30
"""


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="mailbot-smoke-"))
    work.chmod(0o755)
    dovecot = DovecotServer(work / "dovecot")
    dovecot.start()
    sink = SmtpSink(work / "sink")
    sink.start()
    http_port, pg_port = free_port(), free_port()
    (work / ".env").write_text("\n".join([
        "POSTGRES_PASSWORD=smoke", f"MAILBOT_IMAP_HOST={dovecot.host}", f"MAILBOT_IMAP_PORT={dovecot.port}",
        "MAILBOT_IMAP_USER=complaints", "MAILBOT_IMAP_PASSWORD=secret", "MAILBOT_IMAP_SECURITY=none",
        f"MAILBOT_SMTP_HOST={sink.host}", f"MAILBOT_SMTP_PORT={sink.port}", "MAILBOT_SMTP_SECURITY=none",
        "MAILBOT_FIRST_RUN=process-existing", "MAILBOT_SAMPLE_DIRECTORY=allow", "MAILBOT_DIGEST_TIME=off",
        f"MAILBOT_SECRET={secrets.token_hex(32)}", ""]))
    (work / "docker-compose.override.yml").write_text(override(http_port, pg_port))
    # The project's file with the override merged in, less the published ports (which host networking refuses):
    # Compose v1 cannot remove a key in an override, so the merged file is edited, with the YAML library Compose
    # itself runs on (Debian's python3-yaml).
    merged = subprocess.run(["docker-compose", "--project-directory", str(work), "-f", str(REPO / "docker-compose.yml"),
                             "-f", str(work / "docker-compose.override.yml"), "config"], cwd=work, check=True,
                            text=True, capture_output=True).stdout
    smoke_file = work / "docker-compose.smoke.yml"
    smoke_file.write_text(subprocess.run(
        ["/usr/bin/python3", "-c", "import sys, yaml; d = yaml.safe_load(sys.stdin); "
         "[s.pop('ports', None) for s in d['services'].values()]; yaml.safe_dump(d, sys.stdout)"],
        input=merged, check=True, text=True, capture_output=True).stdout)
    compose = ["docker-compose", "-p", PROJECT, "--project-directory", str(work), "-f", str(smoke_file)]

    def run(*args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*compose, *args], cwd=work, check=check, text=True,
                              capture_output=capture, timeout=1800)

    ok = False
    try:
        run("down", "-v", check=False, capture=True)  # anything a previous run left
        began = time.monotonic()
        run("build", "--quiet", "mailbot")
        say(f"built the image in {time.monotonic() - began:.0f} s")
        began = time.monotonic()
        run("up", "-d")
        bot = run("ps", "-q", "mailbot", capture=True).stdout.strip()
        state = ""
        while time.monotonic() - began < 180:
            state = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", bot], text=True,
                                   capture_output=True).stdout.strip()
            if state == "healthy":
                break
            time.sleep(1)
        say(f"the stack came up from cold; the bot's health check says {state or 'nothing'} after "
            f"{time.monotonic() - began:.0f} s")
        if state != "healthy":
            return 1
        sent_at = time.monotonic()
        dovecot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="Nobody called me back",
                                 body="I was promised a call back a week ago."))
        acks: list = []
        while time.monotonic() - sent_at < 60 and not acks:
            acks = [m for m in sink.messages() if m.message["X-Mailbot-Letter"] == "acknowledgement"]
            time.sleep(0.2)
        if not acks:
            say("no acknowledgement within 60 s")
            return 1
        say(f"the complaint was acknowledged {time.monotonic() - sent_at:.1f} s after it reached the mailbox: "
            f"{acks[0].message['Subject']!r} to {', '.join(acks[0].rcpt_tos)}")
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=20) as answer:
            report = json.loads(answer.read())
        say(f"/healthz: {answer.status}, state {report['state']}, instance {report['instance']}, "
            f"schema {report['schema_revision']}, outbox {report['outbox']}")
        status = run("exec", "-T", "mailbot", "mailbot", "status", check=False, capture=True)
        say("mailbot status in the container (exit %d):\n%s" % (status.returncode, status.stdout.rstrip()))
        logs = run("logs", "--no-color", capture=True).stdout
        tracebacks = logs.count("Traceback")
        say(f"tracebacks in the stack's logs: {tracebacks}")
        for line in logs.splitlines():
            if "mailbot_1" in line and ("message <" in line or "letter " in line or "waiting" in line
                                        or "standby" in line or "HTTP listener" in line):
                print("    " + line.split("|", 1)[-1].strip())
        ok = tracebacks == 0 and status.returncode == 0
        return 0 if ok else 1
    finally:
        run("down", "-v", check=False, capture=True)
        sink.stop()
        dovecot.stop(graceful=False)
        shutil.rmtree(work, ignore_errors=True)
        say("passed" if ok else "FAILED")


if __name__ == "__main__":
    sys.exit(main())
