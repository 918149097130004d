"""The SMTP edge against a real server: envelopes, refusals and the addresses that need care."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from mailbot.mail.smtp import SmtpTransport
from mailbot.mail.smtp_process import SmtpProcess, WorkerUnavailable
from mailbot.services.transport import PermanentFailure, TemporaryFailure
from tests.integration.bot import make_mail
from tests.servers import ScriptedSmtp, SmtpSink, self_signed_cert

SENDER = "complaints@1mm.org.uk"
Sender = Callable[[SmtpSink, list[tuple[str, list[str]]]], list[str | None | Exception]]


def _send(sink: SmtpSink, kind: str, letters: list[tuple[bytes, str, list[str]]],
          security: str = "none") -> list[str | None | Exception]:
    """Send each (bytes, sender, recipients) letter, one after another, by the daemon's own transport
    ("in-process") or `run --once`'s child process; what each send gave."""
    async def run() -> list[str | None | Exception]:
        if kind == "in-process":
            transport: SmtpTransport | SmtpProcess = SmtpTransport(sink.host, sink.port, security)
        else:
            transport = SmtpProcess(sink.host, sink.port, security, connections=2)
        results: list[str | None | Exception] = []
        try:
            for raw, sender, recipients in letters:
                try:
                    results.append(await transport.send(raw, sender, recipients))
                except (PermanentFailure, TemporaryFailure) as exc:
                    results.append(exc)
        finally:
            await transport.close()
            if isinstance(transport, SmtpProcess):
                await transport.stop()
        return results

    return asyncio.run(run())


