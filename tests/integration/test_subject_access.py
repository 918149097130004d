"""Issue 17, subject access: `mailbot export-person EMAIL DIR` holds all of one person's mail and nobody else's,
and lists (never writes out) what staff wrote among themselves."""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.integration.bot import Bot, make_mail, staff_reply

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)
PRIYA = "Priya Shah <priya.shah@1mm.org.uk>"


def test_an_export_holds_all_of_one_persons_mail_and_nobody_elses(bot: Bot, tmp_path: Path) -> None:
    bot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="Missed call", body="Nobody called me."),
               internaldate=T0)
    bot.append(make_mail(frm="Ken Lee <ken@example.com>", subject="Other", body="Ken's own complaint."),
               internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    [note] = bot.letters("staff-notification", case="1MM-2026-0001")
    bot.append(staff_reply(note, PRIYA, "#note\nShe sounded upset; check the rota first."), internaldate=T0)
    bot.append(staff_reply(note, PRIYA, "Dear Jane, we are sorry: we will call you on Friday."), internaldate=T0)
    bot.once(now=T0 + timedelta(minutes=5))

    out = tmp_path / "export"
    result = bot.cli("export-person", "Jane@Example.com", str(out))
    assert "index.html" in result.stdout
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "index.html" in files and "1MM-2026-0001/events.json" in files and "1MM-2026-0001/case.json" in files
    assert not any(f.startswith("1MM-2026-0002") for f in files)  # Ken's case is not hers
    # Her case as `mailbot case --json` summarises it, and its entry in the register (none here) beside it.
    case_file = json.loads((out / "1MM-2026-0001" / "case.json").read_text())
    summary = {k: v for k, v in bot.case_json("1MM-2026-0001").items()
               if k not in ("messages", "mentor_actions", "events")}
    assert (case_file["case"], case_file["restriction"]) == (summary, None)
    emls = [f for f in files if f.endswith(".eml")]
    assert any("from-you-new_case" in f for f in emls)
    assert any("to-you-acknowledgement" in f for f in emls) and any("to-you-staff-reply" in f for f in emls)
    everything = b"".join((out / f).read_bytes() for f in files)
    assert b"ken@example.com" not in everything and b"Ken's own complaint" not in everything
    assert b"check the rota" not in everything  # the internal note is listed, not written out
    index = (out / "index.html").read_text()
    assert "internal note" in index and "staff notification" in index
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((out / f).stat().st_mode) == 0o600 for f in files)


def test_an_export_refuses_a_folder_that_is_not_empty(bot: Bot, tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    result = bot.cli("export-person", "jane@example.com", str(tmp_path), check=False)
    assert result.returncode == 2 and "is not empty" in result.stderr


def test_an_erased_person_cannot_be_found_anywhere_and_the_figures_stay(bot: Bot) -> None:
    bot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="Jane's missed call",
                         body="Nobody called me, Jane Doe, back."), internaldate=T0)
    bot.append(make_mail(frm="Ken Lee <ken@example.com>", subject="Other", body="Ken's own complaint."),
               internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    refused = bot.cli("erase-person", "jane@example.com", "--reason", "asked in writing", check=False)
    assert refused.returncode == 1 and "1MM-2026-0001 is still open" in refused.stderr
    [note] = bot.letters("staff-notification", case="1MM-2026-0001")
    bot.append(staff_reply(note, PRIYA, "#resolve upheld\nDear Jane, we are sorry."), internaldate=T0)
    bot.once(now=T0 + timedelta(hours=1))
    before = {c["ref"]: c for c in bot.cases_json()}

    result = bot.cli("erase-person", "jane@example.com", "--reason", "asked in writing")
    assert "erased: 1 case(s)" in result.stdout
    database = (bot.data_dir / "mailbot.db").read_bytes()
    for needle in (b"jane@example.com", b"Jane Doe", b"Jane's missed call", b"Nobody called me"):
        assert needle not in database, needle
    assert b"ken@example.com" in database  # nobody else's
    cases = {c["ref"]: c for c in bot.cases_json()}
    assert "jane@example.com" not in bot.cli("cases", "--json").stdout + bot.cli("case", "1MM-2026-0001").stdout
    for key in ("status", "procedure", "category", "opened_at", "stage", "channel"):
        assert cases["1MM-2026-0001"][key] == before["1MM-2026-0001"][key], key
    assert cases["1MM-2026-0002"] == before["1MM-2026-0002"]

    # Mail from her afterwards is new, even a reply to our old letter.
    [ack] = bot.letters("acknowledgement", to="jane@example.com")
    bot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="Re: [1MM-2026-0001] We have received it",
                         In_Reply_To=ack.message["Message-ID"]), internaldate=T0 + timedelta(days=1))
    bot.once(now=T0 + timedelta(days=1, seconds=1))
    assert [c["complainant"] for c in bot.cases_json()][-1] == "jane@example.com"
    assert len(bot.cases_json()) == 3


def test_a_request_for_erasure_by_email_is_its_own_case_and_its_sender_cannot_close_it(bot: Bot) -> None:
    """Through Dovecot and the SMTP sink: the words open a request on the law's clock; the person's own reply
    carrying a staff command is their words, not a command."""
    bot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="Right to be forgotten",
                         body="Please delete my details from all your systems."), internaldate=T0)
    bot.once(now=T0 + timedelta(seconds=1))
    [ack] = bot.letters("data-request-acknowledgement", to="jane@example.com")
    assert "by the end of Wednesday 16 December 2026" in ack.message.get_body(("plain",)).get_content()
    assert bot.letters("acknowledgement") == []
    case = bot.case_json("1MM-2026-0001")
    assert (case["category"], case["procedure"], case["status"]) == ("data_protection", "data_request", "open")

    bot.append(make_mail(frm="Jane Doe <jane@example.com>", subject="Re: [1MM-2026-0001] We have received it",
                         body="#resolve answered\nDone, thanks.", In_Reply_To=ack.message["Message-ID"]),
               internaldate=T0 + timedelta(minutes=5))
    bot.once(now=T0 + timedelta(minutes=6))
    assert bot.case_json("1MM-2026-0001")["status"] == "open"
    assert bot.letters("data-request-answered") == []
