"""domain.attachments: what goes to staff attached, what is only listed, and why."""

from __future__ import annotations

import pytest

from mailbot.domain.attachments import (
    MAX_WIRE_NAME_BYTES,
    choose_for_staff,
    is_risky,
    parse_size,
    wire_content_type,
    wire_filename,
)

MB = 1024 * 1024


@pytest.mark.parametrize(
    "filename, content_type, risky",
    [
        ("letter.pdf", "application/pdf", False),
        ("photo.JPG", "image/jpeg", False),
        ("report.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", False),
        ("setup.exe", "application/octet-stream", True),
        ("invoice.pdf.exe", "application/pdf", True),
        ("budget.xlsm", "application/octet-stream", True),
        ("minutes.DOCM", "application/octet-stream", True),
        ("run.ps1", "text/plain", True),
        ("page.hta", "application/octet-stream", True),
        ("noname", "application/x-msdownload", True),
        ("script.js", "text/plain", True),
        ("shortcut.lnk", "application/octet-stream", True),
        ("disk.iso", "application/octet-stream", True),
    ],
)
def test_risky_files(filename: str, content_type: str, risky: bool) -> None:
    assert is_risky(filename, content_type) is risky


def test_files_are_attached_in_order_while_they_fit() -> None:
    notes = choose_for_staff([("a.pdf", "application/pdf", 4 * MB), ("big.mov", "video/quicktime", 30 * MB),
                              ("b.jpg", "image/jpeg", 5 * MB), ("c.png", "image/png", 2 * MB),
                              ("x.exe", "application/octet-stream", 10)], 10 * MB)
    assert [(n.filename, n.attached) for n in notes] == [
        ("a.pdf", True), ("big.mov", False), ("b.jpg", True), ("c.png", False), ("x.exe", False)]
    assert "limit" in notes[1].reason and notes[1].size_text == "30.0 MB"
    assert "program" in notes[4].reason


def test_a_flagged_file_is_never_attached() -> None:
    (note,) = choose_for_staff([("eicar.txt", "text/plain", 68)], 10 * MB, flagged=frozenset({"eicar.txt"}))
    assert not note.attached and "virus" in note.reason


@pytest.mark.parametrize("value, size", [("10M", 10 * MB), ("500K", 500 * 1024), ("1024", 1024), ("2mb", 2 * MB),
                                         ("0", 0)])
def test_parse_size(value: str, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "ten", "10G", "-1", "1.5M"])
def test_parse_size_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


@pytest.mark.parametrize(
    "given, carried",
    [
        ("application/pdf", "application/pdf"),
        ("Image/JPEG", "image/jpeg"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
         "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("application/" + "p" * 3000, "application/octet-stream"),  # one header line of 3,000 characters
        ('application/pdf\\"', "application/octet-stream"),
        ("application/pdf; name=x", "application/octet-stream"),
        ("application", "application/octet-stream"),
        ("", "application/octet-stream"),
        ("text/plain\r\nBcc: x@example.org", "application/octet-stream"),
    ],
)
def test_a_forwarded_attachment_carries_a_valid_media_type(given: str, carried: str) -> None:
    assert wire_content_type(given) == carried


@pytest.mark.parametrize(
    "given, carried",
    [
        ("letter.pdf", "letter.pdf"),
        ("a" * 200, "a" * 200),  # at the limit: unchanged
        ("a" * 5000 + ".pdf", "a" * 195 + "~.pdf"),
        ("a" * 5000, "a" * 199 + "~"),
        ("x." + "e" * 300, "x." + "e" * 197 + "~"),  # no real extension to keep
        ("\U0001F600" * 300 + ".pdf", "\U0001F600" * 48 + "~.pdf"),  # cut between characters, never inside one
        ("é" * 150 + ".docx", "é" * 97 + "~.docx"),
    ],
)
def test_a_forwarded_attachment_name_fits_on_a_header_line(given: str, carried: str) -> None:
    assert wire_filename(given) == carried
    assert len(carried.encode("utf-8")) <= MAX_WIRE_NAME_BYTES
