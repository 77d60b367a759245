"""The dashboards in a real browser: Debian's Chromium driven by Playwright against a real
`manage.py serve` on loopback. Run on their own (`pytest -m browser tests/browser`):
Playwright's sync API would break later pytest-asyncio tests in the same process.

Data is written before the browser starts (Playwright's sync API runs an event loop in
this thread, where Django refuses ORM calls)."""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from aura_orchestrator.tenancy.services import api_key_create, project_get_or_create
from budgets.spend_models import Scope, SpendBudget
from tests.budgets.spend_rows import make_ledger
from tests.dashboard.conftest import make_operation, make_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "artifacts"
PASSWORD = "browser-test-password-42"


@pytest.fixture
def staff_login():
    """A staff user (the server runs with the test settings, so it shares the hasher)."""
    user = get_user_model().objects.create_user(
        username="dash-staff", password=PASSWORD, is_staff=True
    )
    return user.username, PASSWORD


@pytest.fixture
def telemetry(db):
    """Two days of operations (37 in the last 24 hours, 23 the day before) over two
    providers, failures and cache hits included, tool calls in video-0, and a session near
    its cap."""
    project = project_get_or_create(name="studio")
    now = timezone.now()
    kinds = ("planning", "scripting", "rag_retrieval", "scene_analysis", "creative")
    for i in range(60):
        make_operation(
            project,
            session_id=f"video-{i % 4}",
            started_at=now - timedelta(hours=i % 47, minutes=i),
            operation_type=kinds[i % len(kinds)],
            provider_name=("primary", "backup")[i % 3 == 0],
            cache_hit=i % 5 == 0 and i % 11 != 0,
            success=i % 11 != 0,
            error_code="" if i % 11 else "provider_error",
            latency_ms=200 + (i * 37) % 1500,
            estimated_cost=Decimal("0.001500") * (1 + i % 4),
            # video-0's operations called a tool.
            tools_sent=1 if i % 4 == 0 else 0,
            tool_calls=[{"name": "search", "arguments": '{"q": "coral"}'}] if i % 4 == 0 else [],
        )
    make_session(project, session_id="video-0", cost_micros=180_000, cap_micros=200_000)
    return project


@pytest.fixture
def chromium():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


def test_staff_log_in_and_the_overview_draws_its_charts(
    telemetry, staff_login, live_server_url, chromium
):
    """Through the admin login form to the overview: five KPI cards, four canvases, each
    Chart.js chart with datasets holding data; a screenshot goes to artifacts/."""
    username, password = staff_login
    page = chromium.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{live_server_url}/admin/login/?next=/dashboard/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_load_state()
    page.wait_for_url(f"{live_server_url}/dashboard/")
    page.wait_for_function("window.auraCharts && window.auraCharts.length === 4")

    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator(".kpi")).to_have_count(5)
    expect(page.locator(".kpi-operations .kpi-value")).to_have_text("37")
    expect(page.locator(".kpi-operations .delta")).to_have_text("▲ +60.9%")  # 37 vs 23
    assert page.locator("canvas").count() == 4
    charts = page.evaluate(
        """() => window.auraCharts.map(chart => ({
            id: chart.canvas.id,
            datasets: chart.data.datasets.length,
            points: chart.data.datasets.reduce(
                (n, d) => n + d.data.filter(v => Number(v) > 0).length, 0),
            drawn: chart.canvas.width > 0 && chart.canvas.height > 0,
        }))"""
    )
    assert {c["id"] for c in charts} == {
        "chart-operations",
        "chart-cost",
        "chart-latency",
        "chart-types",
    }
    for chart in charts:
        assert chart["datasets"] >= 1 and chart["points"] > 0 and chart["drawn"], chart
    expect(page.locator(".hot-item")).to_have_count(1)  # the session at 90% of its cap
    assert errors == []

    ARTIFACTS.mkdir(exist_ok=True)
    # Finish the entry animations (1 s in Chart.js) so the picture shows the final charts.
    page.evaluate(
        "window.auraCharts.forEach(c => { c.options.animation = false; c.update('none'); })"
    )
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
    assert (ARTIFACTS / "dashboard-overview.png").stat().st_size > 20_000