def _on_the_wire(raw: bytes) -> bytes:
    """``raw`` with every line ending CRLF, as the bot writes its letters."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture(params=[True, False], ids=["pipelining server", "one-command server"])
def smtp_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmtpSink]:
    """Every test here against a server that offers PIPELINING (RFC 2920; every server the bot is meant for) and
    one that does not: the letters, refusals and failures must come out alike."""
    with SmtpSink(tmp_path / "sink", pipelining=request.param) as sink:
        yield sink


@pytest.fixture(params=["in-process", "child process"])
def send_all(request: pytest.FixtureRequest, smtp_sink: SmtpSink) -> Callable[..., list[str | None | Exception]]:
    """Send each (sender, recipients) letter, one after another; what each send gave. Both transports:
    the daemon's own connections and `run --once`'s child process must answer alike."""

    def send(sink: SmtpSink, letters: list[tuple[str, list[str]]]) -> list[str | None | Exception]:
        return _send(sink, request.param, [(_on_the_wire(make_mail(subject=f"Letter {n}")), sender, recipients)
                                           for n, (sender, recipients) in enumerate(letters)])

    return send


def test_letters_arrive_with_their_envelope(smtp_sink: SmtpSink, send_all: Sender) -> None:
    results = send_all(smtp_sink, [(SENDER, ["jane@example.org"]), (SENDER, ["a@example.org", "b@example.net"])])
    assert results == [None, None]
    arrived = smtp_sink.wait_for(2)
    assert [(m.mail_from, m.rcpt_tos) for m in arrived] == [
        (SENDER, ["jane@example.org"]), (SENDER, ["a@example.org", "b@example.net"])]
    assert not any(m.tls for m in arrived)  # security "none": the sink's record of TLS says so too
    assert [m.message["Subject"] for m in arrived] == ["Letter 0", "Letter 1"]


DOTTED_BODY = [b".", b"..", b".a line that begins with a dot", b"a dot . inside", b"", b"the end.", b". "]


@pytest.mark.parametrize("kind", ["in-process", "child process"])
@pytest.mark.parametrize("line_end", [b"\r\n", b"\n"])
def test_a_letter_arrives_byte_for_byte_with_the_dots_that_begin_its_lines(
        smtp_sink: SmtpSink, kind: str, line_end: bytes) -> None:
    """A line that begins with a dot goes out with it doubled (RFC 5321 4.5.2), so the server keeps it, and a
    lone "." line does not end the letter early. The bot's letters end every line in CRLF and are sent as they
    are; a letter with bare LFs (none of the bot's) goes out with CRLFs, as aiosmtplib sends it."""
    headers = [b"From: complaints@1mm.org.uk", b"To: jane@example.org", b"Subject: Dots", b""]
    raw = line_end.join(headers + DOTTED_BODY) + line_end
    assert _send(smtp_sink, kind, [(raw, SENDER, ["jane@example.org"])]) == [None]
    [arrived] = smtp_sink.wait_for(1)
    assert arrived.raw == raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.mark.parametrize("kind", ["in-process", "child process"])
@pytest.mark.parametrize("code, failure", [(550, PermanentFailure), (451, TemporaryFailure)])
def test_a_letter_refused_at_its_end_fails_as_the_server_says_and_the_next_one_is_sent(
        smtp_sink: SmtpSink, kind: str, code: int, failure: type[Exception]) -> None:
    smtp_sink.refuse(code, times=1)
    # CRLF throughout, as the bot writes its letters.
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    refused, after = _send(smtp_sink, kind, [(raw, SENDER, ["jane@example.org"]) for raw in letters])
    assert isinstance(refused, failure) and str(code) in str(refused)
    assert after is None
    assert [m.message["Subject"] for m in smtp_sink.wait_for(1)] == ["Letter 1"]


def test_a_refused_recipient_is_noted_and_the_others_still_get_the_letter(
        smtp_sink: SmtpSink, send_all: Sender) -> None:
    smtp_sink.refuse_recipients({"gone@example.org": 550})
    [note] = send_all(smtp_sink, [(SENDER, ["gone@example.org", "here@example.org"])])
    assert isinstance(note, str) and note.startswith("partly refused: gone@example.org: 550")
    assert [m.rcpt_tos for m in smtp_sink.wait_for(1)] == [["here@example.org"]]


@pytest.mark.parametrize("code, failure", [(550, PermanentFailure), (450, TemporaryFailure)])
def test_a_letter_whose_every_recipient_is_refused_fails_and_the_connection_goes_on(
        smtp_sink: SmtpSink, send_all: Sender, code: int, failure: type[Exception]) -> None:
    smtp_sink.refuse_recipients({"gone@example.org": code})
    refused, after = send_all(smtp_sink, [(SENDER, ["gone@example.org"]), (SENDER, ["here@example.org"])])
    assert isinstance(refused, failure) and f"gone@example.org: {code}" in str(refused)
    assert after is None
    assert [m.rcpt_tos for m in smtp_sink.wait_for(1)] == [["here@example.org"]]


def test_unusual_but_valid_addresses_are_sent_as_written(smtp_sink: SmtpSink, send_all: Sender) -> None:
    quoted, international = '"jane doe"@example.org', "zoë@example.org"
    assert send_all(smtp_sink, [(SENDER, [quoted]), (SENDER, [international])]) == [None, None]
    assert [m.rcpt_tos for m in smtp_sink.wait_for(2)] == [[quoted], [international]]


@pytest.mark.parametrize("address", ["x@example.org> NOTIFY=NEVER", "x@example.org\r\nRCPT TO:<y@example.org>"])
def test_extra_smtp_text_after_an_address_never_reaches_the_command_line(
        smtp_sink: SmtpSink, send_all: Sender, address: str) -> None:
    # aiosmtplib keeps the address itself and drops the rest; nothing rides along to the server.
    assert send_all(smtp_sink, [(SENDER, [address])]) == [None]
    assert [m.rcpt_tos for m in smtp_sink.wait_for(1)] == [["x@example.org"]]


@pytest.mark.parametrize("address", ["x@example.org> NOTIFY=NEVER", "x@example.org\r\nRCPT TO:<y@example.org>"])
def test_extra_smtp_text_in_an_address_named_next_never_rides_ahead_with_the_letter_before(
        smtp_sink: SmtpSink, address: str) -> None:
    """A letter named next goes ahead only if its addresses are plain: this one is not, so its commands are not
    written after the text before (where nothing would check them); it goes by itself, its address checked."""
    letters = [(_on_the_wire(make_mail(subject="Letter 0")), SENDER, ["jane@example.org"]),
               (_on_the_wire(make_mail(subject="Letter 1")), SENDER, [address])]

    async def run() -> list[str | None]:
        transport = SmtpTransport(smtp_sink.host, smtp_sink.port, "none")
        try:
            return [await transport.send(*letters[0], following=letters[1]), await transport.send(*letters[1])]
        finally:
            await transport.close()

    assert asyncio.run(run()) == [None, None]
    assert [m.rcpt_tos for m in smtp_sink.wait_for(2)] == [["jane@example.org"], ["x@example.org"]]


def test_an_address_that_cannot_go_on_a_command_line_is_refused_for_good_and_never_sent(
        smtp_sink: SmtpSink, send_all: Sender) -> None:
    [result] = send_all(smtp_sink, [(SENDER, ["x y@example.org"])])
    assert isinstance(result, PermanentFailure) and "unsendable address" in str(result)
    assert smtp_sink.messages() == []


def test_a_worker_process_that_dies_fails_its_letters_for_a_retry_and_the_next_letter_starts_a_new_one(
        smtp_sink: SmtpSink) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # takes the connection, never greets: the letters stay in hand

    async def run() -> tuple[list[object], str | None]:
        smtp = SmtpProcess("127.0.0.1", silent.getsockname()[1], "none", connections=2)
        await smtp.start()
        try:
            in_hand = [asyncio.create_task(smtp.send(make_mail(subject=f"In hand {n}"), SENDER, ["a@example.org"]))
                       for n in range(3)]
            await asyncio.sleep(0.3)
            assert smtp._proc is not None and not any(task.done() for task in in_hand)
            smtp._proc.send_signal(signal.SIGKILL)
            outcomes = await asyncio.gather(*in_hand, return_exceptions=True)
            smtp.config["port"] = smtp_sink.port  # the next child talks to a server that answers
            after = await smtp.send(make_mail(subject="After"), SENDER, ["b@example.org"])
        finally:
            await smtp.stop()
        return outcomes, after

    try:
        outcomes, after = asyncio.run(run())
    finally:
        silent.close()
    assert [str(o) for o in outcomes] == ["the SMTP worker process stopped before the server answered"] * 3
    assert all(isinstance(o, TemporaryFailure) for o in outcomes)  # retried later, as after a dropped connection
    assert after is None
    assert [m.message["Subject"] for m in smtp_sink.wait_for(1)] == ["After"]


def test_a_worker_process_that_cannot_start_says_so_and_its_letters_wait_for_a_retry(smtp_sink: SmtpSink) -> None:
    async def run() -> Exception | None:
        smtp = SmtpProcess(smtp_sink.host, smtp_sink.port, "none", python="/bin/false")
        with pytest.raises(WorkerUnavailable, match="did not start"):
            await smtp.start()
        try:
            await smtp.send(make_mail(), SENDER, ["a@example.org"])
        except TemporaryFailure as exc:
            return exc
        finally:
            await smtp.stop()
        return None

    assert "did not start" in str(asyncio.run(run()))
    assert smtp_sink.messages() == []


def test_a_worker_process_whose_parent_goes_away_drops_the_letters_in_hand_at_once() -> None:
    # Finishing them would send letters that nobody is left to mark as sent (they would go again on restart).
    silent = socket.create_server(("127.0.0.1", 0))  # the letters stay in hand: the server never greets

    async def run() -> int | None:
        smtp = SmtpProcess("127.0.0.1", silent.getsockname()[1], "none", connections=2)
        await smtp.start()
        proc = smtp._proc
        assert proc is not None and proc.stdin is not None
        in_hand = [asyncio.create_task(smtp.send(make_mail(), SENDER, ["a@example.org"])) for _ in range(2)]
        await asyncio.sleep(0.3)
        proc.stdin.close()  # what the child sees when its parent dies
        try:
            return await asyncio.wait_for(proc.wait(), timeout=5)  # not after the 30 s SMTP timeout
        finally:
            await asyncio.gather(*in_hand, return_exceptions=True)
            await smtp.stop()

    try:
        assert asyncio.run(run()) == 0
    finally:
        silent.close()


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining server", "one-command server"])
@pytest.mark.parametrize("silent_after", ["MAIL", "RCPT", "DATA", "the letter"])
def test_a_server_that_stops_answering_is_given_up_on_after_the_timeout_and_the_next_letter_reconnects(
        silent_after: str, pipelining: bool) -> None:
    """A server that goes quiet part-way through a letter: the letter waits for a retry (never sent twice, never
    failed for good) once the timeout has passed, not minutes later; the next letter starts a new connection."""

    async def run() -> tuple[list[object], float, int]:
        connections = [0]

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections[0] += 1
            quiet = connections[0] == 1  # the first connection goes quiet; later ones answer
            writer.write(b"220 stalling ESMTP\r\n")
            in_data = False
            while line := await reader.readline():
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        if not (quiet and silent_after == "the letter"):
                            writer.write(b"250 queued\r\n")
                    continue
                verb = line[:4].upper().decode()
                if quiet and verb == silent_after:
                    continue
                if verb == "EHLO":
                    writer.write(b"250-stalling\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"")
                                 + b"250 SIZE 1000000\r\n")
                elif verb == "DATA":
                    writer.write(b"354 go ahead\r\n")
                    in_data = True
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 ok\r\n")
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = SmtpTransport("127.0.0.1", port, "none", timeout=0.4)
        results: list[object] = []
        began = asyncio.get_running_loop().time()
        try:
            for n in range(2):
                try:
                    # Bounded here too, so a timeout that does not work fails the test instead of hanging it.
                    results.append(await asyncio.wait_for(transport.send(
                        _on_the_wire(make_mail(subject=f"Letter {n}")), SENDER, ["jane@example.org"]), 10))
                except (PermanentFailure, TemporaryFailure) as exc:
                    results.append(exc)
            took = asyncio.get_running_loop().time() - began
        finally:
            await transport.close()
            server.close()
        return results, took, connections[0]

    results, took, connections = asyncio.run(run())
    assert isinstance(results[0], TemporaryFailure), results
    assert "Timed out waiting for server response" in str(results[0])  # what the outbox row's last error says
    assert results[1] is None
    assert connections == 2
    assert 0.4 <= took < 5


def _send_scripted(letters: list[bytes], pipelining: bool, answers: list[dict[bytes, bytes]],
                   tls: ssl.SSLContext | None = None, patience: tuple[float, ...] = (10,),
                   recipients: tuple[str, ...] = ("jane@example.org",), following: dict[int, bytes] | None = None,
                   group_after: float = 0.0) -> tuple[list[object], dict[str, list[object]]]:
    """Send ``letters`` one after another through one SmtpTransport to a scripted server (over TLS from the first
    byte with ``tls``, the server's context); the n-th connection answers by ``answers[n]`` (the last for any
    after; an empty answer is none, ever). The n-th send is cancelled after ``patience[n]`` seconds (the last for
    any after), and gives "cancelled"; it names ``following[n]`` as the letter that comes next, as the deliverer's
    workers do. The server's replies to a group come ``group_after`` seconds late. What each send gave, and the
    server's log."""
    log = ScriptedSmtp.new_log()

    async def run() -> list[object]:
        server = await asyncio.get_running_loop().create_server(
            lambda: ScriptedSmtp(pipelining, answers[min(len(log["connections"]), len(answers) - 1)], log,
                                 group_after=group_after),
            "127.0.0.1", 0, ssl=tls)
        transport = SmtpTransport("127.0.0.1", server.sockets[0].getsockname()[1], "ssl" if tls else "none",
                                  timeout=2)
        results: list[object] = []
        try:
            for n, raw in enumerate(letters):
                try:
                    after = (following or {}).get(n)
                    results.append(await asyncio.wait_for(transport.send(
                        raw, SENDER, list(recipients), following=(after, SENDER, list(recipients)) if after else None),
                        patience[min(n, len(patience) - 1)]))
                except (PermanentFailure, TemporaryFailure) as exc:
                    results.append(exc)
                except TimeoutError:
                    results.append("cancelled")
        finally:
            await transport.close()
            server.close()
        return results

    return asyncio.run(run()), log


class _UntilReset(dict[bytes, bytes]):
    """A scripted server's answers until the client says RSET (after a refusal); the plain answers after it."""

    def get(self, verb: bytes, default: bytes) -> bytes:  # type: ignore[override]
        if verb == b"RSET":
            self.clear()
        return super().get(verb, default)


def test_a_server_offering_pipelining_gets_each_letters_commands_in_one_group_and_then_its_text() -> None:
    """Two round trips a letter instead of four. The server answers nothing until the group's DATA has come, so a
    client that waited for each reply would time out instead."""
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters, pipelining=True, answers=[{}])
    assert results == [None, None]
    groups = [read for read in log["reads"] if isinstance(read, bytes) and read.startswith(b"MAIL FROM:")]
    assert groups == [b"MAIL FROM:<complaints@1mm.org.uk> SIZE=%d\r\nRCPT TO:<jane@example.org>\r\nDATA\r\n"
                      % len(raw) for raw in letters]
    assert log["texts"] == letters
    assert log["connections"] == [1]


