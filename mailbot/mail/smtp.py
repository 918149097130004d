"""SMTP delivery with aiosmtplib: one kept-open connection per worker, reconnecting as needed."""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Callable, NoReturn

import aiosmtplib

from mailbot.domain.health import SENDER_REFUSED, SIGN_IN_REFUSED
from mailbot.mail.oauth import TokenError, invalidate
from mailbot.mail.smtp_pipeline import Ahead, pipelined_transaction, stuffed
from mailbot.services.transport import PermanentFailure, TemporaryFailure

# An address that is plainly safe on an SMTP command line as it stands: ASCII atoms and dots, no spaces,
# quotes, brackets, commas or angle brackets. Every letter's sender and nearly every recipient is one;
# anything else goes through aiosmtplib's ``sendmail``, which parses and checks each address.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
# "530 Authentication required" (RFC 4954 6): the server wants a sign-in before it takes a letter.
AUTH_REQUIRED = 530
# The refusals at MAIL FROM that are about the letter, not the bot's address: its SIZE over the server's limit (552,
# RFC 1870; enhanced code 5.3.4; or a server's own words for it under another code), or a parameter the server does
# not know (555, RFC 5321 4.2.2; 5.5.4). The size is the one thing at MAIL FROM a complainant can steer (a long
# complaint in a staff copy): held as the address's fault, such a letter would stall the letters after it.
_THE_LETTERS_OWN = (552, 555)
_THE_LETTERS_OWN_ENHANCED = ("5.3.4", "5.5.4")
_THE_LETTERS_SIZE = re.compile(r"\bsize\b|too (?:large|big)", re.IGNORECASE)
# What Microsoft 365 says at the end of a letter's text when the account may not send as the letter's From (the
# complaints address, on every letter), or has spent its sending quota, from the first word of its answer on: a
# refusal that only quotes these words somewhere (a filter echoing a letter's subject) is the letter's own.
_EVERY_LETTERS_REFUSAL = ("5.2.0 STOREDRV.Submission.Exception:SendAsDenied",
                          "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceeded")


