"""Issue 14, point 3, from outside: /healthz and `mailbot status` turn red when the mailbox refuses the bot or
cannot be reached, and green again after; /metrics counts what happened; the administrator gets one alert per
condition however long it lasts, then one "recovered"."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

from tests.integration.bot import Bot, Daemon, make_mail, wait_for
from tests.servers import free_port

ADMIN = "ops@1mm.org.uk"


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def health(port: int) -> tuple[int, dict]:
    code, body = get(port, "/healthz")
    return code, json.loads(body)


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    assert found, f"{name} not in /metrics:\n{text}"
    return float(found.group(1))


def test_healthz_and_metrics_show_what_the_daemon_did(bot: Bot) -> None:
    port = free_port()
    daemon = Daemon(bot, MAILBOT_HTTP_PORT=str(port))
    daemon.start()
    try:
        daemon.wait_log("IMAP intake idling", timeout=30)
        code, report = health(port)
        assert code == 200 and report["state"] == "healthy" and report["instance"] == "active"
        assert report["last_fetch"] and report["schema_revision"]
        bot.append(make_mail(frm="jane@example.com", subject="Complaint"))
        wait_for(lambda: len(bot.letters()) == 2, 30, "the acknowledgement and the staff notification")
        wait_for(lambda: 'mailbot_letters_total{state="sent"} 2.0' in get(port, "/metrics")[1].decode(), 10,
                 "both letters counted")
        code, body = get(port, "/metrics")
        text = body.decode()
        assert code == 200
        assert metric(text, 'mailbot_messages_total{verdict="new_case"}') == 1.0
        assert metric(text, "mailbot_delivery_seconds_count") == 2.0
        assert metric(text, 'mailbot_outbox_letters{state="sent"}') == 2.0
        assert metric(text, 'mailbot_fetch_errors_total{kind="sign_in"}') == 0.0
    finally:
        assert daemon.stop() == 0


def test_a_refused_sign_in_turns_healthz_red_alerts_once_and_recovers(bot: Bot) -> None:
    port = free_port()
    bot.extra.update({"MAILBOT_ADMIN_EMAIL": ADMIN, "MAILBOT_SIGN_IN_RETRY": "1"})
    daemon = Daemon(bot, MAILBOT_HTTP_PORT=str(port))
    daemon.start()
    try:
        daemon.wait_log("IMAP intake idling", timeout=30)
        assert health(port)[0] == 200
        bot.dovecot.add_user("complaints", "changed-by-someone")  # the mailbox's password changed under the bot
        bot.dovecot.restart(graceful=False)  # drops the idling connection: the bot signs in again
        wait_for(lambda: health(port)[0] == 503, 30, "/healthz to fail")
        code, report = health(port)
        assert report["state"] == "failing" and any("sign-in refused" in r for r in report["reasons"])
        assert report["sign_in_state"]["imap"] == "refused"
        wait_for(lambda: metric(get(port, "/metrics")[1].decode(), 'mailbot_fetch_errors_total{kind="sign_in"}') >= 3,
                 30, "three refused sign-ins")
        alerts = bot.letters("admin-alert", to=ADMIN)
        assert len(alerts) == 1 and alerts[0].message["Subject"].startswith("mailbot alert: ")
        assert "mailbot auth test" in alerts[0].message.get_body(preferencelist=("plain",)).get_content()

        bot.dovecot.add_user("complaints", "secret")  # put right
        wait_for(lambda: health(port)[0] == 200, 30, "/healthz to recover")
        wait_for(lambda: len(bot.letters("admin-alert", to=ADMIN)) == 2, 30, "the recovered letter")
        recovered = bot.letters("admin-alert", to=ADMIN)[1]
        assert recovered.message["Subject"].startswith("mailbot recovered: ")
        assert "mailbot status" not in recovered.message["Subject"]
    finally:
        assert daemon.stop() == 0
    assert len(bot.letters("admin-alert", to=ADMIN)) == 2  # nothing more after it cleared


def test_status_is_red_when_the_mailbox_cannot_be_reached_for_15_minutes_and_green_after(bot: Bot) -> None:
    t0 = datetime.now(timezone.utc)
    assert bot.cli("run", "--once").returncode == 0
    bot.dovecot.stop(graceful=False)
    try:
        failed = bot.cli("run", "--once", "--now", (t0 + timedelta(minutes=1)).isoformat(), check=False)
        assert failed.returncode == 3
        later = bot.cli("status", "--json", "--now", (t0 + timedelta(minutes=17)).isoformat(), check=False)
        assert later.returncode == 3
        report = json.loads(later.stdout)
        assert report["state"] == "failing" and any("not read since" in r for r in report["reasons"])
    finally:
        bot.dovecot.start()
    assert bot.cli("run", "--once", "--now", (t0 + timedelta(minutes=18)).isoformat()).returncode == 0
    ok = bot.cli("status", "--json", "--now", (t0 + timedelta(minutes=18, seconds=30)).isoformat())
    assert json.loads(ok.stdout)["state"] == "healthy"


def test_status_says_when_no_bot_is_running_and_the_mailbox_goes_unread(bot: Bot) -> None:
    t0 = datetime.now(timezone.utc)
    assert bot.cli("run", "--once").returncode == 0
    result = bot.cli("status", "--json", "--now", (t0 + timedelta(minutes=20)).isoformat(), check=False)
    assert result.returncode == 3
    report = json.loads(result.stdout)
    assert report["running"] is None and any("no mailbot is running" in r for r in report["reasons"])


def test_a_standby_answers_healthz_as_a_standby(bot: Bot) -> None:
    active, standby = Daemon(bot), Daemon(bot, "standby", MAILBOT_HTTP_PORT=str(port := free_port()))
    active.start()
    try:
        active.wait_log("IMAP intake idling", timeout=30)
        standby.start()
        standby.wait_log("standby: ", timeout=30)
        code, report = health(port)
        assert code == 200 and report["instance"] == "standby"
    finally:
        assert standby.stop() == 0
        assert active.stop() == 0