class _Timed(dict[bytes, bytes]):
    """A scripted server's answers (the plain ones unless given) that note when it read each command."""

    def __init__(self, answers: dict[bytes, bytes] | None = None) -> None:
        super().__init__(answers or {})
        self.read: list[tuple[bytes, float]] = []

    def get(self, verb: bytes, default: bytes) -> bytes:  # type: ignore[override]
        self.read.append((verb, time.monotonic()))
        return super().get(verb, default)


class _FirstText(dict[bytes, bytes]):
    """The first letter's text refused as ``answer`` says; every other command answered as usual."""

    def __init__(self, answer: bytes) -> None:
        super().__init__()
        self.answer: bytes | None = answer

    def get(self, verb: bytes, default: bytes) -> bytes:  # type: ignore[override]
        if verb == b"." and self.answer is not None:
            answer, self.answer = self.answer, None
            return answer
        return default


class _QuietFromTheText(dict[bytes, bytes]):
    """A server that goes quiet at the first letter's end: it answers nothing from there on."""

    quiet = False

    def get(self, verb: bytes, default: bytes) -> bytes:  # type: ignore[override]
        self.quiet = self.quiet or verb == b"."
        return b"" if self.quiet else default


def test_a_letters_text_carries_the_next_letters_commands_so_each_letter_costs_one_round_trip() -> None:
    """The deliverer names the letter a connection sends next: its MAIL, RCPT and DATA go out with this letter's
    text, before the server has answered it (RFC 2920 3.1). Here every answer comes 0.2 s after its command; a
    client that waited for the text's 250 would send the next MAIL at least that much later."""
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(3)]
    timed = _Timed()
    log = ScriptedSmtp.new_log()

    async def run() -> list[object]:
        server = await asyncio.get_running_loop().create_server(
            lambda: ScriptedSmtp(True, timed, log, distance=0.2), "127.0.0.1", 0)
        transport = SmtpTransport("127.0.0.1", server.sockets[0].getsockname()[1], "none", timeout=5)
        try:
            return [await transport.send(raw, SENDER, ["jane@example.org"],
                                         following=(letters[n + 1], SENDER, ["jane@example.org"])
                                         if n + 1 < len(letters) else None) for n, raw in enumerate(letters)]
        finally:
            await transport.close()
            server.close()

    assert asyncio.run(run()) == [None, None, None]
    assert log["texts"] == letters
    assert log["connections"] == [1]
    ends = [at for verb, at in timed.read if verb == b"."]
    mails = [at for verb, at in timed.read if verb == b"MAIL"]
    assert len(ends) == len(mails) == 3
    assert all(mail - end < 0.1 for end, mail in zip(ends, mails[1:])), (ends, mails)
    assert ends[0] - mails[0] >= 0.2  # the first letter's group went by itself, and its text after the 354