def test_staff_follow_a_session_to_one_operation(telemetry, staff_login, live_server_url, chromium):
    """Sessions list (the capped session highlighted) → session detail → operation detail,
    with its tool-call table."""
    username, password = staff_login
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server_url}/admin/login/?next=/dashboard/sessions/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server_url}/dashboard/sessions/")

    expect(page.locator("tr.level-near")).to_have_count(1)
    page.click("tr.level-near a.strong")
    expect(page.locator("h1")).to_have_text("video-0")
    expect(page.locator("table.ops tbody tr")).to_have_count(15)
    page.locator("table.ops tbody tr a").first.click()
    expect(page.locator("h2", has_text="Attempts")).to_be_visible()
    expect(page.locator("dt", has_text="Operation id")).to_be_visible()
    calls = page.locator("table.tool-calls tbody tr")
    expect(calls).to_have_count(1)
    expect(calls.locator("td").nth(2)).to_have_attribute("title", '{"q": "coral"}')


def test_anonymous_visitor_is_sent_to_the_login_page(live_server_url, chromium):
    """Without a session, /dashboard/ lands on the admin login form."""
    page = chromium.new_page()
    page.goto(f"{live_server_url}/dashboard/")
    assert page.url == f"{live_server_url}/admin/login/?next=/dashboard/"
    expect(page.locator("#id_username")).to_be_visible()


@pytest.fixture
def spend_budgets(db):
    """A project budget with both caps (cost past 80 %) and two narrowed key budgets
    with long names; returns the project's."""
    project = project_get_or_create(name="studio")
    key = api_key_create(name="video-pipeline-ingest-service", project=project).api_key
    both = SpendBudget.objects.create(
        project=project, max_cost=Decimal("250"), max_tokens=40_000_000
    )
    make_ledger(both, spent=[(1_200_000, 212_345_678), (800_000, 10_000_000)])
    for period in ("day", "week"):
        narrowed = SpendBudget.objects.create(
            project=project,
            scope=Scope.API_KEY,
            api_key=key,
            model_name="a-rather-long-model-name-2026-12-01-preview",
            period=period,
            max_cost=Decimal("12.5"),
        )
        make_ledger(narrowed, spent=[(10_000, 3_000_000)], reserved=(500, 250_000))
    return both


def test_spend_limits_page_draws_its_bars_without_scrolling_sideways(
    spend_budgets, staff_login, live_server_url, chromium
):
    """Spend limits at 1440 px: one row per capped budget with its bars (the fuller one
    past 80 %), and neither the page nor the table scrolls horizontally."""
    username, password = staff_login

    page = chromium.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server_url}/admin/login/?next=/dashboard/spend/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server_url}/dashboard/spend/")

    expect(page.locator("h1")).to_have_text("Spend limits")
    expect(page.locator("tr[data-budget]")).to_have_count(3)
    expect(page.locator(".usage")).to_have_count(4)  # cost and tokens, then cost twice
    expect(page.locator(f'tr[data-budget="{spend_budgets.pk}"] .usage-near')).to_have_count(1)
    widths = page.evaluate(
        """() => [...document.querySelectorAll('.bar-used')].map(
            e => e.getBoundingClientRect().width)"""
    )
    assert all(w > 0 for w in widths), widths
    overflow = page.evaluate(
        """() => ({
            page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
            table: [...document.querySelectorAll('.table-wrap')].map(
                e => e.scrollWidth - e.clientWidth),
        })"""
    )
    assert overflow["page"] <= 0 and all(x <= 0 for x in overflow["table"]), overflow
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-spend-limits.png"), full_page=True)
