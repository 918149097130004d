"""The complaints form in a real browser: Debian's Chromium driven by Playwright, against `mailbot run` with its
real Dovecot and SMTP sink. Keyboard only; axe-core checks WCAG 2.2 AA; screenshots at 320 and 1280 px are kept
in test-artifacts/web/ (scripts/setup.sh installs Chromium, Playwright and axe-core)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.bot import Bot, Daemon
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
AXE = REPO / ".venv" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = REPO / "test-artifacts" / "web"
# As the machine's probe starts it: no sandbox as root, and nothing that reaches for the network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture
def site(bot: Bot) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bot.extra.update({"MAILBOT_HTTP_PORT": str(port), "MAILBOT_PUBLIC_URL": url})
    daemon = Daemon(bot)
    daemon.start()
    try:
        daemon.wait_log("HTTP listener", timeout=30)
        yield url
    finally:
        assert daemon.stop() == 0


@pytest.fixture
def page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is not installed: run scripts/setup.sh"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            # bypass_csp lets the test inject axe-core; the pages' own policy allows no script at all.
            yield browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True).new_page()
        finally:
            browser.close()


def tab_to(page, element_id: str, limit: int = 60) -> None:  # type: ignore[no-untyped-def]
    """Press Tab until the element has focus, as someone using only a keyboard would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"Tab never reached #{element_id}")


def axe_violations(page) -> list[str]:  # type: ignore[no-untyped-def]
    assert AXE.exists(), "axe-core is not installed: run scripts/setup.sh"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag',
            values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}});
        return r.violations.map(v => v.id + ': ' + v.help + ' (' + v.nodes.length + ')');
    }""")
    return list(result)


def shoot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (320, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        if width == 320:
            # Readable at 320 px: nothing wider than the screen, so nobody scrolls sideways.
            assert page.evaluate("document.documentElement.scrollWidth") <= 320, name
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_complaint_by_keyboard_in_chromium(bot: Bot, site: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{site}/complaints")
    assert axe_violations(page) == []
    shoot(page, "form")

    # Sent with nothing filled in: the errors, a summary at the top that links to each field.
    tab_to(page, "reason")
    tab_to(page, "name")
    page.keyboard.type("Jane Doe")
    page.keyboard.press("Enter")
    page.wait_for_selector("#error-summary")
    assert page.title().startswith("Error: ")
    summary = page.inner_text("#error-summary")
    assert "Tell us what your complaint is about" in summary and "Select whether you are" in summary
    assert page.input_value("#name") == "Jane Doe"  # kept
    assert axe_violations(page) == []
    shoot(page, "form-errors")

    page.click("#error-summary a[href='#reason']")  # the summary's link takes you to the field
    assert page.evaluate("location.hash") == "#reason"

    page.keyboard.press("Escape")
    page.goto(f"{site}/complaints#main")
    page.evaluate("document.activeElement.blur()")
    for field, words in (("reason", "Nobody called me back about volunteering."),
                         ("where_when", "The phone call on 3 November."),
                         ("outcome", "A call back and an apology.")):
        tab_to(page, field)
        page.keyboard.type(words)
    tab_to(page, "role-mentee")
    page.keyboard.press("Space")
    tab_to(page, "name")
    page.keyboard.type("Jane Doe")
    tab_to(page, "email")
    page.keyboard.type("jane@example.com")
    tab_to(page, "phone")
    page.keyboard.type("020 7946 0000")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "BUTTON"
    page.keyboard.press("Enter")
    page.wait_for_selector(".panel")
    text = page.inner_text("main")
    assert "1MM-2026-0001" in text and "A member of our team will reply to you by" in text
    assert axe_violations(page) == []
    shoot(page, "confirmation")

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not bot.letters("acknowledgement"):
        time.sleep(0.2)
    [ack] = bot.letters("acknowledgement")
    assert ack.rcpt_tos == ["jane@example.com"]
    body = ack.message.get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"(http://127\.0\.0\.1:\d+/cases/\S+)", body)
    assert link
    page.goto(link.group(1))
    assert "Your complaint 1MM-2026-0001" in page.inner_text("h1")
    assert "We have received your complaint" in page.inner_text("main")
    assert axe_violations(page) == []
    shoot(page, "status")
    tab_to(page, "information")
    page.keyboard.type("I also have the call log.")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("[role=status]")
    assert "We have added what you sent" in page.inner_text("main")


def test_the_annual_report_reads_well_printed_to_pdf_in_chromium(bot: Bot, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 17: `mailbot report`'s HTML, as trustees get it: opened from a file, printed to A4 by Chromium."""
    from datetime import datetime, timedelta, timezone

    from tests.integration.bot import make_mail, staff_reply

    t0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
    for n, month in enumerate((3, 3, 5, 9)):
        bot.append(make_mail(frm=f"Person {n} <person{n}@example.com>", subject=f"Complaint {n}"),
                   internaldate=t0.replace(month=month))
    # Through the command line: Playwright's own event loop is running in this thread.
    bot.cli("run", "--once", "--now", (t0.replace(month=9) + timedelta(seconds=1)).isoformat())
    [note] = bot.letters("staff-notification", case="1MM-2026-0001")
    bot.append(staff_reply(note, "Priya Shah <priya.shah@1mm.org.uk>", "#resolve upheld\nWe are sorry."))
    bot.cli("run", "--once", "--now", (t0.replace(month=9) + timedelta(hours=1)).isoformat())
    out = tmp_path / "report.html"
    bot.cli("report", "--from", "2026-01-01", "--to", "2026-12-31", "--out", str(out),
            "--now", "2026-12-01T09:00:00+00:00")

    page.goto(out.as_uri())
    assert page.title().startswith("One Million Mentors: complaints report")
    assert axe_violations(page) == []
    page.emulate_media(media="print")
    # A4 less the page's 14 mm margins each side, at 96 px to the inch: nothing may be wider.
    printable = round((210 - 2 * 14) / 25.4 * 96)
    page.set_viewport_size({"width": printable, "height": 1100})
    assert page.evaluate("document.documentElement.scrollWidth") <= printable
    sizes = page.evaluate("[...document.querySelectorAll('figure svg')].map(s => "
                          "[s.getBoundingClientRect().width, s.getBoundingClientRect().height])")
    assert len(sizes) == 5 and all(w > printable * 0.9 and h > 100 for w, h in sizes), sizes
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "annual-report-print.png"), full_page=True)
    pdf = page.pdf(path=str(ARTIFACTS / "annual-report.pdf"), prefer_css_page_size=True, print_background=True)
    pages = len(re.findall(rb"/Type\s*/Page\b", pdf))
    assert pdf.startswith(b"%PDF") and 2 <= pages <= 8, pages