@pytest.mark.parametrize("group_after", [0.0, 0.3], ids=["its replies at once", "its replies late"])
def test_a_letter_refused_at_its_end_with_the_next_letters_commands_out_leaves_that_letter_to_a_new_connection(
        group_after: float) -> None:
    """After the next letter's DATA the connection is in that letter's transaction: nothing but its own text may end
    it (an RSET there would be read as text, and a lone "." would send an empty letter). So the connection goes,
    the server drops the open transaction, and the next letter is sent whole on a new one; whether or not the
    replies to that letter's commands have come when the refusal is read."""
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters, pipelining=True, answers=[_FirstText(b"552 too big"), {}],
                                  following={0: letters[1]}, group_after=group_after)
    assert isinstance(results[0], PermanentFailure) and "552 too big" in str(results[0]), results
    assert results[1] is None
    assert log["connections"] == [1, 2]
    assert log["texts"] == letters  # the second once, and never an empty one
    assert not any(b"RSET" in read for read in log["reads"] if isinstance(read, bytes))  # nothing more into it


def test_a_send_cancelled_with_the_next_letters_commands_out_leaves_that_letter_to_a_new_connection() -> None:
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters, pipelining=True, answers=[_QuietFromTheText(), {}], patience=(0.3, 10),
                                  following={0: letters[1]})
    assert results == ["cancelled", None]
    assert log["connections"] == [1, 2]
    # The first text reached the server, which never said it took it: that letter is retried, as before.
    assert log["texts"] == letters


