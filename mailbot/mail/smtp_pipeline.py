"""A letter's MAIL, RCPT and DATA sent as one group where the server offers PIPELINING (RFC 2920).

Without it each letter costs four round trips (MAIL, each RCPT, DATA, the text), each a write, a wait and a read
at both ends; with it, two: the group, then the text; and one where the deliverer names the letter a connection
sends next, whose group then goes in the same write as this letter's text (``Ahead``). Every server the bot is
meant for offers it (Microsoft 365, Gmail, Postfix, Exim); one that does not gets one command at a time, as before.

aiosmtplib's protocol cannot take a group's replies: it parses one reply each time data arrives and drops data
that arrives while a parsed reply waits to be collected. So for the length of one transaction the connection's
transport hands what arrives to ``_Replies``, which keeps every reply in order, and then back to aiosmtplib's
protocol, which signs in before and says RSET or QUIT after as it always has (with a group sent ahead, ``_Replies``
keeps the transport until the last letter of the chain). Between transactions nothing is left unread: every reply
to the group is read before a refusal is raised, so an RSET that follows is answered in turn. A connection left
owing a reply (too slow, a reply that is no SMTP reply, a cancelled send, the next letter's group out when this one
failed), or given one it did not ask for, is closed here, never reused.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import aiosmtplib

# As aiosmtplib's protocol: a reply line longer than this is no SMTP server's, and neither is a reply this long.
MAX_LINE_LENGTH = 8192
MAX_REPLY_LENGTH = MAX_LINE_LENGTH * 4


def split_replies(buffer: bytes | bytearray) -> tuple[list[aiosmtplib.SMTPResponse], int]:
    """The complete replies at the start of ``buffer`` and how many bytes they took; a reply whose last line has
    not arrived yet stays for the next call. A reply is lines of a three-digit code, "-" after the code on every
    line but the last (RFC 5321 4.2.1); its text is the lines' texts joined by newlines, as aiosmtplib gives it.
    Raises ``SMTPResponseException`` for a line that does not begin with a code or is longer than any server's."""
    replies: list[aiosmtplib.SMTPResponse] = []
    used = start = 0
    texts: list[bytes] = []
    *lines, rest = bytes(buffer).split(b"\n")  # the last is what follows the last line's end
    for line in lines:
        start += len(line) + 1
        if len(line) >= MAX_LINE_LENGTH:
            raise aiosmtplib.SMTPResponseException(-1, "Response too long")
        code = line[:3]
        if not (code.isdigit() and len(code) == 3):
            raise aiosmtplib.SMTPResponseException(
                -1, f"Malformed SMTP response line: {line.decode('utf-8', errors='ignore')}")
        texts.append(line[4:].strip(b" \t\r"))
        if line[3:4] != b"-":
            replies.append(aiosmtplib.SMTPResponse(int(code), b"\n".join(texts).decode("utf-8", "surrogateescape")))
            texts, used = [], start
    if start - used > MAX_REPLY_LENGTH or len(rest) > MAX_LINE_LENGTH:
        raise aiosmtplib.SMTPResponseException(-1, "Response too long")
    return replies, used


