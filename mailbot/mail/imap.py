"""IMAP intake with imapclient: fetch what is new since the cursor, IDLE while waiting, reconnect on errors.

The cursor (UIDVALIDITY + last UID) is committed with each message, and every message's
Message-ID is recorded, so a restart or a re-delivery never processes a message twice.
Messages are fetched with BODY.PEEK[] so the shared mailbox's read flags stay as staff left them,
in chunks, so memory stays flat however large the mailbox is.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailbot.domain.batches import sized_batches
from mailbot.mail.oauth import TokenError, invalidate, monotonic_until
from mailbot.services.mailbox import Arrival, CursorPosition, FirstRunError, MailboxHooks

log = logging.getLogger(__name__)

FETCH_CHUNK = 100
# At most this many bytes of mail in one FETCH (a message larger than this comes alone): 100 complaints
# carrying phone videos were one 700 MB answer, and the process that held it.
FETCH_BYTES = 24 * 1024 * 1024
# A FETCH_CHUNK of messages of at most this size fit in FETCH_BYTES: the size a message whose size was not asked
# for is planned at (``ImapIntake._sizes``). The sizes of those LARGER than half of it are asked for: a server may
# compare a stored size there rather than the message's (Exchange, for an attachment kept decoded, where base64
# adds a third), so the half leaves room for that.
SMALL = FETCH_BYTES // FETCH_CHUNK
FETCH_ITEMS = ["BODY.PEEK[]", "INTERNALDATE"]
# A message the server refuses is tried alone this many times, each on a fresh session, within one pass.
ATTEMPTS_ALONE = 3
BACKOFF_START = 1.0
# A server that went away is tried again at least this often, so mail that arrives once it is back waits
# at most this long (a 60 s cap once left new mail waiting 57 s after a 75 s outage).
BACKOFF_MAX = 15.0
# Refused credentials rarely fix themselves quickly; do not hammer the server.
LOGIN_BACKOFF = 60.0


def next_backoff(previous: float) -> float:
    """The wait before the next reconnect after a connection failure."""
    return min(previous * 2, BACKOFF_MAX)


@dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int
    user: str
    password: str
    security: str  # ssl, starttls, none
    folder: str = "INBOX"
    processed_folder: str | None = None
    poll_interval: float = 60.0
    idle_renew: float = 600.0
    timeout: float = 30.0
    # An OAuth2 access token source (XOAUTH2) instead of the password: asked afresh on every connect.
    token: Callable[[], str] | None = None
    # With a token, the connection is renewed this often, well inside an access token's hour.
    token_reconnect: float = 45 * 60.0
    # After a refused sign-in, the wait before the next try (MAILBOT_SIGN_IN_RETRY).
    login_backoff: float = LOGIN_BACKOFF

    @property
    def mailbox(self) -> str:
        return f"{self.user}@{self.host}/{self.folder}"


class ImapIntake:
    def __init__(self, config: ImapConfig, hooks: MailboxHooks,
                 on_waiting: Callable[[int], None] | None = None) -> None:
        """``on_waiting`` is told how many messages a fetch will read, before it reads the first, when there are
        any."""
        self.config = config
        self.hooks = hooks
        self.on_waiting = on_waiting
        self.client: IMAPClient | None = None
        self.idle_supported = False
        self._announced = False
        self._connected_at = 0.0
        self._renew_at: float | None = None  # when the token signed in with nears its expiry
        self._unmovable: set[int] = set()  # UIDs the server would not move to the processed folder
        self.waiting = 0  # the messages the fetch under way (or the last one) reads

    # ---- connection --------------------------------------------------------------------------

    def connect(self) -> IMAPClient:
        cfg = self.config
        context = ssl.create_default_context() if cfg.security != "none" else None
        client = IMAPClient(cfg.host, port=cfg.port, ssl=cfg.security == "ssl", ssl_context=context,
                            timeout=cfg.timeout, use_uid=True)
        quiet_imaplib(client)
        try:
            if cfg.security == "starttls":
                client.starttls(context)
            if cfg.token is not None:
                try:
                    client.oauth2_login(cfg.user, cfg.token())
                except LoginError:
                    # A cached token may have been revoked: forget it and try once with a token fresh from
                    # the provider (a second refusal is the provider's or the mailbox's answer).
                    if not invalidate(cfg.token):
                        raise
                    client.oauth2_login(cfg.user, cfg.token())
                self._renew_at = monotonic_until(getattr(cfg.token, "expires_at", None))
            else:
                client.login(cfg.user, cfg.password)
            # Aware datetimes: INTERNALDATE is the receipt time every deadline counts from.
            client.normalise_times = False
            client.select_folder(cfg.folder, readonly=cfg.processed_folder is None)
            self.idle_supported = b"IDLE" in client.capabilities()
            if cfg.processed_folder and not client.folder_exists(cfg.processed_folder):
                client.create_folder(cfg.processed_folder)
        except BaseException:
            _quietly_close(client)
            raise
        self.client = client
        self._announced = False
        self._connected_at = time.monotonic()
        return client

    def disconnect(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            try:
                client.logout()
            except (IMAPClientError, OSError, socket.error):
                _quietly_close(client)

    # ---- fetching ----------------------------------------------------------------------------

    def fetch_new(self) -> int:
        """Ingest every message after the cursor; returns how many were fetched."""
        client = self.client
        assert client is not None
        cfg = self.config
        selected = client.select_folder(cfg.folder, readonly=cfg.processed_folder is None)
        uidvalidity = int(selected.get(b"UIDVALIDITY", 0))
        known_validity, last_uid = self.hooks.read_cursor(cfg.mailbox)
        if known_validity != uidvalidity:
            # A new UIDVALIDITY means every UID changed meaning; start over and let the
            # Message-ID record skip what was already processed.
            if known_validity:
                log.warning("UIDVALIDITY of %s changed from %s to %s; rescanning", cfg.mailbox, known_validity,
                            uidvalidity)
            last_uid = 0
        # "N:*" always matches the highest UID, even when it is below N, so filter again.
        uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        position = CursorPosition(cfg.mailbox, uidvalidity)
        if cfg.processed_folder and known_validity == uidvalidity and last_uid:
            # Mail at or below the cursor is processed: a stop between a commit and the move left it here.
            stranded = [u for u in client.search(["UID", f"1:{last_uid}"]) if u <= last_uid]
            if stranded:
                log.info("moving %d processed message(s) left in %s", len(stranded), cfg.mailbox)
                self._move_processed(stranded)
        if not known_validity and not uids:
            # A mailbox read for the first time and found empty: remember that it has been read, so mail
            # arriving later is simply new mail.
            self.hooks.ingest([], position, skip_to=0)
        elif not known_validity and not self.hooks.first_run(cfg.mailbox, len(uids)):
            # Skip what is there: the cursor moves past it and only mail arriving later is answered.
            self.hooks.ingest([], position, skip_to=uids[-1])
            log.info("first run: skipped %d message(s) already in %s", len(uids), cfg.mailbox)
            uids = []
        self.waiting = len(uids)
        if uids and self.on_waiting is not None:
            self.on_waiting(len(uids))
        fetched = 0
        for chunk in fetch_chunks(uids, self._sizes(uids, uidvalidity), FETCH_CHUNK, FETCH_BYTES):
            arrivals, refused = self._fetch(chunk, uidvalidity)
            fetched += len(arrivals)
            # Each transaction's messages are moved as soon as it commits, not at the end of the chunk.
            moved = self._mover(set(refused)) if cfg.processed_folder else None
            if refused and not self._gives_another(set(refused), [a.uid for a in arrivals if a.uid]):
                # Nothing shows the fault is the message's rather than the server's: file nothing, and try
                # again after the usual wait, as after an outage.
                first = min(refused)
                raise MessageRefused(f"the server would not give message UID {first}: {refused[first]}")
            # Here, not at the top: the parser's module, which a read that finds nothing new never needs.
            from mailbot.domain.mail import unfetchable_record

            now = datetime.now(timezone.utc)
            arrivals.extend(Arrival(raw=unfetchable_record(cfg.mailbox, uidvalidity, uid, error, now),
                                    received_at=now, uid=uid, unfetchable=error) for uid, error in refused.items())
            arrivals.sort(key=lambda a: a.uid or 0)
            self.hooks.ingest(arrivals, position, committed=moved)
        self.hooks.fetch_succeeded(cfg.mailbox)
        return fetched

    def _sizes(self, uids: list[int], uidvalidity: int) -> dict[int, int]:
        """Each message's size as far as the plan needs it, so a backlog of large messages is fetched a few at a
        time (one message needs no plan): from the server's index for a message LARGER than half of SMALL, and
        SMALL for the rest, twice what the server says they can be (FETCH_CHUNK of them still make one FETCH).

        Only the large ones are asked for (RFC 3501 SEARCH LARGER, then their RFC822.SIZE): asking every message's
        size was one answer line per message, all parsed here before the first message was fetched, and a 2,000
        backlog's answer took 75-110 ms of Dovecot and this thread against ~40 ms for the search. A server that
        will not say is fetched by count alone."""
        if len(uids) < 2:
            return {}
        assert self.client is not None
        sizes: dict[int, int] = {}
        try:
            waiting = set(uids)
            asked = self.client.search(["UID", f"{uids[0]}:{uids[-1]}", "LARGER", str(SMALL // 2)])
            large = sorted(u for u in asked if u in waiting)
            for start in range(0, len(large), 1000):
                for uid, data in self.client.fetch(large[start:start + 1000], ["RFC822.SIZE"]).items():
                    size = data.get(b"RFC822.SIZE")
                    if isinstance(size, int):
                        sizes[uid] = size
        except IMAPClientError as exc:
            log.warning("IMAP %s: the server would not give the messages' sizes (%s)", self.config.mailbox, exc)
            self._reopen(uidvalidity)
            return {}
        for uid in uids:
            sizes.setdefault(uid, SMALL)
        return sizes

    def _fetch(self, chunk: list[int], uidvalidity: int) -> tuple[list[Arrival], dict[int, str]]:
        """The chunk's messages, and those the server would not give even alone (UID: what it said).

        A server that cannot give one message refuses the whole FETCH (Dovecot answers NO and drops the
        session when a message's file cannot be read); the chunk is then fetched one message at a time, each
        refusal tried again on a fresh session, so the others still come in.
        """
        assert self.client is not None
        try:
            arrivals, unanswered = _arrivals(self.client.fetch(chunk, FETCH_ITEMS), chunk)
        except IMAPClientError as exc:
            log.warning("IMAP %s: the server refused to FETCH %d message(s) (%s); fetching them one at a time",
                        self.config.mailbox, len(chunk), exc)
            self._reopen(uidvalidity)
            arrivals, unanswered = [], chunk
        refused: dict[int, str] = {}
        for uid in unanswered:
            for _ in range(ATTEMPTS_ALONE):
                try:
                    assert self.client is not None
                    got, missing = _arrivals(self.client.fetch([uid], FETCH_ITEMS), [uid])
                    if missing and self.client.search(["UID", str(uid)]):
                        refused[uid] = "it gave no body for it"
                        continue
                    arrivals.extend(got)  # or nothing: expunged between SEARCH and FETCH
                    refused.pop(uid, None)
                    break
                except IMAPClientError as exc:
                    refused[uid] = str(exc)
                    self._reopen(uidvalidity)
            if uid in refused:
                log.error("IMAP %s: the server would not give message UID %d: %s", self.config.mailbox, uid,
                          refused[uid])
        arrivals.sort(key=lambda a: a.uid or 0)
        return arrivals, refused

    def _reopen(self, uidvalidity: int) -> None:
        """A fresh session on the same folder (a refused FETCH may have ended the last one). A server that
        cannot be reached now raises, as any outage does."""
        if self.client is not None:
            _quietly_close(self.client)
            self.client = None
        self.connect()
        assert self.client is not None
        selected = self.client.select_folder(self.config.folder, readonly=self.config.processed_folder is None)
        if int(selected.get(b"UIDVALIDITY", 0)) != uidvalidity:
            raise MessageRefused("the folder's UIDVALIDITY changed while reading it; reading it again")

    def _gives_another(self, refused: set[int], given: list[int]) -> bool:
        """Whether the server, after refusing these, still gives another message of the folder (one it gave
        in this chunk if any): proof the refusals are the messages' own, not a server failing as it goes."""
        assert self.client is not None
        others = given or [uid for uid in self.client.search(["ALL"]) if uid not in refused]
        if not others:
            return False
        try:
            answer = self.client.fetch([others[-1]], ["BODY.PEEK[HEADER]"])
        except IMAPClientError:
            return False
        return isinstance((answer.get(others[-1]) or {}).get(b"BODY[HEADER]"), (bytes, bytearray))

    def _mover(self, refused: set[int]) -> Callable[[list[int]], None]:
        return lambda uids: self._move_processed([uid for uid in uids if uid not in refused])

    def _move_processed(self, uids: list[int]) -> None:
        uids = [uid for uid in uids if uid not in self._unmovable]
        if not uids:
            return
        try:
            self._move(uids)
        except IMAPClientError as exc:
            # One message the server cannot move (one it would not give, say) refuses the whole MOVE: move
            # them one at a time, and leave in place, once said, what will not go.
            log.warning("IMAP %s: the server refused to move %d message(s) (%s); moving them one at a time",
                        self.config.mailbox, len(uids), exc)
            for uid in uids:
                try:
                    self._move([uid])
                except IMAPClientError as one:
                    log.error("IMAP %s: message UID %d stays in %s: the server would not move it: %s",
                              self.config.mailbox, uid, self.config.folder, one)
                    self._unmovable.add(uid)

    def _move(self, uids: list[int]) -> None:
        client = self.client
        assert client is not None and self.config.processed_folder
        if client.has_capability("MOVE"):
            client.move(uids, self.config.processed_folder)
        else:
            client.copy(uids, self.config.processed_folder)
            client.delete_messages(uids)
            client.uid_expunge(uids) if client.has_capability("UIDPLUS") else client.expunge()

    # ---- the long-running loop ---------------------------------------------------------------

    def run(self, stop: threading.Event, on_fetched: Callable[[int], None] | None = None) -> None:
        """Fetch, then wait in IDLE (or poll), until ``stop`` is set; reconnect with backoff on errors."""
        backoff = BACKOFF_START
        while not stop.is_set():
            try:
                if self.client is None:
                    self.connect()
                count = self.fetch_new()
                if on_fetched:
                    on_fetched(count)
                backoff = BACKOFF_START
                self._wait_for_mail(stop)
                if self._token_expiring():
                    self.disconnect()  # signed in again with a fresh token before the old one expires
            except FirstRunError:
                raise  # nothing a retry can fix: the operator has to choose
            except (LoginError, TokenError) as exc:
                self._failed(exc, auth=True)
                stop.wait(self.config.login_backoff)
            except (IMAPClientError, OSError, socket.error, ssl.SSLError, EOFError) as exc:
                self._failed(exc, auth=False)
                stop.wait(backoff)
                backoff = next_backoff(backoff)
            except Exception as exc:  # noqa: BLE001  (e.g. the database is unwell: keep the thread alive, retry)
                log.exception("intake from %s failed; retrying", self.config.mailbox)
                self._failed(exc, auth=False)
                stop.wait(backoff)
                backoff = next_backoff(backoff)
        self.disconnect()

    def _token_expiring(self) -> bool:
        """Signed in with a token that expires within five minutes, or that is older than token_reconnect."""
        if self.config.token is None:
            return False
        now = time.monotonic()
        return now - self._connected_at > self.config.token_reconnect or (
            self._renew_at is not None and now >= self._renew_at)

    def _failed(self, exc: BaseException, auth: bool) -> None:
        log.warning("IMAP %s: %s: %s", self.config.mailbox, type(exc).__name__, exc)
        try:
            self.hooks.fetch_failed(self.config.mailbox, f"{type(exc).__name__}: {exc}", auth)
        except Exception:  # noqa: BLE001  (recording the failure must not end intake)
            log.exception("could not record the failure of %s", self.config.mailbox)
        finally:
            if self.client is not None:
                _quietly_close(self.client)
                self.client = None

    def _wait_for_mail(self, stop: threading.Event) -> None:
        """Return when new mail may be there: an IDLE notification, the poll interval, or a stop."""
        client = self.client
        assert client is not None
        cfg = self.config
        deadline = time.monotonic() + (min(cfg.poll_interval, cfg.idle_renew) if self.idle_supported
                                       else cfg.poll_interval)
        if cfg.token is not None and self._renew_at is not None:
            deadline = min(deadline, self._renew_at)  # wake to sign in afresh before the token expires
        if not self.idle_supported:
            while not stop.is_set() and time.monotonic() < deadline:
                stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            return
        client.idle()
        if not self._announced:
            log.info("IMAP intake idling on %s", cfg.mailbox)
            self._announced = True
        quick_empty = 0
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                wait = min(1.0, max(0.05, deadline - time.monotonic()))
                began = time.monotonic()
                responses = client.idle_check(timeout=wait)
                if any(_signals_new_mail(r) for r in responses):
                    return
                # imapclient swallows EOF inside idle_check and returns nothing at once, so a server
                # that went away looks like a socket that is always readable but never says anything.
                quick_empty = quick_empty + 1 if not responses and time.monotonic() - began < wait / 4 else 0
                if quick_empty >= 3:
                    raise ConnectionError("the IMAP server closed the connection during IDLE")
        finally:
            if quick_empty < 3:
                client.idle_done()


def quiet_imaplib(client: IMAPClient) -> None:
    """Turn off imaplib's own debugging, which imapclient sets to its highest level to route it to logging:
    imaplib then writes the whole of every FETCH answer (each message's bytes, as a repr) into a log line,
    whether or not anything logs it. On a backlog that was a copy several times the size of every chunk of
    mail fetched, and the CPU to make it. Left on when its logger is set to show it."""
    imap = getattr(client, "_imap", None)
    if imap is not None and not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        imap.debug = 0


def fetch_chunks(uids: list[int], sizes: dict[int, int], count: int = FETCH_CHUNK,
                 budget: int = FETCH_BYTES) -> list[list[int]]:
    """The UIDs in order, in FETCHes of at most ``count`` messages and ``budget`` bytes (by ``sizes``; a
    message of unknown size counts as nothing, one larger than the budget goes alone)."""
    return list(sized_batches(uids, sizes.get, count, budget))


class MessageRefused(IMAPClientError):
    """The server would not give a message, and nothing yet shows the fault is that message's: intake waits
    and tries again, as after an outage, with the mail before it taken in."""


def _arrivals(response: dict, uids: list[int]) -> tuple[list[Arrival], list[int]]:
    """The messages a FETCH gave, and the UIDs it gave no body for (expunged meanwhile, or refused)."""
    arrivals, missing = [], []
    for uid in uids:
        body = (response.get(uid) or {}).get(b"BODY[]")
        if isinstance(body, (bytes, bytearray)):
            arrivals.append(Arrival(raw=bytes(body), received_at=_aware(response[uid].get(b"INTERNALDATE")), uid=uid))
        else:
            missing.append(uid)
    return arrivals, missing


def _signals_new_mail(response: object) -> bool:
    return isinstance(response, tuple) and len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT")


def _aware(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc)


def _quietly_close(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except (IMAPClientError, OSError, socket.error, AttributeError):
        pass
