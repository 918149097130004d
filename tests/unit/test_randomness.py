"""Tokens read ahead from the kernel: the sizes and alphabets ``secrets`` gives, never one handed out twice."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import threading

import pytest

from mailbot import randomness


@pytest.mark.parametrize(("nbytes", "pattern"), [
    (12, r"[0-9a-f]{24}"),
    (16, r"[0-9a-f]{32}"),
    (1, r"[0-9a-f]{2}"),
])
def test_hex_tokens_are_as_long_as_secrets_makes_them(nbytes: int, pattern: str) -> None:
    assert re.fullmatch(pattern, randomness.token_hex(nbytes))


@pytest.mark.parametrize("nbytes", [8, 12, 16])
def test_urlsafe_tokens_decode_to_the_bytes_asked_for(nbytes: int) -> None:
    token = randomness.token_urlsafe(nbytes)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) == nbytes


def test_no_token_repeats_across_many_buffers() -> None:
    # Ten times the read-ahead: every buffer boundary is crossed, with sizes that do not divide it.
    tokens = [randomness.token_hex(12) for _ in range(10 * randomness.READ_AHEAD // 12)]
    tokens += [randomness.token_hex(16) for _ in range(1000)]
    assert len(set(tokens)) == len(tokens)


def test_a_token_larger_than_the_read_ahead_is_whole() -> None:
    assert len(randomness.token_bytes(randomness.READ_AHEAD + 5)) == randomness.READ_AHEAD + 5


def test_threads_never_share_bytes() -> None:
    found: list[list[bytes]] = [[] for _ in range(4)]

    def take(into: list[bytes]) -> None:
        into.extend(randomness.token_bytes(16) for _ in range(2000))

    threads = [threading.Thread(target=take, args=(into,)) for into in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [token for into in found for token in into]
    assert len(every) == 8000
    assert len(set(every)) == len(every)


def test_a_forked_child_does_not_repeat_its_parents_next_tokens() -> None:
    # In a fresh interpreter, so the fork meets no thread of the test run's.
    script = """
import os, sys
from mailbot import randomness
randomness.token_bytes(16)  # the parent now has bytes read ahead
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, randomness.token_bytes(16))
    os._exit(0)
os.close(write)
child = os.read(read, 16)
os.waitpid(pid, 0)
parent = randomness.token_bytes(16)
print(len(child), child == parent)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["16", "False"]
