"""The complaints form on the web: what it asks, what counts as an answer, and the tokens that protect it.

Pure. The fields are the ones 1MM's procedures ask a complainant for ("the reason for the complaint; where and
when it happened; the name(s) of anyone involved; the outcome hoped for; contact details"), plus who they are
(the directory still decides the procedure). A submission that passes ``validate`` becomes a message
(``compose``) that goes through the same chain and casework as mail; nothing typed in the form reaches a header
except through the email package's own encoding, and none of it can carry a case reference into the subject.

Tokens are HMAC-SHA256 under the bot's secret: the CSRF token binds a form to the browser's cookie and an hour;
the status-page token binds a case reference to the case's nonce (replaced by ``#new-status-link``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from mailbot.domain.attachments import human_size, is_risky, wire_content_type
from mailbot.domain.mail.message import Attachment

ROLES = {"mentee": "a mentee (or a parent or carer of one)", "mentor": "a mentor",
         "other": "someone else (a partner, a school, a member of the public)"}


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    required: bool
    max_chars: int
    hint: str = ""
    multiline: bool = False


FIELDS = (
    Field("reason", "What is your complaint about?", True, 5000,
          "Tell us what happened and why you are unhappy.", multiline=True),
    Field("where_when", "Where and when did it happen?", True, 1000,
          "For example, the mentoring session on 12 November, or the phone call last Tuesday.", multiline=True),
    Field("people", "Who was involved? (optional)", False, 1000,
          "The names of anyone involved, if you know them.", multiline=True),
    Field("outcome", "What would you like to happen?", True, 2000,
          "The outcome you are hoping for.", multiline=True),
    Field("name", "Your full name", True, 200),
    Field("email", "Email address", False, 254, "We will send your reference and our replies here."),
    Field("postal", "Postal address (if you have no email address)", False, 500,
          "We will post our letters to you instead.", multiline=True),
    Field("phone", "Daytime telephone number (optional)", False, 40),
    Field("role", "Are you", True, 10),
)
BY_NAME = {f.name: f for f in FIELDS}
HONEYPOT = "website"  # a field people never see or fill; robots do
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_PHONE = re.compile(r"^[0-9+() .-]{6,40}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")
_REFERENCE = re.compile(r"\[?\b1MM-\d{4}-\d{4,}\b\]?", re.I)


# A file sent with the form: a name, a type and bytes, as an attachment of the mail it becomes.
Upload = Attachment


@dataclass(frozen=True)
class Limits:
    max_files: int = 5
    max_file_bytes: int = 5 * 1024 * 1024


@dataclass(frozen=True)
class Submission:
    """A form that passed: every field as typed (trimmed), and the files."""

    values: dict[str, str]
    uploads: tuple[Upload, ...] = ()

    @property
    def email(self) -> str:
        return self.values.get("email", "").lower()


def clean(value: str) -> str:
    """Trimmed, with control characters (other than tab and newlines) removed and newlines made plain."""
    return _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n")).strip()


def validate(form: Mapping[str, str], uploads: list[Upload], limits: Limits = Limits()) -> tuple[
        dict[str, str], dict[str, str]]:
    """The values (cleaned, as the page shows them again) and the errors by field, in the form's order."""
    values = {f.name: clean(str(form.get(f.name, ""))) for f in FIELDS}
    errors: dict[str, str] = {}
    for f in FIELDS:
        value = values[f.name]
        if f.required and not value:
            errors[f.name] = {
                "reason": "Tell us what your complaint is about", "where_when": "Tell us where and when it happened",
                "outcome": "Tell us what you would like to happen", "name": "Enter your full name",
                "role": "Select whether you are a mentee, a mentor or someone else",
            }.get(f.name, f"Enter {f.label.lower()}")
        elif len(value) > f.max_chars:
            errors[f.name] = f"{f.label.rstrip('?')} must be {f.max_chars:,} characters or fewer " \
                             f"(you have {len(value):,})"
    if "email" not in errors:
        if values["email"] and not _EMAIL.fullmatch(values["email"]):
            errors["email"] = "Enter an email address in the correct format, like name@example.com"
        elif not values["email"] and not values["postal"] and "postal" not in errors:
            errors["email"] = "Enter your email address, or a postal address if you have no email"
    if values["phone"] and "phone" not in errors and not _PHONE.fullmatch(values["phone"]):
        errors["phone"] = "Enter a telephone number, like 020 7946 0000 or +44 20 7946 0000"
    if values["role"] and values["role"] not in ROLES:
        errors["role"] = "Select whether you are a mentee, a mentor or someone else"
    files = [u for u in uploads if u.filename or u.payload]
    if len(files) > limits.max_files:
        errors["files"] = f"Attach {limits.max_files} files or fewer"
    else:
        for upload in files:
            if len(upload.payload) > limits.max_file_bytes:
                errors["files"] = (f"{upload.filename or 'A file'} is {human_size(len(upload.payload))}: each file must be "
                                   f"{human_size(limits.max_file_bytes)} or smaller")
                break
            if is_risky(upload.filename, upload.content_type):
                errors["files"] = (f"{upload.filename} is a kind of file we cannot accept (programs, scripts and "
                                   f"files with macros): send a PDF, a picture or a document instead")
                break
    return values, errors