def test_a_send_of_another_letter_than_the_one_named_next_starts_a_new_connection_and_the_named_one_never_goes(
        ) -> None:
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(3)]
    results, log = _send_scripted([letters[0], letters[2]], pipelining=True, answers=[{}],
                                  following={0: letters[1]})
    assert results == [None, None]
    assert log["connections"] == [1, 2]
    assert log["texts"] == [letters[0], letters[2]]


def test_closing_with_the_next_letters_commands_out_drops_the_connection_and_sends_nothing_more() -> None:
    """QUIT in an open transaction would be read as the letter's text: the connection is closed instead."""
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters[:1], pipelining=True, answers=[{}], following={0: letters[1]})
    assert results == [None]
    assert log["texts"] == letters[:1]
    wire = b"".join(read for read in log["reads"] if isinstance(read, bytes))
    assert wire.count(b"DATA\r\n") == 2 and not wire.endswith(b"QUIT\r\n"), wire[-200:]


def test_letters_each_naming_the_next_arrive_once_each_as_sent_whatever_their_form(smtp_sink: SmtpSink) -> None:
    """The deliverer's workers name each letter's successor. One whose lines do not all end in CRLF, or with an
    address that needs aiosmtplib's care, goes by itself (after the one before has been answered); the others go
    each with the next one's commands. Against a real server, with PIPELINING and without: every letter arrives,
    once, with its envelope and its text."""
    plain = ["jane@example.org"]
    letters: list[tuple[bytes, str, list[str]]] = [
        (_on_the_wire(make_mail(subject="Letter 0")), SENDER, plain),
        (_on_the_wire(make_mail(subject="Letter 1", body=".a line that begins with a dot\n.\n")), SENDER, plain),
        (make_mail(subject="Letter 2").replace(b"\r\n", b"\n"), SENDER, plain),  # LF line ends
        (_on_the_wire(make_mail(subject="Letter 3")), SENDER, ['"jane doe"@example.org']),
        (_on_the_wire(make_mail(subject="Letter 4")), SENDER, ["a@example.org", "b@example.net"]),
        (_on_the_wire(make_mail(subject="Letter 5")), SENDER, plain),
    ]

    async def run() -> list[str | None]:
        transport = SmtpTransport(smtp_sink.host, smtp_sink.port, "none")
        try:
            return [await transport.send(*letter, following=letters[n + 1] if n + 1 < len(letters) else None)
                    for n, letter in enumerate(letters)]
        finally:
            await transport.close()

    assert asyncio.run(run()) == [None] * len(letters)
    arrived = smtp_sink.wait_for(len(letters))
    assert [m.message["Subject"] for m in arrived] == [f"Letter {n}" for n in range(len(letters))]
    assert [m.rcpt_tos for m in arrived] == [recipients for _, _, recipients in letters]
    assert [m.raw for m in arrived] == [_on_the_wire(raw) for raw, _, _ in letters]
    time.sleep(0.2)
    assert smtp_sink.count() == len(letters)


def test_a_server_without_pipelining_gets_one_command_at_a_time() -> None:
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters, pipelining=False, answers=[{}])
    assert results == [None, None]
    assert log["early"] == []
    assert log["texts"] == letters