class _Replies(asyncio.Protocol):
    """Every reply that arrives, in order, while a transaction has the transport. A reply that is no SMTP reply
    closes the connection: nothing after it can be trusted to answer the command it seems to."""

    def __init__(self, transport: asyncio.Transport, aiosmtplib_protocol: asyncio.BaseProtocol) -> None:
        self.transport, self._aiosmtplib = transport, aiosmtplib_protocol
        self._buffer = bytearray()
        self._replies: deque[aiosmtplib.SMTPResponse] = deque()
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        self._buffer += data
        try:
            replies, used = split_replies(self._buffer)
        except aiosmtplib.SMTPResponseException as exc:
            self._fail(exc)
            self.transport.close()
            return
        if used:
            del self._buffer[:used]
            self._replies.extend(replies)
            self._wake()

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(aiosmtplib.SMTPServerDisconnected("Connection lost"))
        # aiosmtplib's protocol tidies up as if it had been connected all along (its client then says it is not).
        self._aiosmtplib.connection_lost(exc)

    def _fail(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def quiet(self) -> bool:
        """Nothing came that no command has asked for (a server that answers more than it is asked is out of step
        with us, and its next answer could belong to anything)."""
        return not self._replies and not self._buffer and self._error is None

    async def read(self) -> aiosmtplib.SMTPResponse:
        """The next reply, in the order the commands went."""
        while not self._replies:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._replies.popleft()


class Ahead:
    """A letter's group already on the wire: written right after the text of the letter before it on the same
    connection (``following``), so the two letters cost one round trip less. Its replies are read by the send that
    takes that letter, and only by it."""

    __slots__ = ("replies", "letter")

    def __init__(self, replies: _Replies, letter: tuple[bytes, str, list[str]]) -> None:
        self.replies, self.letter = replies, letter

    def is_for(self, raw: bytes, mail_from: str, recipients: list[str]) -> bool:
        """Whether the group out is this letter's (the very bytes, not a copy that happens to be equal)."""
        return self.letter[0] is raw and self.letter[1] == mail_from and self.letter[2] == recipients


def _group(raw: bytes, mail_from: str, recipients: list[str], sizes: bool) -> bytes:
    size = b" SIZE=%d" % len(raw) if sizes else b""
    return b"\r\n".join([b"MAIL FROM:<" + mail_from.encode("ascii") + b">" + size,
                         *(b"RCPT TO:<" + address.encode("ascii") + b">" for address in recipients), b"DATA", b""])


async def pipelined_transaction(client: aiosmtplib.SMTP, raw: bytes, mail_from: str, recipients: list[str],
                                timeout: float, ahead: Ahead | None = None,
                                following: tuple[bytes, str, list[str]] | None = None,
                                ) -> tuple[dict[str, aiosmtplib.SMTPResponse], Ahead | None]:
    """Send ``raw`` (every line ending CRLF; plain ASCII addresses) as one group and then its text; the refused
    recipients' replies when others took it. Raises aiosmtplib's exceptions, as ``sendmail`` would: the sender
    refused, every recipient refused, DATA or the text refused, replies too slow (``timeout`` seconds for each of
    the group's, twice that for the text's), or the connection lost.

    ``ahead``: this letter's group went out already, after the text before it; its replies are read here.
    ``following`` (the next letter on this connection: its bytes, sender and plain ASCII recipients): its group is
    written straight after this text, in the same write (RFC 2920 3.1 lets a group begin with a text), and returned
    as the ``Ahead`` the next send must be given. Once that group is out the connection is in the next letter's
    transaction, which nothing but that letter's own text may end: whatever goes wrong here then closes it (the
    server drops a transaction whose text never ended), and so must anything that does not go on to that letter."""
    transport = cast(asyncio.Transport | None, client.transport)
    protocol = client.protocol
    if transport is None or protocol is None or transport.is_closing():
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    loop = asyncio.get_running_loop()
    sizes = client.supports_extension("size")
    if ahead is not None and ahead.replies.transport is not transport:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")  # that group went with another connection
    replies = ahead.replies if ahead is not None else _Replies(transport, protocol)
    # The group's replies have ``timeout`` seconds each, as one at a time they would, in one deadline: moving it
    # on after each reply took a fifth of a letter's CPU (a timer cancelled and another pushed on the heap).
    commands = len(recipients) + 2
    deadline = asyncio.timeout(timeout * commands)
    in_step = False  # every command written has had its reply read
    following_out = False  # the following letter's group is on the wire
    carried: Ahead | None = None  # and this letter went: the next send reads that group's replies
    if ahead is None:
        transport.set_protocol(replies)
    try:
        async with deadline:
            if ahead is None:
                transport.write(_group(raw, mail_from, recipients, sizes))
            answers = [await replies.read() for _ in range(commands)]
            mail, data = answers[0], answers[-1]
            refused = [aiosmtplib.SMTPRecipientRefused(answer.code, answer.message, address)
                       for address, answer in zip(recipients, answers[1:-1]) if answer.code not in (250, 251)]
            taken = mail.code == 250 and len(refused) < len(recipients)
            if data.code == 354 and not taken:
                # A server may take DATA when the group failed before it (RFC 2920 3.1): end an empty text
                # at once, and read what it says to that, so the connection stays in step for RSET.
                transport.write(b".\r\n")
                deadline.reschedule(loop.time() + timeout)
                await replies.read()
            in_step = True
            if mail.code != 250:
                raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, mail_from)
            if not taken:
                raise aiosmtplib.SMTPRecipientsRefused(refused)
            if data.code != 354:
                raise aiosmtplib.SMTPDataError(data.code, data.message)
            if not replies.quiet:
                # More came than was asked for (with a group sent ahead, this is where it shows): the server is out
                # of step, and the text must not go where it could be read as commands.
                raise aiosmtplib.SMTPResponseException(-1, "The server answered more than it was asked")
            in_step = False
            deadline.reschedule(loop.time() + 2 * timeout)  # the text's answer
            text = stuffed(raw) + b".\r\n"
            if following is not None:
                text += _group(*following, sizes)
                following_out = True
            transport.write(text)
            answer = await replies.read()
            in_step = True
            if answer.code != 250:
                raise aiosmtplib.SMTPDataError(answer.code, answer.message)
            if following is not None:
                carried = Ahead(replies, following)
    except TimeoutError:
        if not deadline.expired():
            raise
        raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from None
    finally:
        if carried is not None and not transport.is_closing():
            pass  # the next letter's replies are owed: its own send reads them, in turn
        elif in_step and not following_out and replies.quiet and not transport.is_closing():
            transport.set_protocol(protocol)
        else:
            # A reply is still owed (too slow, no SMTP reply, the connection lost, this task cancelled, the next
            # letter's group out with this one failed) or came unasked: the next command's answer could be
            # anything, so the connection goes and the next letter starts anew.
            transport.close()
    return {r.recipient: aiosmtplib.SMTPResponse(r.code, r.message) for r in refused}, carried


def stuffed(raw: bytes) -> bytes:
    """``raw`` with a dot doubled at the start of every line (RFC 5321 4.5.2), so the server keeps it and a lone
    "." line does not end the letter early; ``raw`` ends every line in CRLF."""
    return (b"." + raw if raw.startswith(b".") else raw).replace(b"\r\n.", b"\r\n..")