def subject_of(values: Mapping[str, str]) -> str:
    """A subject for staff: the complaint's first words, with no case reference (one typed in the form must not
    thread it into somebody else's case) and on one line."""
    first = _REFERENCE.sub("", " ".join(values.get("reason", "").split()))
    first = " ".join(first.split())
    if len(first) > 70:
        first = first[:70].rsplit(" ", 1)[0] + "..."
    return f"Web form: {first}" if first else "Web form complaint"


def body_of(values: Mapping[str, str], uploads: tuple[Upload, ...] = ()) -> str:
    """The fields under their headings, as staff read them in the notification and the case."""
    parts = []
    for f in FIELDS:
        value = values.get(f.name, "")
        if f.name == "role":
            value = ROLES.get(value, value)
        if value:
            parts.append(f"{f.label.replace(' (optional)', '').replace(' (if you have no email address)', '')}\n"
                         f"{value}")
    if uploads:
        parts.append("Attached\n" + "\n".join(f"{u.filename} ({human_size(len(u.payload))})" for u in uploads))
    return "\n\n".join(parts) + "\n"


def message(*, name: str, email: str, to: str, subject: str, body: str, message_id: str, now: datetime,
            thread: tuple[str, ...] = ()) -> EmailMessage:
    """A message written for a person on the web (their complaint, or what they added on their status page), as
    their mail client would write it. The email package encodes the name, and refuses a line break in any header;
    the name and the subject are made one line first. ``thread``: the ids it answers, oldest first."""
    msg = EmailMessage()
    local, _, domain = email.partition("@")
    msg["From"] = Address(display_name=" ".join(name.split())[:200], username=local, domain=domain)
    msg["To"] = to
    msg["Subject"] = " ".join(subject.split())[:200]
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    if thread:
        msg["In-Reply-To"] = thread[-1]
        msg["References"] = " ".join(thread[-10:])
    msg.set_content(body)
    return msg


def compose(submission: Submission, *, to: str, from_fallback: str, message_id: str, now: datetime) -> bytes:
    """The submission as a message for the pipeline. From is the person's own address (or ``from_fallback`` when
    they gave only a postal address)."""
    values = submission.values
    msg = message(name=values.get("name", ""), email=submission.email or from_fallback, to=to,
                  subject=subject_of(values), body=body_of(values, submission.uploads), message_id=message_id, now=now)
    for upload in submission.uploads:
        maintype, _, subtype = wire_content_type(upload.content_type).partition("/")
        msg.add_attachment(upload.payload, maintype=maintype, subtype=subtype,
                           filename=clean(upload.filename).replace("\n", " ")[:200] or "attachment")
    return msg.as_bytes()


# ---- tokens -----------------------------------------------------------------------------------------


def _mac(secret: bytes, purpose: str, *parts: str) -> str:
    digest = hmac.new(secret, "\x00".join((purpose, *parts)).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


CSRF_LIFETIME = timedelta(hours=2)


def csrf_token(secret: bytes, browser: str, now: datetime, nonce: str) -> str:
    """For one form page: bound to the browser's cookie value, the time, and a nonce (used once)."""
    stamp = str(int(now.timestamp()))
    return f"{stamp}.{nonce}.{_mac(secret, 'csrf', browser, stamp, nonce)}"


def check_csrf(secret: bytes, browser: str, token: str, now: datetime) -> str | None:
    """The token's nonce when it is genuine, for this browser and fresh; None otherwise."""
    try:
        stamp, nonce, mac = token.split(".")
        issued = int(stamp)
    except ValueError:
        return None
    if not browser or not hmac.compare_digest(mac, _mac(secret, "csrf", browser, stamp, nonce)):
        return None
    age = now.timestamp() - issued
    if age < -60 or age > CSRF_LIFETIME.total_seconds():
        return None
    return nonce


def status_token(secret: bytes, ref: str, nonce: str) -> str:
    return _mac(secret, "status", ref.upper(), nonce)[:32]


def check_status_token(secret: bytes, ref: str, nonce: str | None, token: str) -> bool:
    return bool(nonce) and hmac.compare_digest(status_token(secret, ref, nonce or ""), token)


@dataclass
class RateLimit:
    """At most ``limit`` events per key in any ``window``; ``retry_at`` says when the next one is allowed."""

    limit: int
    window: timedelta = timedelta(hours=1)
    _seen: dict[str, deque[datetime]] = field(default_factory=dict)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        times = self._seen.setdefault(key, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._seen[key]
            return deque()
        return times

    def allowed(self, key: str, now: datetime) -> bool:
        return len(self._recent(key, now)) < self.limit

    def retry_at(self, key: str, now: datetime) -> datetime:
        times = self._recent(key, now)
        return times[0] + self.window if len(times) >= self.limit else now

    def record(self, key: str, now: datetime) -> None:
        self._recent(key, now)
        self._seen.setdefault(key, deque()).append(now)
