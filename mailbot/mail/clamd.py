"""An optional virus scan of attachments by ClamAV's clamd (MAILBOT_CLAMD_SOCKET), over its INSTREAM command.

The scan decides only what is attached to staff mail: a flagged file is listed in the notification and kept
on the case, never attached. A scanner that cannot be reached flags nothing and is logged: a complaint is
never held up or lost because the scanner is down (the risky-file rules still apply without it).
"""

from __future__ import annotations

import logging
import socket
import struct

from mailbot.domain.mail import Attachment

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class ClamdScanner:
    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = address  # a Unix socket path, or host:port
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        if self.address.startswith("/") or ":" not in self.address:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.address)
            except OSError:
                sock.close()
                raise
            return sock
        host, _, port = self.address.rpartition(":")
        return socket.create_connection((host, int(port)), timeout=self.timeout)

    def scan_bytes(self, data: bytes) -> str | None:
        """The signature clamd found in the data, or None when it is clean. Raises OSError when clamd
        cannot be asked, ValueError when it answers something else."""
        with self._connect() as sock:
            sock.sendall(b"zINSTREAM\0")
            for start in range(0, len(data), _CHUNK):
                chunk = data[start:start + _CHUNK]
                sock.sendall(struct.pack(">I", len(chunk)) + chunk)
            sock.sendall(struct.pack(">I", 0))
            answer = b""
            while not answer.endswith(b"\0"):
                more = sock.recv(4096)
                if not more:
                    break
                answer += more
        text = answer.rstrip(b"\0").decode("utf-8", "replace").strip()
        if text.endswith("OK"):
            return None
        if text.endswith("FOUND"):
            return text.removeprefix("stream:").removesuffix("FOUND").strip()
        raise ValueError(f"clamd answered {text!r}")

    def __call__(self, attachments: tuple[Attachment, ...]) -> frozenset[str]:
        """The filenames clamd flags (the Casework scan hook)."""
        flagged = set()
        for attachment in attachments:
            try:
                found = self.scan_bytes(attachment.payload)
            except (OSError, ValueError) as exc:
                log.warning("could not scan %s with clamd at %s: %s", attachment.filename, self.address, exc)
                continue
            if found:
                log.warning("clamd flagged %s: %s", attachment.filename, found)
                flagged.add(attachment.filename)
        return frozenset(flagged)
