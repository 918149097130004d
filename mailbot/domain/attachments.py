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
