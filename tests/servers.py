"""Real, throwaway mail servers for tests and benchmarks: a Dovecot IMAP server and an SMTP sink.

Nothing here is mocked. `DovecotServer` runs the system's `dovecot` binary in the foreground with a config
written into its own directory; `SmtpSink` runs an aiosmtpd server in a child process that writes every
message it accepts to a directory. The classes do not depend on pytest, so benchmarks can use them too.

The sink's child process is this file itself: `python tests/servers.py sink --port P --dir D --control F --ready R`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import getpass
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Self, cast

import psutil

if TYPE_CHECKING:
    from imapclient import IMAPClient

HOST = "127.0.0.1"

# A stopped server must be gone quickly; anything slower than this is a bug worth a loud failure.
STOP_TIMEOUT = 10.0
START_TIMEOUT = 5.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    There is a small race between closing this socket and the server binding the port, which is
    acceptable for tests; aiosmtpd cannot bind port 0 and report it back, so this is needed anyway.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def dovecot_binary() -> str | None:
    """Find `dovecot`, also in /usr/sbin, which a non-root user's PATH often lacks."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/local/sbin"
    return shutil.which("dovecot", path=path)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_port_free(host: str, port: int, timeout: float) -> None:
    """Wait until nothing listens on the port, so a restart can bind it again."""
    deadline = time.monotonic() + timeout
    while _port_open(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {host}:{port} still accepts connections after {timeout} s")
        time.sleep(0.01)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> None:
    """Wait until the processes have exited; a zombie counts as gone, since reaping it is init's job."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        while True:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"process {proc.pid} outlived its Dovecot server")
            time.sleep(0.005)


def _read_from(path: Path, offset: int, limit: int = 3000) -> str:
    """The end of what a file gained since `offset`, for error messages."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace").strip()[-limit:] or "(empty)"
    except FileNotFoundError:
        return "(not written)"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def _terminate(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM a child and reap it; SIGKILL only if it ignores us, so no zombie is left behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _ServerProcess:
    """What the throwaway servers share: one child process, whether it runs, its id, and ``with`` starting it."""

    _proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server process's id (benchmarks read its CPU time)."""
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> Self:
        self.start()
        return self


class DovecotServer(_ServerProcess):
    """A private Dovecot IMAP server on 127.0.0.1, with its config, sockets, state, log and mail under `root`.

    Use as a context manager or call start()/stop(). restart() keeps the port and the mail, so a test can
    check how a client that is idling behaves when the server goes away and comes back.
    """

    host = HOST

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        users: dict[str, str] | None = None,
        oauth2_introspection_url: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.root = Path(root)
        self.port = port if port is not None else free_port()
        # With a certificate and its key: STARTTLS on `port` and implicit TLS (IMAPS) on `tls_port`. Dovecot still
        # takes a password in clear from loopback (it counts such a connection as secured); its log says "TLS" of
        # each sign-in that came over it.
        self.tls = tls
        self.tls_port = free_port() if tls else 0
        self.users: dict[str, str] = dict(users) if users is not None else {"complaints": "secret"}
        # With an introspection URL, XOAUTH2 and OAUTHBEARER sign-ins are checked there (Dovecot's oauth2 passdb).
        self.oauth2_introspection_url = oauth2_introspection_url
        self.conf_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self.stderr_path = self.root / "dovecot.stderr"
        self.passwd_path = self.root / "passwd"
        self.mail_root = self.root / "mail"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("Dovecot is already running")
        binary = dovecot_binary()
        if binary is None:
            raise FileNotFoundError("dovecot is not installed: run scripts/setup.sh (apt-get install dovecot-imapd)")
        self._prepare_dirs()
        self._write_passwd()
        self.conf_path.write_text(self._config())
        # Logs are appended to across restarts, so a failure message shows only what this start wrote.
        offsets = {path: path.stat().st_size if path.exists() else 0 for path in (self.log_path, self.stderr_path)}
        # stderr goes to a file, not a pipe nobody reads, so a chatty Dovecot can never block on it.
        with open(self.stderr_path, "ab") as stderr:
            self._proc = subprocess.Popen(
                [binary, "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _port_open(self.host, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                code = self._proc.poll()
                self.stop(graceful=False)
                output = {path.name: _read_from(path, offset) for path, offset in offsets.items()}
                raise RuntimeError(
                    f"Dovecot did not accept connections on {self.host}:{self.port} within {START_TIMEOUT} s "
                    f"(exit code {code}).\n"
                    + "\n".join(f"--- {name}:\n{text}" for name, text in output.items())
                )
            time.sleep(0.01)

    def stop(self, graceful: bool = True) -> None:
        """Stop Dovecot and every process it started, so nothing lingers between tests.

        graceful=True SIGTERMs every Dovecot process, so idling clients get "* BYE Server shutting down."
        (SIGTERM to the master alone leaves imap processes serving their clients for ~10 s more). It takes
        ~1.05 s because the master keeps its log process for a second.
        graceful=False SIGKILLs them all at once (~20 ms): clients just see the connection drop.
        """
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        children = self._children(proc.pid)
        # Dovecot was started in its own session, so its process group holds exactly the server's processes.
        if graceful:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_gone(children, STOP_TIMEOUT)
        _wait_port_free(self.host, self.port, STOP_TIMEOUT)

    def restart(self, graceful: bool = True) -> None:
        """Stop, then start again on the same port with the same mail."""
        self.stop(graceful)
        self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(graceful=False)

    @staticmethod
    def _children(pid: int) -> list[psutil.Process]:
        try:
            return psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    # -- set-up -----------------------------------------------------------------------------------

    def _mail_owner(self) -> tuple[str, int, int]:
        """The account mail processes run as: `dovecot` under root (Dovecot refuses uid 0), else ourselves."""
        entry = pwd.getpwnam("dovecot") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        return entry.pw_name, entry.pw_uid, entry.pw_gid

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.mail_root.mkdir(exist_ok=True)
        if os.geteuid() != 0:
            return
        # Under root the mail and auth processes run as `dovecot`, which must be able to walk into root/ and
        # own the mail; tempfile.mkdtemp and pytest's tmp_path make 0700 directories that it cannot enter.
        self.root.chmod(0o755)
        _, uid, gid = self._mail_owner()
        for path in [self.mail_root, *self.mail_root.rglob("*")]:
            os.chown(path, uid, gid)
        blocked = [p for p in self.root.resolve().parents if not p.stat().st_mode & 0o001]
        if blocked:
            raise PermissionError(
                f"the dovecot user cannot reach {self.root}: {blocked[0]} is not world-searchable "
                "(pytest's tmp_path and tempfile.mkdtemp() make 0700 directories: chmod 0755 the parent, "
                "as tests/conftest.py does)"
            )

    def _write_passwd(self) -> None:
        lines = [f"{user}:{{PLAIN}}{password}::::::\n" for user, password in self.users.items()]
        tmp = self.passwd_path.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        tmp.chmod(0o644)
        tmp.replace(self.passwd_path)  # Dovecot re-reads the file when it changes, so replace it whole.

    def add_user(self, user: str, password: str = "secret") -> None:
        """Add a login, also while running (Dovecot notices the changed passwd-file on the next login)."""
        self.users[user] = password
        self._write_passwd()

    def _config(self) -> str:
        name, uid, gid = self._mail_owner()
        rootless = ""
        if os.geteuid() != 0:
            # Without root Dovecot can neither switch users nor chroot its login and anvil processes.
            rootless = (
                f"default_login_user = {name}\n"
                f"default_internal_user = {name}\n"
                f"default_internal_group = {grp.getgrgid(gid).gr_name}\n"
                "service anvil {\n  chroot =\n}\n"
                "service imap-login {\n  chroot =\n}\n"
            )
        return f"""\
# Written by tests/servers.py for a throwaway test server; every path stays inside {self.root}.
protocols = imap
listen = {self.host}
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log_path}
instance_name = mailbot-test-{self.port}
{self._ssl()}auth_mechanisms = plain login{" xoauth2 oauthbearer" if self.oauth2_introspection_url else ""}
auth_verbose = yes
first_valid_uid = 1
mail_location = maildir:{self.mail_root}/%u
mail_fsync = never
# Tests open several connections per user (bot, IDLE watcher, assertions); the default of 10 is tight.
mail_max_userip_connections = 200
# Keepalive for idling clients: the default ("OK Still here" every 2 minutes) is fine for tests.
imap_idle_notify_interval = 2 mins
{self._oauth2_passdb()}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_path}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail_root}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
  }}
}}
{rootless}"""

    def _ssl(self) -> str:
        if not self.tls:
            return "ssl = no\ndisable_plaintext_auth = no\n"
        cert, key = self.tls
        return f"ssl = required\nssl_cert = <{cert}\nssl_key = <{key}\ndisable_plaintext_auth = yes\n"

    def _oauth2_passdb(self) -> str:
        if not self.oauth2_introspection_url:
            return ""
        args = self.root / "dovecot-oauth2.conf.ext"
        args.write_text(f"introspection_url = {self.oauth2_introspection_url}\nintrospection_mode = post\n"
                        "force_introspection = yes\nusername_attribute = email\nactive_attribute = active\n"
                        "active_value = true\n")
        return f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {args}\n}}\n"

    # -- helpers for tests ------------------------------------------------------------------------

    def maildir(self, user: str = "complaints") -> Path:
        return self.mail_root / user

    def client(self, user: str = "complaints") -> IMAPClient:
        """A logged-in IMAPClient; the caller must logout() or shutdown() it."""
        # Imported here so the sink's child process, which runs this file, does not load imapclient.
        from imapclient import IMAPClient

        imap = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        try:
            if self.tls:
                import ssl

                imap.starttls(ssl.create_default_context(cafile=str(self.tls[0])))
            imap.login(user, self.users[user])
        except BaseException:
            imap.shutdown()
            raise
        return imap

    def append(
        self,
        raw: bytes,
        folder: str = "INBOX",
        user: str = "complaints",
        internaldate: datetime | None = None,
        flags: tuple[bytes | str, ...] | list[bytes | str] = (),
    ) -> int:
        """APPEND a message over a short-lived connection and return its UID (from APPENDUID)."""
        imap = self.client(user)
        try:
            response = imap.append(folder, raw, flags=flags, msg_time=internaldate)
        finally:
            imap.logout()
        match = re.search(rb"\[APPENDUID \d+ (\d+)\]", response)
        if match is None:
            raise RuntimeError(f"APPEND gave no APPENDUID: {response!r}")
        return int(match.group(1))

    def create_folder(self, name: str, user: str = "complaints") -> None:
        imap = self.client(user)
        try:
            imap.create_folder(name)
        finally:
            imap.logout()


@contextlib.contextmanager
def throwaway_dovecot(**options: Any) -> Iterator[DovecotServer]:
    """A fresh, started Dovecot (``DovecotServer``'s options) in a temporary directory of its own, gone afterwards.

    Not under pytest's tmp_path: pytest makes its parents 0700, and under root Dovecot's mail processes run as the
    `dovecot` user, which must be able to walk down to the mail directory. It is killed rather than stopped
    gracefully (~1 s), since nobody is watching any more.
    """
    root = Path(tempfile.mkdtemp(prefix="mailbot-dovecot-"))
    root.chmod(0o755)
    server = DovecotServer(root, **options)
    try:
        server.start()
        yield server
    finally:
        server.stop(graceful=False)
        shutil.rmtree(root, ignore_errors=True)

# ------------------------------------------------------------------------------------------------
# SMTP sink
# ------------------------------------------------------------------------------------------------


@dataclass
class SinkMessage:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage = field(repr=False)
    received_at: float
    path: Path
    tls: bool = False  # the session had said STARTTLS before this letter


def self_signed_cert(folder: Path, host: str = HOST) -> tuple[Path, Path]:
    """A certificate for ``host`` (an IP address) that is its own authority, and its key: ``cert.pem`` and
    ``key.pem`` in ``folder``. A client trusts it through ``SSL_CERT_FILE``, as the system's store."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class SmtpSink(_ServerProcess):
    """An SMTP server in a separate process that accepts everything and stores it as numbered .eml files.

    It runs in its own process because the bot under test runs in the test process, and an in-process
    sink shares the GIL with it (measured ceiling ~190 msg/s versus ~300 msg/s out of process).
    Each message is `NNNNNN.eml` (the bytes as received) plus `NNNNNN.json` (envelope and arrival time);
    the JSON is renamed into place first, so an .eml that is visible always has its envelope.
    """

    host = HOST

    def __init__(self, root: Path, port: int | None = None, xoauth2_tokens: dict[str, str] | None = None,
                 pipelining: bool = True, starttls: tuple[Path, Path] | None = None) -> None:
        self.root = Path(root)
        # With a certificate and its key, the sink offers STARTTLS and takes no mail before it (as Microsoft 365
        # and Gmail on port 587), and each message's envelope says whether its session had said it.
        self.starttls = starttls
        # Offer PIPELINING (RFC 2920), as Microsoft 365, Gmail and Postfix do; aiosmtpd reads a group of commands
        # one line at a time and answers each in turn, but does not say so itself.
        self.pipelining = pipelining
        self.port = port if port is not None else free_port()
        self.dir = self.root / "messages"
        # With tokens (token -> user), the sink requires AUTH XOAUTH2 and accepts only those; the file is read at
        # every sign-in, so a test can revoke or add a token while the sink runs (set_xoauth2_tokens).
        self.xoauth2_path = self.root / "xoauth2.json" if xoauth2_tokens is not None else None
        if xoauth2_tokens is not None:
            self.set_xoauth2_tokens(xoauth2_tokens)
        self.control_path = self.root / "control.json"
        self.recipients_path = self.root / "recipients.json"
        self.senders_path = self.root / "senders.json"
        self.log_path = self.root / "sink.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready_path = self.root / "ready"

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("the SMTP sink is already running")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ready_path.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "sink",
                    "--host", self.host,
                    "--port", str(self.port),
                    "--dir", str(self.dir),
                    "--control", str(self.control_path),
                    "--ready", str(self._ready_path),
                    *(["--xoauth2", str(self.xoauth2_path)] if self.xoauth2_path else []),
                    *(["--pipelining"] if self.pipelining else []),
                    *(["--starttls", str(self.starttls[0]), str(self.starttls[1])] if self.starttls else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # The child touches the ready file once it listens; polling the port instead would open a session.
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready_path.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                _terminate(self._proc)
                code, self._proc = self._proc.returncode, None
                raise RuntimeError(
                    f"SMTP sink did not start on {self.host}:{self.port} within {START_TIMEOUT} s "
                    f"(exit code {code}). Log tail:\n{_tail(self.log_path)}"
                )
            time.sleep(0.005)

    def stop(self) -> None:
        if self._proc is None:
            return
        _terminate(self._proc)
        self._proc = None
        _wait_port_free(self.host, self.port, STOP_TIMEOUT)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_xoauth2_tokens(self, tokens: dict[str, str]) -> None:
        assert self.xoauth2_path is not None
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.xoauth2_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(tokens))
        tmp.replace(self.xoauth2_path)

    # -- what arrived -----------------------------------------------------------------------------

    def messages(self) -> list[SinkMessage]:
        """Every message received so far, in arrival order."""
        result = []
        for eml in sorted(self.dir.glob("*.eml")):
            envelope = json.loads(eml.with_suffix(".json").read_text())
            raw = eml.read_bytes()
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            result.append(
                SinkMessage(
                    mail_from=envelope["mail_from"],
                    rcpt_tos=list(envelope["rcpt_tos"]),
                    raw=raw,
                    message=parsed,
                    received_at=float(envelope["received_at"]),
                    path=eml,
                    tls=bool(envelope.get("tls")),
                )
            )
        return result

    def count(self) -> int:
        return sum(1 for _ in self.dir.glob("*.eml"))

    def wait_for(self, count: int, timeout: float = 10.0) -> list[SinkMessage]:
        """Wait until at least `count` messages have arrived and return all of them."""
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"SMTP sink got {self.count()} of {count} messages within {timeout} s")
            time.sleep(0.01)
        return self.messages()

    def clear(self) -> None:
        """Forget every message received so far (numbering goes on, so order stays right)."""
        for path in self.dir.iterdir():
            if path.suffix in (".eml", ".json"):
                path.unlink(missing_ok=True)

    # -- failure injection ------------------------------------------------------------------------

    def refuse(self, code: int = 451, times: int | None = None, message: str | None = None) -> None:
        """Answer DATA with `code` (451 temporary, 550 permanent) for the next `times` transactions, or until accept().

        The control file carries a fresh id so the child counts refusals per call without ever writing
        the file back, which leaves no race between this process and the sink.
        """
        if not 400 <= code <= 599:
            raise ValueError(f"a refusal needs a 4xx or 5xx code, not {code}")
        text = message or ("try again later" if code < 500 else "message rejected")
        control = {"id": time.time_ns(), "code": code, "times": times, "text": text}
        tmp = self.control_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(control))
        tmp.replace(self.control_path)

    def refuse_recipients(self, codes: dict[str, int]) -> None:
        """Answer RCPT TO for these addresses with their code (4xx or 5xx) until accept(); others are taken."""
        if not all(400 <= code <= 599 for code in codes.values()):
            raise ValueError(f"a refusal needs a 4xx or 5xx code, not {codes}")
        rules = {address.lower(): f"{code} {'mailbox busy' if code < 500 else 'no such mailbox'}"
                 for address, code in codes.items()}
        tmp = self.recipients_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rules))
        tmp.replace(self.recipients_path)

    def refuse_senders(self, answers: dict[str, str]) -> None:
        """Answer MAIL FROM for these addresses with their line (a 5xx or 4xx and its words) until accept()."""
        if not all(answer[:1] in "45" and answer[:3].isdigit() for answer in answers.values()):
            raise ValueError(f"a refusal needs a 4xx or 5xx code: {answers}")
        tmp = self.senders_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({address.lower(): answer for address, answer in answers.items()}))
        tmp.replace(self.senders_path)

    def accept(self) -> None:
        self.control_path.unlink(missing_ok=True)
        self.recipients_path.unlink(missing_ok=True)
        self.senders_path.unlink(missing_ok=True)


class ScriptedSmtp(asyncio.Protocol):
    """An SMTP server on loopback (``loop.create_server(lambda: ScriptedSmtp(...), ...)``) that answers each command
    as ``answers`` says (by verb, b"." for the letter's end, b"greeting" for its first words; an empty answer is none,
    ever), otherwise 250 and 354.
    Offering PIPELINING, it holds its replies to a group until the group's DATA (so a client that waits for each
    reply never gets one), then sends them ``gap`` seconds apart, the first ``group_after`` seconds late (a server
    slow to check a sender); every answer goes ``distance`` seconds after the command, as from a server that far
    away. ``log`` keeps each connection, every read, each letter's text, and a command that came while a reply was
    still owed to one before it ("early") to a server without PIPELINING."""

    def __init__(self, pipelining: bool, answers: dict[bytes, bytes] | None = None,
                 log: dict[str, list[object]] | None = None, distance: float = 0.0, gap: float = 0.02,
                 group_after: float = 0.0) -> None:
        self.pipelining, self.answers = pipelining, answers if answers is not None else {}
        self.log = log if log is not None else self.new_log()
        self.distance, self.gap, self.group_after = distance, gap, group_after
        self.buffer = b""
        self.held: list[bytes] = []
        self.text: list[bytes] = []
        self.in_data = False

    @staticmethod
    def new_log() -> dict[str, list[object]]:
        return {"connections": [], "reads": [], "texts": [], "early": []}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self.log["connections"].append(len(self.log["connections"]) + 1)
        self.transport.write(self.answers.get(b"greeting", b"220 scripted ESMTP") + b"\r\n")

    def data_received(self, data: bytes) -> None:
        self.log["reads"].append(data)
        self.buffer += data
        while b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            if self.in_data:
                if line == b".":
                    self.in_data = False
                    self.log["texts"].append(b"".join(self.text))
                    answer = self.answers.get(b".", b"250 queued")
                    if answer:  # an empty answer is none, ever
                        self.reply(answer)
                else:
                    self.text.append(line + b"\r\n")
                continue
            if not self.pipelining and b"\r\n" in self.buffer:
                self.log["early"].append(self.buffer)  # the next command came before this one's reply
            verb = line[:4].upper()
            if verb == b"EHLO" and verb not in self.answers:
                self.reply(b"250-scripted\r\n" + (b"250-PIPELINING\r\n" if self.pipelining else b"") + b"250 SIZE 100000")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
            else:
                answer = self.answers.get(verb, b"354 go ahead" if verb == b"DATA" else b"250 ok")
                if not answer:  # this command is never answered
                    continue
                if verb == b"DATA" and answer.startswith(b"354"):
                    self.in_data, self.text = True, []
                self.reply(answer, group_ends=verb in (b"DATA", b"RSET", b"NOOP", b"EHLO", b"HELO"))

    def reply(self, answer: bytes, group_ends: bool = True) -> None:
        self.held.append(answer + b"\r\n")
        if group_ends or not self.pipelining:
            # A group's replies go one at a time: a client must wait for the last of them, not only for those
            # that came in the same read as the first.
            loop = asyncio.get_running_loop()
            late = self.distance + (self.group_after if len(self.held) > 1 else 0.0)
            for n, held in enumerate(self.held):
                loop.call_later(late + self.gap * n, self.write, held)
            self.held = []

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)


def _run_sink(host: str, port: int, directory: Path, control: Path, ready: Path,
              xoauth2: Path | None = None, pipelining: bool = False,
              starttls: tuple[Path, Path] | None = None) -> None:
    """The sink child process: serve SMTP until SIGTERM."""
    import base64
    import ssl

    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

    numbers = [int(p.stem) for p in directory.glob("*.eml") if p.stem.isdigit()]
    state = {"next": max(numbers, default=0) + 1, "refused": {}}

    def write_atomically(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def refusal() -> str | None:
        try:
            rule = json.loads(control.read_text())
        except (FileNotFoundError, ValueError):
            return None
        refused: dict[int, int] = state["refused"]  # type: ignore[assignment]
        done = refused.get(rule["id"], 0)
        if rule["times"] is not None and done >= rule["times"]:
            return None
        refused[rule["id"]] = done + 1
        return f"{rule['code']} {rule['text']}"

    recipients_rules = control.with_name("recipients.json")
    senders_rules = control.with_name("senders.json")

    def rules_in(path: Path) -> dict[str, str]:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    class Handler:
        async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                              responses: list[str]) -> list[str]:
            session.host_name = hostname  # what aiosmtpd does itself when no handler answers EHLO
            *lines, last = responses  # the last is "250 HELP"
            return [*lines, *(["250-PIPELINING"] if pipelining else []), last]

        async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
            """AUTH XOAUTH2 with the initial response: base64 of user=U^Aauth=Bearer T^A^A."""
            try:
                tokens = json.loads(xoauth2.read_text()) if xoauth2 else {}
                fields = dict(part.split("=", 1) for part in
                              base64.b64decode(args[1]).decode().split("\x01") if "=" in part)
                user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
            except (IndexError, ValueError, OSError):
                return AuthResult(success=False, handled=False)
            return AuthResult(success=tokens.get(token) == user, handled=False, auth_data=user)

        async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                              mail_options: list[str]) -> str:
            refusal = rules_in(senders_rules).get(address.lower())
            if refusal is not None:
                return refusal
            envelope.mail_from = address  # what aiosmtpd does itself when no handler answers MAIL
            envelope.mail_options.extend(mail_options)
            return "250 OK"

        async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                              rcpt_options: list[str]) -> str:
            rules = rules_in(recipients_rules)
            if address.lower() in rules:
                return rules[address.lower()]
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            received_at = time.time()
            answer = refusal()
            if answer is not None:
                return answer
            number = state["next"]
            state["next"] = number + 1  # type: ignore[operator]
            name = f"{number:06d}"
            meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "received_at": received_at,
                    "tls": session.ssl is not None}
            content = envelope.original_content if envelope.original_content is not None else envelope.content
            assert isinstance(content, bytes)
            write_atomically(directory / f"{name}.json", json.dumps(meta).encode())
            write_atomically(directory / f"{name}.eml", content)
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        loop.add_signal_handler(signal.SIGINT, stopping.set)
        handler = Handler()
        tls: dict[str, object] = {}
        if starttls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*starttls)
            tls = {"tls_context": context, "require_starttls": True}
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink.test", enable_SMTPUTF8=True, **tls,  # type: ignore[arg-type]
                         **({"auth_required": True, "auth_require_tls": False} if xoauth2 else {})),
            host=host,
            port=port,
        )
        ready.touch()
        await stopping.wait()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="test mail servers")
    sub = parser.add_subparsers(dest="command", required=True)
    sink = sub.add_parser("sink", help="run the SMTP sink in the foreground")
    sink.add_argument("--host", default=HOST)
    sink.add_argument("--port", type=int, required=True)
    sink.add_argument("--dir", type=Path, required=True)
    sink.add_argument("--control", type=Path, required=True)
    sink.add_argument("--ready", type=Path, required=True)
    sink.add_argument("--xoauth2", type=Path, default=None)
    sink.add_argument("--pipelining", action="store_true")
    sink.add_argument("--starttls", type=Path, nargs=2, metavar=("CERT", "KEY"), default=None)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    _run_sink(args.host, args.port, args.dir, args.control, args.ready, args.xoauth2, args.pipelining,
              tuple(args.starttls) if args.starttls else None)


if __name__ == "__main__":
    _main(sys.argv[1:])


# ------------------------------------------------------------------------------------------------
# An OAuth2 token introspection endpoint (RFC 7662) for Dovecot's oauth2 passdb
# ------------------------------------------------------------------------------------------------


class TokenIntrospection:
    """POST /introspect with token=T answers {"active": true, "email": USER} for a token in ``tokens``
    (token -> user; change it while running to revoke or add one), {"active": false} otherwise."""

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        import http.server
        import threading
        import urllib.parse

        self.tokens: dict[str, str] = dict(tokens or {})
        self.asked: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (the http.server name)
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                token = (form.get("token") or [""])[0]
                outer.asked.append(token)
                user = outer.tokens.get(token)
                body = json.dumps({"active": True, "email": user} if user else {"active": False}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (quiet)
                return

        self._server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self._server.server_address[1]}/introspect"
        self._thread = threading.Thread(target=self._server.serve_forever, name="introspection", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class TokenEndpoint:
    """A stand-in for Microsoft's and Google's token services, over HTTPS on loopback with its own certificate.

    Microsoft (msal, with MAILBOT_MS_AUTHORITY = ``url``): instance discovery at ``/common/discovery/instance``,
    OpenID configuration at ``/<tenant>/v2.0/.well-known/openid-configuration``, and client credentials at
    ``/<tenant>/oauth2/v2.0/token`` (the client id and secret must be ``ms_client``). Google (google-auth, with
    the key file from ``google_key_file``): a signed JWT assertion at ``/google/token``, checked against the
    key, the scope and the subject. Each token granted is passed to ``on_grant(token, user)`` unless
    ``grant_unusable`` is set (a token the mail servers will not take: a permission missing); ``expires_in``
    is what the grant says. ``requests`` lists the paths asked, ``granted`` the tokens.
    """

    def __init__(self, root: Path, on_grant: Callable[[str, str], None], user: str = "complaints") -> None:
        import http.server
        import ssl
        import threading
        import urllib.parse

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.on_grant = on_grant
        self.user = user
        self.ms_client = ("app-id", "app-secret")
        self.tenant = "tenant-1"
        self.expires_in = 3600
        self.grant_unusable = False
        self.requests: list[str] = []
        self.granted: list[str] = []
        self.ca_file, key_file = self._certificate()
        self._google_public_key, self._google_private_pem = self._rsa_key()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                path = urllib.parse.urlparse(self.path).path
                outer.requests.append(f"GET {path}")
                if path == "/common/discovery/instance":
                    self._answer(200, {"tenant_discovery_endpoint":
                                       f"{outer.url}/{outer.tenant}/v2.0/.well-known/openid-configuration",
                                       "api-version": "1.1", "metadata": []})
                elif path == f"/{outer.tenant}/v2.0/.well-known/openid-configuration":
                    base = f"{outer.url}/{outer.tenant}"
                    self._answer(200, {"issuer": f"{base}/v2.0", "token_endpoint": f"{base}/oauth2/v2.0/token",
                                       "authorization_endpoint": f"{base}/oauth2/v2.0/authorize"})
                else:
                    self._answer(404, {"error": "not_found"})

            def do_POST(self) -> None:  # noqa: N802
                path = urllib.parse.urlparse(self.path).path
                outer.requests.append(f"POST {path}")
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}
                if path == f"/{outer.tenant}/oauth2/v2.0/token":
                    status, body = outer._microsoft(form)
                elif path == "/google/token":
                    status, body = outer._google(form)
                else:
                    status, body = 404, {"error": "not_found"}
                self._answer(status, body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self._server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-endpoint", daemon=True)
        self._thread.start()

    # ---- the two services ----------------------------------------------------------------------

    def _grant(self) -> tuple[int, dict[str, object]]:
        token = f"granted-{len(self.granted) + 1}-{os.urandom(4).hex()}"
        self.granted.append(token)
        if not self.grant_unusable:
            self.on_grant(token, self.user)
        return 200, {"token_type": "Bearer", "access_token": token, "expires_in": self.expires_in}

    def _microsoft(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if (form.get("client_id"), form.get("client_secret")) != self.ms_client:
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret "
                         "provided.\r\nTrace ID: 0"}
        if "https://outlook.office365.com/.default" not in form.get("scope", "").split():
            return 400, {"error": "invalid_scope", "error_description": "AADSTS70011: wrong scope"}
        return self._grant()

    def _google(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        from google.auth import jwt

        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(form.get("assertion", ""), certs={"k1": self._google_public_key},
                                # google-auth addresses the assertion to Google's token service by name.
                                audience=["https://oauth2.googleapis.com/token", f"{self.url}/google/token"])
        except ValueError as exc:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT Signature: {exc}"}
        if claims.get("scope") != "https://mail.google.com/" or claims.get("sub") != self.user:
            return 401, {"error": "unauthorized_client", "error_description": "Client is unauthorized to retrieve "
                         "access tokens using this method, or client not authorized for any of the scopes requested."}
        return self._grant()

    def google_key_file(self, path: Path) -> Path:
        """A service account key file whose token_uri is this endpoint, as Google's console writes one."""
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "mailbot-test", "private_key_id": "k1",
            "private_key": self._google_private_pem, "client_email": "mailbot@mailbot-test.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": f"{self.url}/google/token"}))
        return path

    # ---- keys and certificate ------------------------------------------------------------------

    def _rsa_key(self) -> tuple[str, str]:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return public, private

    def _certificate(self) -> tuple[Path, Path]:
        """A self-signed certificate for 127.0.0.1; the bot trusts it through REQUESTS_CA_BUNDLE."""
        return self_signed_cert(self.root / "endpoint-tls")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# ------------------------------------------------------------------------------------------------
