"""The Content-Security-Policy in a real browser: the dashboard, an admin changelist and
the Swagger page run under it with no violation (every script is a static file), and it
is enforced (an inline script injected into a page is blocked and reported)."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright

from aura_orchestrator.tenancy.services import project_get_or_create
from tests.browser.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS
from tests.dashboard.conftest import make_operation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "csp-browser-password-42"
# Runs before any script of each page (through DevTools, so the policy does not apply to
# it): every violation event the page receives is kept.
WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${where}`);
});
"""


@pytest.fixture
def operator():
    get_user_model().objects.create_superuser(username="csp-ops", email="", password=PASSWORD)
    project = project_get_or_create(name="studio")
    now = timezone.now()
    for i in range(12):
        make_operation(
            project,
            session_id=f"video-{i % 3}",
            started_at=now - timedelta(hours=i),
            provider_name=("primary", "backup")[i % 2],
            latency_ms=300 + 40 * i,
            estimated_cost=Decimal("0.002000"),
        )


class Watched:
    """A page and what its console said (errors, CSP reports) and its scripts threw."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        page.add_init_script(WATCH)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        # The browser asks every page for /favicon.ico, which no admin page links: a 404.
        if not message.location.get("url", "").endswith("/favicon.ico"):
            self.console.append(f"{message.type}: {message.text}")

    def violations(self) -> list[str]:
        events = self.page.evaluate("() => window.__cspViolations")
        reported = [m for m in self.console if "Content Security Policy" in m]
        return [*events, *reported]

    def errors(self) -> list[str]:
        return [m for m in self.console if m.startswith(("error", "pageerror"))]


@pytest.fixture
def watched():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield Watched(browser.new_page(viewport={"width": 1440, "height": 900}))
        browser.close()


def log_in(watched: Watched, base: str) -> Page:
    page = watched.page
    page.goto(f"{base}/admin/login/?next=/dashboard/")
    page.fill("#id_username", "csp-ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/dashboard/")
    return page


def test_the_pages_run_under_the_policy_without_a_violation(operator, live_server_url, watched):
    """Login, the overview with its four Chart.js charts drawn, the telemetry changelist
    (its actions script), a new API key's page and Swagger UI with the operations listed:
    each page has the header, no violation and no script error."""
    base = live_server_url
    page = log_in(watched, base)
    page.wait_for_function("window.auraCharts && window.auraCharts.length === 4")
    drawn = page.evaluate(
        """() => window.auraCharts.map(c => c.canvas.width > 0 && c.canvas.height > 0
            && c.data.datasets.some(d => d.data.some(v => Number(v) > 0)))"""
    )
    assert drawn == [True] * 4
    assert watched.violations() == []

    response = page.goto(f"{base}/admin/telemetry/operationtelemetry/")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("#result_list tbody tr")).to_have_count(12)
    page.locator("#action-toggle").check()  # admin/js/actions.js ran: every row checked
    expect(page.locator("input.action-select:checked")).to_have_count(12)
    expect(page.locator(".action-counter")).to_contain_text("12 of 12 selected")
    assert watched.violations() == []

    # A new key's page: a click selects the whole key (a static script, no onclick).
    page.goto(f"{base}/admin/tenancy/apikey/add/")
    page.select_option("#id_project", label="studio")
    page.fill("#id_name", "csp-service")
    page.click("input[name=_save]")
    key = page.locator("#raw-key")
    expect(key).to_have_value(re.compile(r"^aura_"))
    key.click()
    selected = page.evaluate(
        """() => { const f = document.getElementById("raw-key");
                   return [f.selectionStart, f.selectionEnd, f.value.length]; }"""
    )
    assert selected[0] == 0 and selected[1] == selected[2] > 20, selected
    assert watched.violations() == []

    response = page.goto(f"{base}/api/docs/")
    assert response is not None
    assert "default-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Aura Orchestrator API")
    expect(page.locator(".opblock").first).to_be_visible(timeout=15000)
    assert page.locator(".opblock").count() > 10
    page.wait_for_timeout(300)  # violation events are dispatched asynchronously
    assert watched.violations() == []
    assert watched.errors() == []


def test_an_injected_inline_script_is_blocked_and_reported(operator, live_server_url, watched):
    """The watch sees what the policy refuses: an inline script added to the overview
    does not run, and its violation (script-src) is recorded."""
    page = log_in(watched, live_server_url)
    page.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.__injected = true";
                   document.body.appendChild(s); }"""
    )
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("() => window.__injected === undefined")
    assert any(v.startswith("script-src") for v in watched.violations()), watched.violations()
