"""mail.parse_pool: a backlog's messages read in a child process come back exactly as this process reads them."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import signal
from datetime import timedelta
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


def test_a_child_is_started_only_for_a_batch_of_start_at_and_then_reads_any_batch_of_min_batch() -> None:
    """The daemon's pool: a burst of a few dozen is read here; a full chunk (a backlog) starts the child, which
    then reads the fetch's smaller last chunk too. Closed after the fetch, it starts again at the next backlog, and
    each backlog is told once (the daemon hands that fetch's delivery to a process of its own)."""
    backlogs: list[int] = []
    with ParsePool(start_at=40, cpus=2, on_backlog=lambda: backlogs.append(1)) as pool:
        assert len(list(pool.read(complaints(30)))) == 30
        assert pool.read_there == 0 and multiprocessing.active_children() == [] and backlogs == []
        assert len(list(pool.read(complaints(40)))) == 40  # starts the child (not ready yet: read here)
        assert backlogs == [1]
        assert pool.start(wait=60)
        assert len(list(pool.read(complaints(10)))) == 10
        assert pool.read_there == 10 and backlogs == [1]  # the same fetch: told once
        pool.close()
        assert multiprocessing.active_children() == []
        assert len(list(pool.read(complaints(30)))) == 30  # the next fetch: a burst again, no child
        assert multiprocessing.active_children() == [] and pool.read_there == 10 and backlogs == [1]
        assert len(list(pool.read(complaints(40)))) == 40  # a later backlog
        assert backlogs == [1, 1]


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


ENRICHED = (b"From: carol@example.org\r\nTo: complaints@1mm.org.uk\r\nSubject: Enriched %d\r\n"
            b"Message-ID: <e%d@example.org>\r\n"
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


def test_a_hostile_backlog_through_dovecot_is_filed_as_if_read_here(tmp_path: Path, dovecot, smtp_sink,  # type: ignore[no-untyped-def]
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog fetched from a real Dovecot with the child reading it: complaints whose words steer the case
    (safeguarding, a data request), broken MIME, encoded-word and control-character headers, a forged staff
    sender and a message too large for the child. Every one is filed as this process reads it: the category,
    the procedure and the safeguarding alert come from the same reading, and nothing is dropped."""
    from datetime import datetime, timezone

    from mailbot import runtime
    from tests.integration.bot import new_bot

    pools: list[ParsePool] = []

    class Recorded(ParsePool):  # the bot's own pool, kept so the test can see the child read the mail
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            pools.append(self)
            # Ready before the fetch: a backlog's first batch is otherwise read here while the child starts,
            # and this one is a single batch.
            assert self.start(wait=60)

    monkeypatch.setattr(runtime, "ParsePool", Recorded)
    bot = new_bot(tmp_path / "bot", dovecot, smtp_sink)
    t0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)

    def mail(sender: str, subject: bytes, body: bytes, n: int, extra: bytes = b"") -> bytes:
        return (b"From: " + sender.encode() + b"\r\nTo: complaints@1mm.org.uk\r\nSubject: " + subject +
                b"\r\nMessage-ID: <hostile" + str(n).encode() + b"@example.org>\r\n" + extra +
                b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + b"\r\n")

    raws = [mail(f"plain{n}@example.org", b"Sessions cancelled", b"My sessions keep being cancelled.", n)
            for n in range(6)]
    raws += [
        mail("amira@example.org", b"=?utf-8?b?TXkgbWVudG9y?=", b"My mentor shouted at me and I do not feel safe.", 6),
        mail("bob@example.org", b"Please delete my data", b"I want you to erase all my personal data.", 7),
        mail("carol@example.org", b"Tabs\x01and\x7fcontrols =?x-unknown?q?=FF?=", b"Body with \xff\xfe bad bytes.", 8),
        mail("priya.shah@1mm.org.uk", b"Re: [1MM-2026-0001] close", b"close", 9,  # staff From, unsigned: no authority
             extra=b"X-Mailbot-Staff: yes\r\n"),
        BROKEN.replace(b"From: =?utf-8?q?broken", b"From: dan@example.org\r\nMessage-ID: <hostile10@example.org>"),
        mail("erin@example.org", b"Big evidence", b"See the attached log.\r\n" + b"x" * (LARGEST + 10_000), 11),
    ]
    for raw in raws:
        bot.append(raw, internaldate=t0)
    bot.once(now=t0 + timedelta(seconds=1))

    assert pools and sum(pool.read_there for pool in pools) == len(raws) - 1  # all but the largest, by the child
    cases = {c["complainant"]: c for c in bot.cases_json()}
    expected = {m.from_addr: m for m in (parse_mail(raw) for raw in raws)}
    for who in [f"plain{n}@example.org" for n in range(6)] + ["amira@example.org", "carol@example.org",
                                                             "erin@example.org"]:
        assert cases[who]["category"] == expected[who].reading.category, who
    assert cases["amira@example.org"]["category"] == categories.SAFEGUARDING
    assert cases["bob@example.org"]["procedure"] == data_requests.PROCEDURE
    assert len(bot.letters("safeguarding-alert")) == 1
    # Nothing was dropped: eleven complaints, each its own case, none left unfiled; and the forged staff message
    # is the complainant-side follow-up of case 0001, not a staff command: the case is still open.
    assert len(cases) == len(raws) - 1 and json.loads(bot.cli("unfiled", "--json").stdout) == []
    first = bot.case_json("1MM-2026-0001")
    assert [(m["kind"], m["from"]) for m in first["messages"] if m["direction"] == "in"] == [
        ("new_case", "plain0@example.org"), ("follow_up", "priya.shah@1mm.org.uk")]
    assert all(c["status"] == "open" for c in cases.values()) and not bot.letters("command-result")
