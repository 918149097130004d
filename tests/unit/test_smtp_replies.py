"""SMTP replies read from what has arrived so far (RFC 5321 4.2): the pipelined group's replies come in any pieces."""

from __future__ import annotations

import aiosmtplib
import pytest

from mailbot.mail.smtp_pipeline import MAX_LINE_LENGTH, split_replies


@pytest.mark.parametrize("arrived, replies, used", [
    (b"", [], 0),
    (b"250 ok\r\n", [(250, "ok")], 8),
    (b"250 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n", [(250, "ok"), (250, "2.1.5 ok"), (354, "go ahead")], 36),
    (b"250 ok\r\n25", [(250, "ok")], 8),  # the next reply has begun to arrive
    (b"250 ok", [], 0),  # no line end yet
    (b"250-first\r\n250-second\r\n", [], 0),  # a reply of several lines, its last not come
    (b"250-first\r\n250-second\r\n250 last\r\n", [(250, "first\nsecond\nlast")], 33),
    (b"250\r\n", [(250, "")], 5),  # a code alone
    (b"550 no such mailbox\n", [(550, "no such mailbox")], 20),  # a bare LF, as aiosmtplib takes it
    (b"451  spaced out \t\r\n", [(451, "spaced out")], 19),
    (b"250 caf\xc3\xa9\r\n", [(250, "caf\u00e9")], 11),
    (b"250 \xff\r\n", [(250, "\udcff")], 7),  # not UTF-8: kept, as aiosmtplib keeps it
])
def test_the_replies_that_have_arrived_whole_are_read_and_the_rest_waits(
        arrived: bytes, replies: list[tuple[int, str]], used: int) -> None:
    assert split_replies(arrived) == (replies, used)
    assert split_replies(bytearray(arrived)) == (replies, used)


def test_a_group_of_replies_read_in_any_pieces_gives_the_same_replies() -> None:
    group = b"250 2.1.0 ok\r\n250-2.1.5 first\r\n250 2.1.5 second\r\n354 end with <CRLF>.<CRLF>\r\n"
    whole, _ = split_replies(group)
    for cut in range(len(group) + 1):
        for second_cut in range(cut, len(group) + 1):
            buffer = bytearray()
            got = []
            for piece in (group[:cut], group[cut:second_cut], group[second_cut:]):
                buffer += piece
                replies, used = split_replies(buffer)
                del buffer[:used]
                got += replies
            assert got == whole and not buffer, (cut, second_cut)


@pytest.mark.parametrize("arrived, message", [
    (b"hello there\r\n", "Malformed SMTP response line: hello there"),
    (b"25O ok\r\n", "Malformed SMTP response line"),
    (b"250 ok\r\n2x0 ok\r\n", "Malformed SMTP response line"),
    (b"-250 ok\r\n", "Malformed SMTP response line"),
    (b"250 " + b"x" * MAX_LINE_LENGTH + b"\r\n", "Response too long"),
    (b"250 " + b"x" * MAX_LINE_LENGTH, "Response too long"),  # a line without end, already too long
    ((b"250-" + b"x" * 1000 + b"\r\n") * 40, "Response too long"),  # a reply of lines without end
])
def test_what_no_smtp_server_sends_is_refused_with_the_reason(arrived: bytes, message: str) -> None:
    with pytest.raises(aiosmtplib.SMTPResponseException, match=message) as raised:
        split_replies(arrived)
    assert raised.value.code == -1