@pytest.mark.parametrize("answers, failure, code, texts", [
    ({b"MAIL": b"552 5.3.4 message size exceeds fixed maximum", b"RCPT": b"503 no sender",
      b"DATA": b"503 no recipients"}, PermanentFailure, "552", []),
    ({b"MAIL": b"451 try later", b"RCPT": b"503 no sender", b"DATA": b"503 no recipients"},
     TemporaryFailure, "451", []),
    # A server may take DATA although every recipient was refused (RFC 2920 3.1): it gets an empty text's end.
    ({b"RCPT": b"550 no such mailbox", b"DATA": b"354 go ahead", b".": b"554 no valid recipients"},
     PermanentFailure, "550", [b""]),
    ({b"RCPT": b"450 mailbox busy", b"DATA": b"503 no recipients"}, TemporaryFailure, "450", []),
    ({b"DATA": b"451 not now"}, TemporaryFailure, "451", []),
    ({b".": b"552 too big"}, PermanentFailure, "552", ["the letter"]),
    ({b".": b"554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to "
           b"process message due to a permanent exception"}, TemporaryFailure, "sender refused: 554 5.2.0",
     ["the letter"]),
    ({b".": b"554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message"},
     TemporaryFailure, "sender refused: 554 5.2.0", ["the letter"]),
    # A filter that quotes a letter's subject quotes whatever a complainant wrote: only the server's own answer holds.
    ({b".": b"554 5.7.1 Rejected by content filter: subject 'SendAsDenied SubmissionQuotaExceeded'"},
     PermanentFailure, "554 5.7.1", ["the letter"]),
], ids=["the letter's size refused at MAIL", "sender refused for now", "DATA taken after every recipient refused",
        "every recipient refused for now", "DATA refused", "the text refused",
        "the text refused: not allowed to send as the From (Microsoft 365)",
        "the text refused: a quota spent (Microsoft 365)", "the text refused, quoting those words"])
def test_a_refusal_in_a_group_fails_the_letter_as_the_server_says_and_the_next_goes_on_the_same_connection(
        answers: dict[bytes, bytes], failure: type[Exception], code: str, texts: list[object]) -> None:
    """Every reply to the group is read before the letter fails, so the RSET after it is answered in turn."""
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters, pipelining=True, answers=[_UntilReset(answers)])
    assert isinstance(results[0], failure) and code in str(results[0]), results
    assert results[1] is None
    assert log["connections"] == [1]
    assert log["texts"] == [letters[0] if t == "the letter" else t for t in texts] + [letters[1]]


@pytest.mark.parametrize("garbage", [b"hello there", b"25O ok", b"250-" + b"x" * 9000],
                         ids=["words", "a letter O for a zero", "a line of 9,000 bytes"])
def test_a_reply_that_is_no_smtp_reply_drops_the_connection_and_the_next_letter_starts_a_new_one(
        garbage: bytes) -> None:
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters, pipelining=True, answers=[{b"MAIL": garbage}, {}])
    assert isinstance(results[0], TemporaryFailure), results
    assert "Malformed SMTP response line" in str(results[0]) or "Response too long" in str(results[0])
    assert results[1] is None
    assert log["connections"] == [1, 2]
    assert log["texts"] == [letters[1]]


def test_a_group_over_tls_is_read_whole_and_the_connection_goes_on_after_a_refusal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Microsoft 365 and Gmail take letters over TLS, where the replies come through TLS's own transport."""
    cert_path, key_path = self_signed_cert(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_path, key_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # the bot's context trusts the system's store: this one

    refused = _UntilReset({b"MAIL": b"451 try later", b"RCPT": b"503 no sender", b"DATA": b"503 no recipients"})
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(3)]
    results, log = _send_scripted(letters, pipelining=True, answers=[refused], tls=server_tls)
    assert isinstance(results[0], TemporaryFailure) and "451" in str(results[0]), results
    assert results[1:] == [None, None]
    assert log["connections"] == [1]
    assert log["texts"] == letters[1:]