class SmtpTransport:
    def __init__(self, host: str, port: int, security: str, user: str | None = None, password: str | None = None,
                 timeout: float = 30.0, token: Callable[[], str] | None = None) -> None:
        self.host, self.port, self.security = host, port, security
        self.user, self.password, self.timeout = user, password, timeout
        # An OAuth2 access token source (XOAUTH2) instead of the password: asked afresh on every connection.
        self.token = token
        self._client: aiosmtplib.SMTP | None = None
        # The next letter's group, written after the last letter's text (see ``send``'s ``following``).
        self._ahead: Ahead | None = None

    # The deliverer may name the letter it will send next on this connection (``send``'s ``following``).
    takes_following = True

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=self.timeout,
            use_tls=self.security == "ssl", start_tls=self.security == "starttls",
            tls_context=ssl.create_default_context() if self.security != "none" else None,
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            if self.user and self.token is not None:
                await client.auth_xoauth2(self.user, await asyncio.to_thread(self.token))
            elif self.user:
                await client.login(self.user, self.password or "")
        except BaseException:
            client.close()  # a greeting, EHLO, STARTTLS or sign-in refused: the socket is not left open
            raise
        self._client = client
        return client

    async def sign_in(self) -> None:
        """Connect and sign in as for a letter (``mailbot auth test``); raises what a refused sign-in raises."""
        await self._connect()

    async def refusal_of(self, sender: str) -> str | None:
        """What the server, signed in as for a letter, answers a letter from ``sender`` (``mailbot auth test``):
        None when it would take it, else its answer (530 when it wants a sign-in). MAIL FROM, then RSET: nothing
        is sent."""
        client = await self._connect()
        try:
            await client.mail(sender)
        except aiosmtplib.SMTPSenderRefused as exc:
            return f"{exc.code} {exc.message}"
        except (aiosmtplib.SMTPNotSupported, ValueError) as exc:
            return f"the address cannot go on its command line ({type(exc).__name__}: {exc}; a non-ASCII address " \
                   "needs a server that offers SMTPUTF8)"
        finally:
            await client.rset()
        return None

    async def send(self, raw: bytes, mail_from: str, recipients: list[str],
                   following: tuple[bytes, str, list[str]] | None = None) -> str | None:
        """Send one letter; None, or a note when some recipients were refused but the letter went out.

        ``following``: the letter this connection sends next (its bytes, sender and recipients), when the caller
        knows it. Where the server offers PIPELINING and both letters can go as a group, that letter's MAIL, RCPT
        and DATA go in the same write as this letter's text, and its replies come with this letter's 250: one round
        trip a letter instead of two. The next ``send`` must then be that letter; any other call, ``close``
        included, ends the connection without its text, so the server drops the transaction and nothing goes out
        that was not sent whole."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and not ahead.is_for(raw, mail_from, recipients):
            await self._drop()  # in the middle of another letter's transaction: no text but that letter's ends it
            ahead = None
        elif ahead is not None and not (self._client is not None and self._client.is_connected):
            ahead = None  # the connection went, and the group with it: this letter starts afresh on a new one
        client = await self._connected()
        try:
            # A letter whose group went ahead was found fit for one then (_pipelines).
            if ahead is not None or _plain(mail_from, recipients):
                if ahead is not None or (client.supports_extension("pipelining") and _on_the_wire(raw)):
                    if following is not None and not _pipelines(*following):
                        following = None  # that letter goes by itself
                    errors, self._ahead = await pipelined_transaction(
                        client, raw, mail_from, recipients, self.timeout, ahead=ahead, following=following)
                else:
                    errors = await self._transaction(client, raw, mail_from, recipients)
            else:
                # International addresses need the server's SMTPUTF8; without it aiosmtplib refuses them.
                international = not all(address.isascii() for address in (mail_from, *recipients))
                options = ["SMTPUTF8"] if international and client.supports_extension("smtputf8") else []
                errors, _response = await client.sendmail(mail_from, recipients, raw, mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            message = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if AUTH_REQUIRED in codes:
                await self._unsigned(message)
            await self._reset()
            if all(500 <= c < 600 for c in codes):
                raise PermanentFailure(message) from None
            raise TemporaryFailure(message) from None
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == AUTH_REQUIRED:
                await self._unsigned(f"{exc.code} {exc.message}")
            await self._reset()
            if _refuses_the_sender(exc):
                raise TemporaryFailure(f"{SENDER_REFUSED}: {exc.code} {exc.message}") from None
            if 500 <= exc.code < 600:
                raise PermanentFailure(f"{exc.code} {exc.message}") from None
            raise TemporaryFailure(f"{exc.code} {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:  # before ValueError: see _connected
            await self._drop()
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from None
        except ValueError as exc:
            # aiosmtplib refuses an address that cannot go on an SMTP command line safely; retrying won't help.
            raise PermanentFailure(f"unsendable address: {exc}") from None
        if errors:
            # Some recipients were refused while others accepted: the letter went out, note who missed it.
            return "partly refused: " + "; ".join(f"{addr}: {resp.code} {resp.message}" for addr, resp in errors.items())
        return None

    async def _connected(self) -> aiosmtplib.SMTP:
        """The connection, signed in. Whatever goes wrong before a letter is offered is the server's or the bot's,
        never the letter's, so it is a TemporaryFailure: the letter waits and is tried again, and never fails for
        good because a server greeted the bot with 554 or a certificate failed its check."""
        try:
            return await self._connect()
        except (aiosmtplib.SMTPAuthenticationError, TokenError) as exc:
            # The server refused the token (forgotten, so the next try asks for a new one), or the provider gave
            # none (nothing to forget).
            await self._unsigned(str(exc), token_refused=isinstance(exc, aiosmtplib.SMTPAuthenticationError))
        except aiosmtplib.SMTPResponseException as exc:
            await self._drop()
            raise TemporaryFailure(f"the server refused the connection: {exc.code} {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError, ValueError) as exc:
            # A certificate that fails its check (ssl.SSLCertVerificationError) is an OSError and a ValueError alike.
            await self._drop()
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from None

    async def _unsigned(self, answer: str, token_refused: bool = True) -> NoReturn:
        """A refused sign-in, or a server asking for one (RFC 4954's 530) in the middle of a letter: none was
        configured, or it lapsed. That is the bot's problem, not the letter's: it waits and is tried again (and the
        operator is told), never failed for good because a password or token went stale or a setting is missing.
        A token the server refused is forgotten, so the next try asks the provider for a new one."""
        if token_refused:
            invalidate(self.token)
        await self._drop()
        raise TemporaryFailure(f"{SIGN_IN_REFUSED}: {answer}") from None

    async def _transaction(self, client: aiosmtplib.SMTP, raw: bytes, mail_from: str,
                           recipients: list[str]) -> dict[str, aiosmtplib.SMTPResponse]:
        """MAIL, RCPT and DATA for plain addresses, one at a time, as ``sendmail`` does them, without parsing each
        address twice more (a quarter of the CPU a letter costs); failures raise the same exceptions. For a server
        without PIPELINING, or a letter whose lines do not all end in CRLF (``smtp_pipeline`` does the rest).

        Each answer has ``timeout`` seconds, as aiosmtplib gives it, but from one deadline moved on before each
        command rather than aiosmtplib's ``wait_for`` around each reply (a future, a callback and a timer: ~10 us
        of a command's CPU, eight commands a complaint). A server that goes quiet raises aiosmtplib's timeout
        error, as before; the caller then drops the connection, whose next answer could belong to anything."""
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                options = [b"SIZE=%d" % len(raw)] if client.supports_extension("size") else []
                response = await client.execute_command(b"MAIL", b"FROM:<" + mail_from.encode("ascii") + b">",
                                                        *options, timeout=None)
                if response.code != 250:
                    raise aiosmtplib.SMTPSenderRefused(response.code, response.message, mail_from)
                refused = []
                for address in recipients:
                    deadline.reschedule(loop.time() + self.timeout)
                    response = await client.execute_command(b"RCPT", b"TO:<" + address.encode("ascii") + b">",
                                                            timeout=None)
                    if response.code not in (250, 251):
                        refused.append(aiosmtplib.SMTPRecipientRefused(response.code, response.message, address))
                if len(refused) == len(recipients):
                    raise aiosmtplib.SMTPRecipientsRefused(refused)
                deadline.reschedule(loop.time() + 2 * self.timeout)  # DATA's answer, then the letter's
                await _data(client, raw)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from None
        return {r.recipient: aiosmtplib.SMTPResponse(r.code, r.message) for r in refused}

    async def _reset(self) -> None:
        """After a refusal the session may be mid-transaction; RSET it, or start afresh."""
        if self._client is not None and self._client.is_connected:
            try:
                await self._client.rset()
                return
            except (aiosmtplib.SMTPException, OSError):
                pass
        await self._drop()

    async def _drop(self) -> None:
        self._ahead = None
        if self._client is not None:
            try:
                if self._client.is_connected:
                    self._client.close()
            finally:
                self._client = None

    async def close(self) -> None:
        if self._ahead is not None:
            await self._drop()  # a letter's transaction is open: QUIT now would be read as its text
            return
        if self._client is not None and self._client.is_connected:
            try:
                await self._client.quit()
            except (aiosmtplib.SMTPException, OSError):
                self._client.close()
        self._client = None


def _refuses_the_sender(exc: aiosmtplib.SMTPResponseException) -> bool:
    """A 5xx that every letter would meet: the server will not take mail from the bot's own address. At MAIL FROM,
    any 5xx but one about the letter's size or a parameter (Microsoft 365's "5.7.60 Client does not have permissions
    to send as this sender", a relay's unauthorised sender, a day's quota reached): the address is the same on every
    letter, so that is the setting's or the account's fault, never the letter's. At the text's end, only Microsoft
    365's words for the same (_EVERY_LETTERS_REFUSAL); any other refusal there may be the letter's own."""
    if not 500 <= exc.code < 600:
        return False
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return (exc.code not in _THE_LETTERS_OWN and not exc.message.startswith(_THE_LETTERS_OWN_ENHANCED)
                and not _THE_LETTERS_SIZE.search(exc.message))
    return exc.message.startswith(_EVERY_LETTERS_REFUSAL)


def _plain(mail_from: str, recipients: list[str]) -> bool:
    """Whether every address of the envelope can go on its command line as it stands (_PLAIN_ADDRESS)."""
    return all(_PLAIN_ADDRESS.fullmatch(address) for address in (mail_from, *recipients))


def _pipelines(raw: bytes, mail_from: str, recipients: list[str]) -> bool:
    """Whether a letter can go as a group (on a server that offers PIPELINING): plain addresses, lines in CRLF."""
    return _plain(mail_from, recipients) and _on_the_wire(raw)


def _on_the_wire(raw: bytes) -> bool:
    """Every line of ``raw`` ends in CRLF, and nothing else does: how the bot writes its letters."""
    crlf = raw.count(b"\r\n")
    return raw.endswith(b"\r\n") and raw.count(b"\r") == crlf and raw.count(b"\n") == crlf


async def _data(client: aiosmtplib.SMTP, raw: bytes) -> None:
    """DATA and the letter, as aiosmtplib's ``data`` sends them, with the same errors.

    aiosmtplib runs every letter through two regular expressions, one making each line end CRLF and one doubling
    a dot that begins a line (RFC 5321 4.5.2): 65-90 us for one of the bot's 4-6 KB letters, which already end
    every line in CRLF. A letter in that form is sent here with its dots doubled by ``bytes.replace``; any other
    goes through ``data``."""
    if not _on_the_wire(raw):
        await client.data(raw, timeout=None)
        return
    response = await client.execute_command(b"DATA", timeout=None)
    if response.code != 354:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    protocol = client.protocol
    if protocol is None:  # the server hung up after its 354
        client.close()
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    # read_response is called before this task can yield: its reply cannot arrive unclaimed.
    protocol.write(stuffed(raw) + b".\r\n")
    response = await protocol.read_response(timeout=None)
    if response.code != 250:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
