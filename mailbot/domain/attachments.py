"""Which of a complainant's attachments go to staff with the notification, and which are only listed.

Pure. Staff open what arrives in their mailbox, so nothing that runs when opened (programs, scripts,
macro-enabled Office files) is ever attached, and a notification stays under a size that mail servers
accept (a 30 MB attachment once made every staff notification undeliverable with a 552). What is not
attached stays on the case, in the complainant's message, and the notification lists it with its size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Files that run, install or carry macros when opened on Windows, macOS or Office.
RISKY_EXTENSIONS = frozenset({
    "exe", "com", "bat", "cmd", "scr", "pif", "msi", "msp", "mst", "cpl", "dll", "sys", "drv", "ocx",
    "js", "jse", "vbs", "vbe", "wsf", "wsh", "wsc", "ps1", "ps1xml", "ps2", "psc1", "psm1", "msh", "hta",
    "jar", "lnk", "reg", "inf", "scf", "url", "sh", "bash", "command", "app", "pkg", "dmg", "apk", "appx",
    "msix", "iso", "img", "vhd", "vhdx", "chm", "gadget", "application", "settingcontent-ms", "library-ms",
    "docm", "dotm", "xlsm", "xltm", "xlam", "xlsb", "pptm", "potm", "ppam", "ppsm", "sldm", "one", "xll",
})
RISKY_TYPES = frozenset({
    "application/x-msdownload", "application/x-dosexec", "application/x-msdos-program", "application/x-ms-installer",
    "application/x-msi", "application/x-executable", "application/x-sh", "application/x-shellscript",
    "application/javascript", "text/javascript", "application/x-javascript", "application/hta",
    "application/java-archive", "application/x-ms-shortcut", "application/vnd.microsoft.portable-executable",
    "application/vnd.ms-excel.sheet.macroenabled.12", "application/vnd.ms-word.document.macroenabled.12",
    "application/vnd.ms-powerpoint.presentation.macroenabled.12", "application/vnd.ms-excel.addin.macroenabled.12",
    "application/vnd.ms-excel.sheet.binary.macroenabled.12", "application/x-iso9660-image",
})
_SIZE = re.compile(r"^\s*(\d+)\s*([KkMm]?)[Bb]?\s*$")
# A media type as RFC 6838 names them: type/subtype, each at most 127 of its restricted characters.
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
# A forwarded attachment's name, in UTF-8 bytes. No file system keeps a longer name than 255 bytes, and 200
# bytes stay on one header line of a letter (under RFC 5322's 998) however they are quoted or %-encoded.
MAX_WIRE_NAME_BYTES = 200


@dataclass(frozen=True)
class AttachmentNote:
    """One attachment as the notification describes it."""

    filename: str
    size: int
    attached: bool
    reason: str = ""  # why it was not attached

    @property
    def size_text(self) -> str:
        return human_size(self.size)


def parse_size(value: str) -> int:
    """Bytes from "10M", "500K" or "1048576"; ValueError for anything else."""
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size: write bytes, or a number with K or M, like 10M")
    number, unit = int(match.group(1)), match.group(2).upper()
    return number * {"": 1, "K": 1024, "M": 1024 * 1024}[unit]


def human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


def wire_content_type(content_type: str) -> str:
    """The attachment's media type as a letter to staff carries it: a valid type/subtype, or
    application/octet-stream. A sender's Content-Type can be anything (3,000 characters, quotes)."""
    value = content_type.strip().lower()
    return value if _MEDIA_TYPE.fullmatch(value) else "application/octet-stream"


def wire_filename(filename: str, limit: int = MAX_WIRE_NAME_BYTES) -> str:
    """The attachment's name cut to ``limit`` UTF-8 bytes, with its extension kept and a ``~`` where it was cut.

    A name of 5,000 characters made one header line of 5,000: past RFC 5322's 998, which Microsoft 365
    refuses (5.6.211), so the staff notification carrying it could not be delivered.
    """
    if len(filename.encode("utf-8")) <= limit:
        return filename
    stem, dot, extension = filename.rpartition(".")
    tail = "~" + (dot + extension if stem and 0 < len(extension.encode("utf-8")) <= 16 else "")
    room = limit - len(tail.encode("utf-8"))
    head = filename.encode("utf-8")[:room].decode("utf-8", "ignore")  # never half a character
    return head + tail


def is_risky(filename: str, content_type: str) -> bool:
    name = filename.lower().strip().rstrip(".")
    extensions = name.split(".")[1:]
    # "invoice.pdf.exe" and "setup.exe" alike; any risky extension in the name counts, not only the last.
    return content_type.lower() in RISKY_TYPES or any(ext in RISKY_EXTENSIONS for ext in extensions)


def choose_for_staff(files: list[tuple[str, str, int]], limit: int,
                     flagged: frozenset[str] = frozenset()) -> list[AttachmentNote]:
    """For each (filename, content type, size), in order: attached, or listed with the reason.

    Files are attached in the order they came while the total stays within ``limit``; a file that does
    not fit is listed and smaller ones after it may still fit. ``flagged`` names files a virus scanner
    reported.
    """
    notes: list[AttachmentNote] = []
    total = 0
    for filename, content_type, size in files:
        if filename in flagged:
            notes.append(AttachmentNote(filename, size, False, "the virus scanner flagged it"))
        elif is_risky(filename, content_type):
            notes.append(AttachmentNote(filename, size, False, "a program, script or macro file: not sent to staff"))
        elif total + size > limit:
            notes.append(AttachmentNote(filename, size, False,
                                        f"over the {human_size(limit)} attachments limit of a notification"))
        else:
            total += size
            notes.append(AttachmentNote(filename, size, True))
    return notes
