"""The complaints form (/complaints), its privacy notice, and each case's private status page (/cases/REF/TOKEN).

Everything a browser sends is checked here before the service sees it: the request's size (413), the CSRF
token (bound to a cookie, an hour or two, and used once), the honeypot (a robot gets the ordinary-looking
confirmation and nothing is opened), the rate limits per email address and per client (429, saying when to try
again), and every field (the page comes back with what was typed, an error summary at the top linking to each
field, and the error beside it). The pages are templates in ``templates/web/`` the charity can edit; they work
with no JavaScript and at 320 px.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from mailbot.domain.attachments import human_size
from mailbot.domain.proxies import client_address, parse_networks
from mailbot.domain.webform import (
    FIELDS,
    HONEYPOT,
    ROLES,
    Limits,
    RateLimit,
    Submission,
    Upload,
    check_csrf,
    clean,
    csrf_token,
    validate,
)
from mailbot.services.webintake import WebIntake

COOKIE = "mailbot_form"
ADDED_INFORMATION_MAX = 5000


@dataclass(frozen=True)
class FormSettings:
    org_name: str
    address: str
    templates_dir: Path
    timezone: str
    secret: bytes
    max_bytes: int
    max_files: int
    per_email: int
    per_ip: int
    trusted_proxies: str
    secure_cookie: bool
    retention_years: int = 6


class _Used:
    """CSRF nonces already spent (kept as long as a token lives), so a replayed form is refused."""

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def spend(self, nonce: str, now: datetime) -> bool:
        with self._lock:
            for old in [n for n, at in self._seen.items() if now - at > timedelta(hours=3)]:
                del self._seen[old]
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


class ComplaintsForm:
    def __init__(self, intake: WebIntake, settings: FormSettings, clock: Callable[[], datetime]) -> None:
        self.intake = intake
        self.s = settings
        self.clock = clock
        self.limits = Limits(max_files=settings.max_files, max_file_bytes=settings.max_bytes)
        self.by_email = RateLimit(settings.per_email)
        self.by_client = RateLimit(settings.per_ip)
        self.used = _Used()
        self.proxies = parse_networks(settings.trusted_proxies)
        self.zone = ZoneInfo(settings.timezone)
        self.env = Environment(loader=FileSystemLoader(str(settings.templates_dir)), undefined=StrictUndefined,
                               autoescape=select_autoescape(enabled_extensions=("html",)), trim_blocks=True,
                               lstrip_blocks=True)
        self._rate_lock = threading.Lock()

    def routes(self) -> list[Route]:
        return [
            Route("/complaints", self.form_page, methods=["GET"]),
            Route("/complaints", self.submit, methods=["POST"]),
            Route("/complaints/privacy", self.privacy, methods=["GET"]),
            Route("/cases/{ref}/{token}", self.status_page, methods=["GET"]),
            Route("/cases/{ref}/{token}", self.add_information, methods=["POST"]),
        ]

    # ---- pages ------------------------------------------------------------------------------

    def _page(self, template: str, status: int = 200, browser: str | None = None,
              headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
        browser = browser or secrets.token_urlsafe(16)
        token = csrf_token(self.s.secret, browser, self.clock(), secrets.token_urlsafe(12))
        html = self.env.get_template(f"web/{template}.html").render(
            org_name=self.s.org_name, address=self.s.address, csrf=token, fields={f.name: f for f in FIELDS},
            roles=ROLES, honeypot=HONEYPOT, max_files=self.s.max_files, max_size=human_size(self.s.max_bytes),
            retention_years=self.s.retention_years, **context)
        response = HTMLResponse(html, status_code=status, headers={
            "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                                       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff", **(headers or {})})
        response.set_cookie(COOKIE, browser, httponly=True, samesite="strict", secure=self.s.secure_cookie,
                            max_age=4 * 3600, path="/")
        return response

    def _form(self, status: int = 200, browser: str | None = None, values: dict[str, str] | None = None,
              errors: dict[str, str] | None = None, notice: str = "") -> HTMLResponse:
        return self._page("form", status, browser, values=values or {f.name: "" for f in FIELDS},
                          errors=errors or {}, notice=notice)

    async def form_page(self, request: Request) -> Response:
        return self._form(browser=request.cookies.get(COOKIE))

    async def privacy(self, request: Request) -> Response:
        return self._page("privacy", browser=request.cookies.get(COOKIE))

    def _problem(self, status: int, title: str, message: str, browser: str | None = None,
                 headers: dict[str, str] | None = None) -> HTMLResponse:
        return self._page("problem", status, browser, headers=headers, title=title, message=message)

    # ---- the form ---------------------------------------------------------------------------

    async def _read(self, request: Request) -> tuple[dict[str, str], list[Upload]] | Response:
        """The form's fields and files, or the page that says why not (too large, not a form)."""
        browser = request.cookies.get(COOKIE)
        too_large = self._problem(413, "Your form was too large",
                                  f"Everything you send, attachments included, must come to {human_size(self.s.max_bytes)}"
                                  f" or less. Go back, remove a file or attach smaller ones, and send it again.",
                                  browser)
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.s.max_bytes + 64 * 1024):
            return too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.s.max_bytes + 64 * 1024:
                return too_large
        sent = bytes(body)

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": sent, "more_body": False}

        try:
            form = await Request(request.scope, receive=replay).form(
                max_files=max(self.s.max_files, 1) + 5, max_fields=50, max_part_size=self.s.max_bytes)
        except Exception:  # noqa: BLE001  (multipart errors: a broken or hostile request)
            return self._problem(400, "Your form could not be read",
                                 "Something went wrong sending the form. Go back and send it again.", browser)
        fields: dict[str, str] = {}
        uploads: list[Upload] = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key == "files" and value.filename:
                    uploads.append(Upload(value.filename, value.content_type or "", await value.read()))
            elif key not in fields:
                fields[key] = value
        await form.close()
        return fields, uploads

    async def submit(self, request: Request) -> Response:
        browser = request.cookies.get(COOKIE)
        read = await self._read(request)
        if isinstance(read, Response):
            return read
        fields, uploads = read
        now = self.clock()
        if fields.get(HONEYPOT, "").strip():
            # A robot: the ordinary-looking page, and nothing opened.
            return self._page("confirmation", browser=browser, receipt=None, robot=True)
        nonce = check_csrf(self.s.secret, browser or "", fields.get("csrf", ""), now)
        values, errors = validate(fields, uploads, self.limits)
        if nonce is None or not self.used.spend(nonce, now):
            return self._form(400, browser, values, errors, notice=(
                "This form had expired or had been sent already, so nothing was sent this time. Check your "
                "answers below and send the form again."))
        if errors:
            return self._form(400, browser, values, errors)
        client = client_address(request.client.host if request.client else "", request.headers.get(
            "x-forwarded-for"), self.proxies)
        email = values["email"].lower()
        with self._rate_lock:
            limits = [(self.by_client, client)] + ([(self.by_email, email)] if email else [])
            blocked = [limit.retry_at(key, now) for limit, key in limits if not limit.allowed(key, now)]
            if not blocked:
                for limit, key in limits:
                    limit.record(key, now)
        if blocked:
            retry = max(blocked)
            wait = max(1, int((retry - now).total_seconds()))
            # The form comes back with everything typed, so nothing is lost while they wait.
            return self._page("form", 429, browser, headers={"Retry-After": str(wait)}, values=values, errors={},
                              notice=f"We have had several forms from you in the last hour, so this one was not sent. "
                                     f"Please try again after {retry.astimezone(self.zone).strftime('%-I:%M%p').lower()}"
                                     f", or email {self.s.address}.")
        receipt = await run_in_threadpool(self.intake.submit, Submission(values, tuple(uploads)))
        return self._page("confirmation", browser=browser, receipt=receipt, robot=False)

    # ---- the status page --------------------------------------------------------------------

    @staticmethod
    def _not_found() -> Response:
        return PlainTextResponse("Not Found", status_code=404, headers={"Cache-Control": "no-store",
                                                                       "Referrer-Policy": "no-referrer"})

    async def status_page(self, request: Request) -> Response:
        view = await run_in_threadpool(self.intake.case_status, request.path_params["ref"],
                                       request.path_params["token"])
        if view is None:
            return self._not_found()
        return self._status(request, view)

    def _status(self, request: Request, view: Any, status: int = 200, error: str = "", text: str = "",
                added: bool = False) -> Response:
        letters = [{"at": letter.at.astimezone(self.zone).strftime("%-d %B %Y, %-I:%M%p").replace("AM", "am")
                    .replace("PM", "pm"), "subject": letter.subject, "text": letter.text} for letter in view.letters]
        return self._page("status", status, request.cookies.get(COOKIE), case=view, letters=letters, error=error,
                          text=text, added=added, action=request.url.path)

    async def add_information(self, request: Request) -> Response:
        ref, token = request.path_params["ref"], request.path_params["token"]
        view = await run_in_threadpool(self.intake.case_status, ref, token)
        if view is None:
            return self._not_found()
        read = await self._read(request)
        if isinstance(read, Response):
            return read
        fields, _ = read
        now = self.clock()
        text = clean(fields.get("information", ""))
        nonce = check_csrf(self.s.secret, request.cookies.get(COOKIE, ""), fields.get("csrf", ""), now)
        if nonce is None or not self.used.spend(nonce, now):
            return self._status(request, view, 400, "This page had expired or had been sent already, so nothing was "
                                "added. Send it again.", text)
        if not text:
            return self._status(request, view, 400, "Enter the information you want to add", text)
        if len(text) > ADDED_INFORMATION_MAX:
            return self._status(request, view, 400, f"What you add must be {ADDED_INFORMATION_MAX:,} characters or "
                                f"fewer (you have {len(text):,})", text)
        key = f"status:{ref.upper()}"
        with self._rate_lock:
            if not self.by_email.allowed(key, now):
                return self._problem(429, "Too many additions", "Please try again in an hour, or reply to our email.",
                                     request.cookies.get(COOKIE))
            self.by_email.record(key, now)
        await run_in_threadpool(self.intake.add_information, ref, token, text)
        view = await run_in_threadpool(self.intake.case_status, ref, token)
        return self._status(request, view, added=True)
