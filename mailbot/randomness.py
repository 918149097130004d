"""Random tokens from the kernel's CSPRNG, read a few kilobytes at a time rather than a syscall per token.

A complaint takes about ten tokens: two Message-IDs, two MIME boundaries, an audit salt for each of its events, the
status link's nonce. ``secrets`` reads each from ``os.urandom``, which lets go of the GIL for its syscall; in the
bot's process, where delivery's threads and the event loop wait for the GIL beside intake's thread, each of those
let another thread in, and intake's thread then waited its turn to carry on (``bench/README.md``, twenty-fourth
look: a token cost ~4 us of CPU and ~300 us of wall time beside one busy thread, against 0.6 us alone).

The bytes are the kernel's, as ``secrets`` gives them, only read ahead; a buffer is never used twice: each thread
has its own, and a forked child starts with none (it would otherwise repeat its parent's next tokens).
"""

from __future__ import annotations

import base64
import os
import threading

READ_AHEAD = 4096  # bytes read from the kernel at a time


class _Pool(threading.local):
    data: bytes = b""
    at: int = 0


_pool = _Pool()


def _forget_after_fork() -> None:
    global _pool
    _pool = _Pool()


os.register_at_fork(after_in_child=_forget_after_fork)


def token_bytes(nbytes: int) -> bytes:
    """``nbytes`` random bytes, as ``secrets.token_bytes`` gives them."""
    pool = _pool
    end = pool.at + nbytes
    if end > len(pool.data):
        pool.data, pool.at, end = os.urandom(max(READ_AHEAD, nbytes)), 0, nbytes
    taken = pool.data[pool.at:end]
    pool.at = end
    return taken


def token_hex(nbytes: int) -> str:
    """As ``secrets.token_hex``: ``nbytes`` random bytes as ``2 * nbytes`` hex digits."""
    return token_bytes(nbytes).hex()


def token_urlsafe(nbytes: int) -> str:
    """As ``secrets.token_urlsafe``: ``nbytes`` random bytes in URL-safe base64, without padding."""
    return base64.urlsafe_b64encode(token_bytes(nbytes)).rstrip(b"=").decode("ascii")