@pytest.fixture(params=[True, False], ids=["pipelining server", "one-command server"])
def starttls_sink(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> Iterator[SmtpSink]:
    """A server that takes mail only after STARTTLS, as Microsoft 365 and Gmail do on port 587 and as the bot's
    default MAILBOT_SMTP_SECURITY expects; its certificate trusted as the system's store would be."""
    cert, key = self_signed_cert(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the bot's context trusts the system's store: this one
    with SmtpSink(tmp_path / "sink", pipelining=request.param, starttls=(cert, key)) as sink:
        yield sink


@pytest.mark.parametrize("kind", ["in-process", "child process"])
def test_after_starttls_letters_arrive_byte_for_byte_and_a_refused_one_leaves_the_connection_usable(
        starttls_sink: SmtpSink, kind: str) -> None:
    """After the upgrade the commands, a group's replies, the RSET after a refusal and each letter's text all go
    through TLS's own transport, which took over the connection's socket mid-conversation."""
    headers = [b"From: complaints@1mm.org.uk", b"To: jane@example.org", b"Subject: Dots", b""]
    dotted = b"\r\n".join(headers + DOTTED_BODY) + b"\r\n"
    letters = [_on_the_wire(make_mail(subject="Refused")), dotted, _on_the_wire(make_mail(subject="Two of them"))]
    starttls_sink.refuse(451, times=1)
    results = _send(starttls_sink, kind, [(letters[0], SENDER, ["jane@example.org"]),
                                          (letters[1], SENDER, ["jane@example.org"]),
                                          (letters[2], SENDER, ["a@example.org", "b@example.net"])],
                    security="starttls")
    assert isinstance(results[0], TemporaryFailure) and "451" in str(results[0]), results
    assert results[1:] == [None, None]
    arrived = starttls_sink.wait_for(2)
    assert [m.raw for m in arrived] == letters[1:]
    assert [m.rcpt_tos for m in arrived] == [["jane@example.org"], ["a@example.org", "b@example.net"]]
    assert all(m.tls for m in arrived)


@pytest.mark.parametrize("kind", ["in-process", "child process"])
def test_with_starttls_asked_a_server_that_does_not_offer_it_gets_no_letter_in_clear(
        smtp_sink: SmtpSink, kind: str) -> None:
    """A server (or someone between) that leaves STARTTLS out of its EHLO does not get the letter in clear: it
    waits, as after an outage, and the failure says why."""
    [result] = _send(smtp_sink, kind, [(_on_the_wire(make_mail()), SENDER, ["jane@example.org"])],
                     security="starttls")
    assert isinstance(result, TemporaryFailure) and "STARTTLS" in str(result), result
    assert smtp_sink.count() == 0


@pytest.mark.parametrize("kind", ["in-process", "child process"])
def test_with_starttls_a_certificate_nobody_vouches_for_gets_no_letter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The certificate is checked against the system's authorities and the host's name: one signed by nobody the
    machine trusts (here, itself) could be anyone's, so the letter waits."""
    cert, key = self_signed_cert(tmp_path / "tls")
    other, _ = self_signed_cert(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other))  # the machine trusts another authority, not this one
    with SmtpSink(tmp_path / "sink", starttls=(cert, key)) as sink:
        [result] = _send(sink, kind, [(_on_the_wire(make_mail()), SENDER, ["jane@example.org"])],
                         security="starttls")
        assert isinstance(result, TemporaryFailure) and "CERTIFICATE_VERIFY_FAILED" in str(result), result
        assert sink.count() == 0


def test_a_send_cancelled_while_its_group_is_unanswered_closes_the_connection_and_the_next_letter_starts_anew() -> None:
    """The daemon cancels a send when it stops, and the SMTP worker when its parent goes away. The connection
    still owes that group's replies, which would answer the next letter's commands, so it is not used again."""
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters, pipelining=True, answers=[{b"DATA": b""}, {}], patience=(0.3, 10))
    assert results == ["cancelled", None]
    assert log["connections"] == [1, 2]
    assert log["texts"] == [letters[1]]


def test_a_server_that_answers_more_than_it_was_asked_is_not_trusted_with_the_next_letter() -> None:
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters, pipelining=True, answers=[{b".": b"250 queued\r\n250 and again"}, {}])
    assert results == [None, None]
    assert log["connections"] == [1, 2]  # the second letter on a new connection, where each answer is its own
    assert log["texts"] == letters


def test_a_server_that_says_more_after_its_354_gets_no_text_and_the_letter_waits_for_a_retry() -> None:
    """Its replies are out of step with the commands (with a group sent ahead, this is where it shows): the letter's
    text would go where the server may read it as commands, so it is not sent, and the connection goes."""
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters, pipelining=True, answers=[{b"DATA": b"354 go ahead\r\n250 and this"}, {}])
    assert isinstance(results[0], TemporaryFailure) and "answered more than it was asked" in str(results[0]), results
    assert results[1] is None
    assert log["connections"] == [1, 2]
    assert log["texts"] == [letters[1]]
    assert not any(b"Subject: Letter 0" in read for read in log["reads"] if isinstance(read, bytes))


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining server", "one-command server"])
@pytest.mark.parametrize("answers, said", [
    ({b"greeting": b"554 no SMTP service here for you"}, "554 no SMTP service here for you"),
    ({b"EHLO": b"550 not you", b"HELO": b"550 not you either"}, "550 not you either"),
], ids=["refused at the greeting", "refused at EHLO and HELO"])
def test_a_server_that_will_not_serve_the_bot_fails_no_letter_for_good(
        pipelining: bool, answers: dict[bytes, bytes], said: str) -> None:
    """A refusal before any letter is offered (the server will not serve this client: its address blocked, the
    wrong port) says nothing about the letter. It waits and is tried again, as after an outage, and the reason
    is the server's own words."""
    results, log = _send_scripted([_on_the_wire(make_mail())], pipelining=pipelining, answers=[answers])
    assert isinstance(results[0], TemporaryFailure), results
    assert str(results[0]) == f"the server refused the connection: {said}"
    assert log["texts"] == []


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining server", "one-command server"])
@pytest.mark.parametrize("verb", [b"MAIL", b"RCPT", b"."], ids=["at MAIL", "at RCPT", "at the letter's end"])
def test_a_server_asking_for_a_sign_in_is_the_bots_to_mend_and_no_letter_fails_for_good(
        pipelining: bool, verb: bytes) -> None:
    """530 (RFC 4954): the server wants a sign-in the bot did not give (MAILBOT_SMTP_USER unset where Microsoft
    365 or Gmail needs one) or that lapsed. Every letter would meet it, so it is a refused sign-in, which the
    delivery waits out without spending the letter's attempts, and the next letter starts a new connection."""
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters, pipelining=pipelining,
                                  answers=[{verb: b"530 5.7.0 Authentication required"}, {}])
    assert isinstance(results[0], TemporaryFailure), results
    assert str(results[0]) == "sign-in refused: " + (
        "jane@example.org: 530 5.7.0 Authentication required" if verb == b"RCPT"
        else "530 5.7.0 Authentication required")
    assert results[1] is None
    assert log["connections"] == [1, 2]
    assert log["texts"][-1] == letters[1]
    assert (letters[0] in log["texts"]) == (verb == b".")  # the server took the text only to refuse it at its end


