"""mail.parse_pool: a backlog's messages read in a child process come back exactly as this process reads them."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import signal
from pathlib import Path

import pytest

from mailbot.domain import categories, data_requests
from mailbot.domain.mail import InboundMail, parse_mail
from mailbot.mail.parse_pool import LARGEST, ParsePool

COMPLAINT = (b"From: Amira <amira@example.org>\r\nTo: complaints@1mm.org.uk\r\nSubject: My mentor %d\r\n"
             b"Message-ID: <m%d@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
             b"My mentor keeps missing our sessions and I do not feel safe with him.\r\n")
ERASURE = (b"From: bob@example.org\r\nTo: complaints@1mm.org.uk\r\nSubject: Please delete my data\r\n"
           b"Message-ID: <erase@example.org>\r\n\r\nI want you to erase all my personal data under article 17.\r\n")
BROKEN = (b"From: =?utf-8?q?broken\r\nSubject: =?x-unknown?b?////?=\r\nContent-Type: multipart/mixed; "
          b"boundary=\"nowhere\"\r\n\r\n--elsewhere\r\n\xff\xfe not text\r\n")


def complaints(count: int) -> list[bytes]:
    return [COMPLAINT % (n, n) for n in range(count)]


def same(a: InboundMail, b: InboundMail) -> bool:
    """Every field, the ones dataclass equality leaves out too, and what the words were read to say."""
    return a == b and a.headers == b.headers and a.raw == b.raw and a.reading == b.reading \
        and a.data_request == b.data_request


def corpus(shared: Path | None) -> list[bytes]:
    if shared is None:
        return []
    files = sorted(p for p in (shared / "corpus").rglob("*") if p.is_file() and p.suffix in (".eml", ".txt", ""))
    return [p.read_bytes() for p in files if p.name != "SOURCE.txt"][:300]


@pytest.fixture
def shared_or_none() -> Path | None:
    path = Path(__file__).resolve().parents[2].parent / "shared"
    return path if path.is_dir() else None


def test_a_backlog_read_in_the_child_is_read_as_here(shared_or_none: Path | None) -> None:
    """Complaints, a data request, broken MIME and (where ../shared is) the real-mail corpus: the child's reading
    of each, with its category, safeguarding terms and data request, equals this process's, in order."""
    raws = [*complaints(20), ERASURE, BROKEN, *corpus(shared_or_none)]
    with ParsePool() as pool:
        assert pool.start(wait=60)
        read = list(pool.read(raws))
        assert pool.read_there == sum(len(raw) <= LARGEST for raw in raws)  # the child's: all but the largest
    assert len(read) == len(raws)
    for raw, mail in zip(raws, read):
        assert same(mail, parse_mail(raw))
    # What the words say came back with the messages (in the instance, not read again here).
    assert read[0].__dict__["reading"] == categories.read(read[0].subject, read[0].text)
    assert read[0].reading.category == categories.SAFEGUARDING
    assert read[20].__dict__["data_request"] == data_requests.ERASURE


def test_few_messages_are_read_here_and_start_no_child() -> None:
    """What the daemon meets as mail arrives, a message or two, gets no child and no round trip."""
    with ParsePool() as pool:
        read = list(pool.read(complaints(3)))
        assert pool.read_there == 0
        assert multiprocessing.active_children() == []
    assert [m.subject for m in read] == ["My mentor 0", "My mentor 1", "My mentor 2"]


def test_with_one_cpu_no_child_is_started() -> None:
    with ParsePool(cpus=1) as pool:
        read = list(pool.read(complaints(50)))
        assert pool.read_there == 0
        assert multiprocessing.active_children() == []
    assert len(read) == 50


def test_until_the_child_is_ready_the_batch_is_read_here() -> None:
    with ParsePool() as pool:
        first = list(pool.read(complaints(10)))  # starts the child, which is not ready yet
        assert pool.read_there == 0
        assert pool.start(wait=60)
        second = list(pool.read(complaints(10)))
        assert pool.read_there == 10
    assert [same(a, b) for a, b in zip(first, second)] == [True] * 10


def test_a_large_message_is_read_here_in_its_turn() -> None:
    raws = complaints(20)
    raws[9] = raws[9].replace(b"sessions", b"sessions " + b"x" * 5000)
    with ParsePool(largest=4000) as pool:
        assert pool.start(wait=60)
        read = list(pool.read(raws))
        assert pool.read_there == 19
    assert [m.message_id for m in read] == [f"m{n}@example.org" for n in range(20)]
    assert same(read[9], parse_mail(raws[9]))


def test_a_child_that_dies_leaves_every_message_read_here(caplog: pytest.LogCaptureFixture) -> None:
    """Killed in the middle of a batch: no message is lost or out of order, the rest are read in this process,
    and the log says so once."""
    raws = complaints(200)
    with caplog.at_level(logging.WARNING, logger="mailbot.mail.parse_pool"), ParsePool() as pool:
        assert pool.start(wait=60)
        reading = pool.read(raws)
        read = [next(reading) for _ in range(5)]
        [child] = multiprocessing.active_children()
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        read += list(reading)
        assert pool.read_there < 200
        later = list(pool.read(complaints(30)))  # the next fetch: read here at once
    assert [m.message_id for m in read] == [f"m{n}@example.org" for n in range(200)]
    assert all(same(mail, parse_mail(raw)) for raw, mail in zip(raws, read))
    assert len(later) == 30
    assert sum("reading it in this process instead" in r.getMessage() for r in caplog.records) == 1


def test_what_was_read_travels_with_a_pickled_message() -> None:
    """The words are read once: a message read in the child needs no second reading here."""
    mail = parse_mail(COMPLAINT % (1, 1))
    mail.reading  # noqa: B018
    mail.data_request  # noqa: B018
    copy = pickle.loads(pickle.dumps(mail))
    assert {"reading", "data_request"} <= copy.__dict__.keys()
    assert copy.reading == categories.read(mail.subject, mail.text)


ENRICHED = (b"From: carol@example.org\r\nTo: complaints@1mm.org.uk\r\nSubject: Enriched %d\r\nMessage-ID: <e%d@example.org>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: text/plain\r\n\r\nPlain words.\r\n--b\r\nContent-Type: text/enriched\r\n\r\n"
            b"<bold>Rich words.</bold>\r\n--b--\r\n")


def test_the_childs_log_lines_are_in_the_bots_format(capfd: pytest.CaptureFixture[str]) -> None:
    """The mail parser warns of parts it does not handle; from the child, as from the bot, a log collector
    reading MAILBOT_LOG_FORMAT=json meets one JSON object a line, not a bare warning."""
    with ParsePool(log_format="json") as pool:
        assert pool.start(wait=60)
        read = list(pool.read([ENRICHED % (n, n) for n in range(10)]))
        assert pool.read_there == 10
    assert [m.text.strip() for m in read] == ["Plain words."] * 10
    said = [line for line in capfd.readouterr().err.splitlines() if "not handled" in line]
    assert len(said) == 10
    assert all(json.loads(line)["level"] == "warning" for line in said)


def test_a_ctrl_c_is_the_parents_to_act_on() -> None:
    """Ctrl-C at a terminal reaches the whole process group: the child carries on (no traceback of its own) and
    ends when the parent closes the pass."""
    with ParsePool() as pool:
        assert pool.start(wait=60)
        [child] = multiprocessing.active_children()
        os.kill(child.pid, signal.SIGINT)  # type: ignore[arg-type]
        read = list(pool.read(complaints(20)))
        assert pool.read_there == 20
        assert child.is_alive()
    assert len(read) == 20
    assert multiprocessing.active_children() == []