# PostgreSQL
# ------------------------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class PostgresServer:
    """A throwaway PostgreSQL on 127.0.0.1 in `root`, run as the `postgres` user (initdb refuses root)."""

    host = HOST

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = Path(root)
        self.port = port if port is not None else free_port()
        self.datadir = self.root / "pgdata"
        self.bindir = postgres_bindir()

    def _as_postgres(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def start(self) -> None:
        if self.bindir is None:
            raise FileNotFoundError("PostgreSQL is not installed: run scripts/setup.sh")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        subprocess.run(self._as_postgres(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                                         "--auth=trust", "-E", "UTF8"),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # A port that was free a moment ago can be taken by the time the server binds it; try another once.
        for attempt in range(2):
            options = f"-c listen_addresses={self.host} -p {self.port} -k {self.root} -c fsync=off"
            started = subprocess.run(
                self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", options,
                                  "-l", str(self.root / "pg.log"), "-w", "-t", "60", "start"),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if started.returncode == 0:
                return
            self.stop()
            if attempt == 0:
                self.port = free_port()
        raise RuntimeError(f"PostgreSQL did not start:\n{_tail(self.root / 'pg.log')}")

    def stop(self) -> None:
        if self.bindir is not None and self.datadir.exists():
            subprocess.run(self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                                             "-w", "stop"),
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/postgres"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def clamd_binary() -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/local/sbin"
    return shutil.which("clamd", path=path)


# The EICAR anti-virus test file, assembled here so that no scanner quarantines this source file.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class ClamdServer:
    """A private clamd in the foreground on a Unix socket under `root`, whose only signature is EICAR's
    (written here as an MD5 signature: no signature download is needed or possible)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.socket = self.root / "clamd.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = clamd_binary()
        if binary is None:
            raise RuntimeError("clamd is not installed")
        database = self.root / "db"
        database.mkdir(parents=True, exist_ok=True)
        (database / "test.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Eicar-Test-Signature\n")
        config = self.root / "clamd.conf"
        config.write_text(
            f"Foreground yes\nLocalSocket {self.socket}\nDatabaseDirectory {database}\nLogFile {self.root}/clamd.log\n"
            f"TemporaryDirectory {self.root}\nPidFile {self.root}/clamd.pid\nUser {getpass.getuser()}\n")
        self._proc = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"clamd did not start:\n{_tail(self.root / 'clamd.log')}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