# aiosmtplib's own sendmail, which the bot uses for an address it must check, never pipelines, and a scripted server
# that offers PIPELINING holds its replies until DATA: that address goes to the one-command server.
@pytest.mark.parametrize("pipelining, recipient", [
    (True, "jane@example.org"), (False, "jane@example.org"), (False, '"jane doe"@example.org'),
], ids=["pipelining server", "one-command server", "an address aiosmtplib checks"])
@pytest.mark.parametrize("refusal, failure", [
    (b"550 5.7.60 SMTP; Client does not have permissions to send as this sender", TemporaryFailure),
    (b"550 5.4.5 Daily user sending limit exceeded", TemporaryFailure),
    (b"553 5.7.1 Sender address rejected: not owned by user", TemporaryFailure),
    (b"552 5.3.4 Message size exceeds fixed maximum message size", PermanentFailure),
    (b"550 5.3.4 Message too big for system", PermanentFailure),
    (b"555 5.5.4 MAIL FROM parameters not recognized", PermanentFailure),
    (b"550 Message size exceeds the limit of this server", PermanentFailure),
], ids=["not allowed to send as it", "a day's quota reached", "an address not the account's", "the size (552)",
        "the size (5.3.4)", "a parameter", "the size in a server's own words"])
def test_a_server_refusing_the_bots_own_address_holds_the_letter_and_only_its_size_fails_it_for_good(
        pipelining: bool, recipient: str, refusal: bytes, failure: type[Exception]) -> None:
    """Every letter goes from the complaints address: a 5xx to its MAIL FROM (Microsoft 365 when the account may not
    send as that address, a relay's unknown sender, Gmail's day's quota) would meet every letter, and goes when the
    setting is mended or the quota is new. Only what MAIL FROM says of the letter itself (its SIZE over the limit,
    RFC 1870; a parameter) fails the letter. The connection goes on after the RSET either way."""
    letters = [_on_the_wire(make_mail(subject=f"Letter {n}")) for n in range(2)]
    results, log = _send_scripted(letters, pipelining=pipelining, recipients=(recipient,),
                                  answers=[_UntilReset({b"MAIL": refusal, b"RCPT": b"503 no sender",
                                                        b"DATA": b"503 no recipients"})])
    assert type(results[0]) is failure, results
    said = refusal.decode()
    assert str(results[0]) == (f"sender refused: {said}" if failure is TemporaryFailure else said)
    assert results[1] is None
    assert log["connections"] == [1]
    assert log["texts"] == [letters[1]]


def test_asked_about_a_sender_the_server_says_whether_it_would_take_a_letter_and_nothing_is_sent() -> None:
    """`mailbot auth test` asks MAIL FROM and then RSET: the server's answer, or what keeps the address off the
    command line (a non-ASCII address to a server without SMTPUTF8), and no letter."""
    log = ScriptedSmtp.new_log()

    async def run() -> list[str | None]:
        refusing = _UntilReset({b"MAIL": b"550 5.7.60 Client does not have permissions to send as this sender"})
        servers = [await asyncio.get_running_loop().create_server(
            lambda script=script: ScriptedSmtp(False, script, log), "127.0.0.1", 0) for script in ({}, refusing)]
        said = []
        for server, sender in zip([servers[0], servers[0], servers[1]],
                                  ["complaints@1mm.org.uk", "réclamations@1mm.org.uk", "complaints@1mm.org.uk"]):
            transport = SmtpTransport("127.0.0.1", server.sockets[0].getsockname()[1], "none", timeout=2)
            try:
                said.append(await transport.refusal_of(sender))
            finally:
                await transport.close()
        for server in servers:
            server.close()
        return said

    taken, unwritable, refused = asyncio.run(run())
    assert taken is None
    assert unwritable is not None and "SMTPUTF8" in unwritable
    assert refused == "550 5.7.60 Client does not have permissions to send as this sender"
    assert log["texts"] == []
    assert all(b"DATA" not in read for read in log["reads"])  # type: ignore[operator]
