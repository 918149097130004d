"""The SMTP edge against a real server: envelopes, refusals and the addresses that need care."""

from __future__ import annotations

import asyncio

import pytest

from mailbot.mail.smtp import SmtpTransport
from mailbot.services.delivery import PermanentFailure, TemporaryFailure
from tests.integration.bot import make_mail
from tests.servers import SmtpSink

SENDER = "complaints@1mm.org.uk"


def send_all(sink: SmtpSink, letters: list[tuple[str, list[str]]]) -> list[str | None | Exception]:
    """Send each (sender, recipients) letter over one kept-open connection; what each send gave."""

    async def run() -> list[str | None | Exception]:
        transport = SmtpTransport(sink.host, sink.port, "none")
        results: list[str | None | Exception] = []
        try:
            for n, (sender, recipients) in enumerate(letters):
                try:
                    results.append(await transport.send(make_mail(subject=f"Letter {n}"), sender, recipients))
                except (PermanentFailure, TemporaryFailure) as exc:
                    results.append(exc)
        finally:
            await transport.close()
        return results

    return asyncio.run(run())


def test_letters_arrive_with_their_envelope(smtp_sink: SmtpSink) -> None:
    results = send_all(smtp_sink, [(SENDER, ["jane@example.org"]), (SENDER, ["a@example.org", "b@example.net"])])
    assert results == [None, None]
    arrived = smtp_sink.wait_for(2)
    assert [(m.mail_from, m.rcpt_tos) for m in arrived] == [
        (SENDER, ["jane@example.org"]), (SENDER, ["a@example.org", "b@example.net"])]
    assert [m.message["Subject"] for m in arrived] == ["Letter 0", "Letter 1"]


def test_a_refused_recipient_is_noted_and_the_others_still_get_the_letter(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse_recipients({"gone@example.org": 550})
    [note] = send_all(smtp_sink, [(SENDER, ["gone@example.org", "here@example.org"])])
    assert isinstance(note, str) and note.startswith("partly refused: gone@example.org: 550")
    assert [m.rcpt_tos for m in smtp_sink.wait_for(1)] == [["here@example.org"]]


@pytest.mark.parametrize("code, failure", [(550, PermanentFailure), (450, TemporaryFailure)])
def test_a_letter_whose_every_recipient_is_refused_fails_and_the_connection_goes_on(
        smtp_sink: SmtpSink, code: int, failure: type[Exception]) -> None:
    smtp_sink.refuse_recipients({"gone@example.org": code})
    refused, after = send_all(smtp_sink, [(SENDER, ["gone@example.org"]), (SENDER, ["here@example.org"])])
    assert isinstance(refused, failure) and f"gone@example.org: {code}" in str(refused)
    assert after is None
    assert [m.rcpt_tos for m in smtp_sink.wait_for(1)] == [["here@example.org"]]


def test_unusual_but_valid_addresses_are_sent_as_written(smtp_sink: SmtpSink) -> None:
    quoted, international = '"jane doe"@example.org', "zoë@example.org"
    assert send_all(smtp_sink, [(SENDER, [quoted]), (SENDER, [international])]) == [None, None]
    assert [m.rcpt_tos for m in smtp_sink.wait_for(2)] == [[quoted], [international]]


@pytest.mark.parametrize("address", ["x@example.org> NOTIFY=NEVER", "x@example.org\r\nRCPT TO:<y@example.org>"])
def test_extra_smtp_text_after_an_address_never_reaches_the_command_line(smtp_sink: SmtpSink, address: str) -> None:
    # aiosmtplib keeps the address itself and drops the rest; nothing rides along to the server.
    assert send_all(smtp_sink, [(SENDER, [address])]) == [None]
    assert [m.rcpt_tos for m in smtp_sink.wait_for(1)] == [["x@example.org"]]


def test_an_address_that_cannot_go_on_a_command_line_is_refused_for_good_and_never_sent(smtp_sink: SmtpSink) -> None:
    [result] = send_all(smtp_sink, [(SENDER, ["x y@example.org"])])
    assert isinstance(result, PermanentFailure) and "unsendable address" in str(result)
    assert smtp_sink.messages() == []
