"""The console at a working day's 1440 x 900: every main admin changelist, with realistic
rows (long session ids, UUIDs, long URLs), fits the window without a horizontal
scrollbar, and the columns an operator reads first (cost, latency, success, the share of
a cap) lie inside it. The dashboard pages are checked empty and with data.

Screenshots go to a temporary directory (pytest's tmp_path), never into the repository;
set AURA_SCREENSHOT_DIR to keep them somewhere to look at.

Run on their own: `pytest -m browser tests/browser` (see test_dashboard_browser.py)."""

import os
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect, sync_playwright

from aura_orchestrator.caching.models import CacheEntry
from aura_orchestrator.catalog.models import LlmModel, Provider
from aura_orchestrator.tenancy.services import api_key_create, project_get_or_create
from budgets.limit_models import RateLimit
from budgets.models import BudgetConstraint, BudgetReservation
from budgets.spend_models import (
    AlertDelivery,
    AlertEndpoint,
    BudgetAlert,
    Scope,
    SpendBudget,
    SpendHold,
)
from presets.models import OperationPreset
from presets.operation_types import OperationType
from presets.services import preset_reset
from telemetry.models import TelemetryRollup
from tests.budgets.spend_rows import make_ledger
from tests.dashboard.conftest import make_operation, make_session

from .test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH, HEIGHT = 1440, 900
PASSWORD = "layout-test-password-42"
# What a client sends as a session id in practice: long, with no break opportunity.
LONG_SESSION = "video-render-pipeline-2026-12-08T03:14:15.926535Z-4f6c1b2a9d8e7f60a1b2c3d4"


@pytest.fixture
def shots(tmp_path) -> Path:
    kept = os.environ.get("AURA_SCREENSHOT_DIR")
    path = Path(kept) if kept else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def superuser(db):
    user = get_user_model().objects.create_superuser(
        username="layout-admin", password=PASSWORD, email="ops@example.com"
    )
    return user.username


@pytest.fixture
def console_rows(db):
    """A few rows in every main table, with the long values real installs have."""
    project = project_get_or_create(name="studio-video-production-eu-west")
    project.description = "Everything the video studio's render pipeline sends, per scene."
    project.save()
    key = api_key_create(name="video-pipeline-ingest-service-primary", project=project).api_key
    api_key_create(name="nightly-batch-summaries", project=project)
    provider = Provider.objects.create(
        name="azure-openai-sweden-central",
        kind="openai",
        base_url="https://aura-studio-prod-sweden-central.openai.azure.com/openai/deployments/v1",
        api_key_env="AZURE_OPENAI_SWEDEN_API_KEY",
        is_default=True,
    )
    for i, name in enumerate(
        ("gpt-4.1-mini-2025-04-14-global-standard", "gpt-4o-2024-11-20", "o4-mini")
    ):
        LlmModel.objects.create(
            provider=provider,
            name=name,
            is_default=i == 0,
            input_price=Decimal("0.400000"),
            output_price=Decimal("1.600000"),
            cached_input_price=Decimal("0.100000"),
            cache_write_price=Decimal("0.500000"),
            context_window=1_047_576,
        )
    now = timezone.now()
    for i in range(30):
        make_operation(
            project,
            session_id=f"{LONG_SESSION}-{i % 3}",
            api_key=key,
            started_at=now - timedelta(minutes=7 * i),
            # The longest type; a timeout's two minutes; a costly call.
            operation_type=("transition_generation", "planning", "creative")[i % 3],
            provider_name=provider.name,
            model_name="gpt-4.1-mini-2025-04-14-global-standard",
            tokens_in=123_456,
            tokens_out=98_765,
            estimated_cost=Decimal("12.345678") if i % 2 else Decimal("0.000123"),
            latency_ms=120_000 if i % 2 else 345,
            success=i % 7 != 0,
            error_code="" if i % 7 else "provider_timeout",
            retry_count=i % 3,
            end_user=f"user-{uuid.uuid4()}",
        )
    constraint = BudgetConstraint.objects.create(
        name="video-render-session-default",
        max_tokens_per_operation=200_000,
        max_cost_per_operation=Decimal("5"),
        max_tokens_per_session=5_000_000,
        max_cost_per_session=Decimal("250"),
    )
    for i in range(3):
        session = make_session(
            project,
            session_id=f"{LONG_SESSION}-{i}",
            cost_micros=(180_000_000, 1_000_000, 260_000_000)[i],
            cap_micros=250_000_000,
            constraint=constraint,
            tokens_used=3_456_789,
            tokens_reserved=12_345,
            cost_reserved_micros=123_456,
            max_tokens_per_session=5_000_000,
            operation_count=1234,
        )
        BudgetReservation.objects.create(
            session=session,
            operation_id=uuid.uuid4(),
            tokens=12_345,
            cost_micros=123_456,
            expires_at=now + timedelta(minutes=5),
        )
    budget = SpendBudget.objects.create(
        project=project, max_cost=Decimal("250"), max_tokens=40_000_000
    )
    make_ledger(budget, spent=[(1_200_000, 212_345_678), (800_000, 10_000_000)])
    narrowed = SpendBudget.objects.create(
        project=project,
        scope=Scope.API_KEY,
        api_key=key,
        provider=provider,
        model_name="gpt-4.1-mini-2025-04-14-global-standard",
        period="day",
        max_cost=Decimal("12.5"),
        max_tokens=1_000_000,
    )
    make_ledger(narrowed, spent=[(10_000, 3_000_000)], reserved=(500, 250_000))
    SpendBudget.objects.create(
        project=project, scope=Scope.DEFAULT_END_USER, period="week", max_cost=Decimal("3")
    )
    RateLimit.objects.create(
        project=project,
        scope=Scope.API_KEY,
        api_key=key,
        requests_per_minute=6000,
        tokens_per_minute=2_000_000,
        max_in_flight=64,
        allowed_models="gpt-4.1-mini-2025-04-14-global-standard, claude-sonnet-4-*",
    )
    RateLimit.objects.create(
        project=project,
        scope=Scope.END_USER,
        end_user="customer-7f3a9c2e-4b1d-4e8a-9f6b-2c5d8e1a3b7f",
        model_name="gpt-4.1-mini-2025-04-14-global-standard",
        requests_per_minute=20,
    )
    SpendHold.objects.create(
        operation_id=uuid.uuid4(),
        shards=[[narrowed.pk, "", 0]],
        tokens=500,
        cost_micros=250_000,
        expires_at=now + timedelta(minutes=5),
    )
    endpoint = AlertEndpoint.objects.create(
        project=project,
        url="https://hooks.example-operations-team.com/services/T00000000/B00000000/alerts",
        secret="s" * 32,
    )
    alert = BudgetAlert.objects.create(
        budget=budget,
        subject="",
        period_start=now,
        threshold=80,
        unit="cost",
        used=212_345_678,
        cap=250_000_000,
    )
    AlertDelivery.objects.create(
        alert=alert,
        endpoint=endpoint,
        channel=AlertDelivery.Channel.WEBHOOK,
        target=endpoint.url,
        payload={"threshold": 80},
        status=AlertDelivery.Status.FAILED,
        attempts=5,
        last_status_code=502,
        last_error="HTTP 502 from hooks.example-operations-team.com: Bad Gateway " * 4,
    )
    for i in range(3):
        CacheEntry.objects.create(
            project=project,
            key_hash=uuid.uuid4().hex + uuid.uuid4().hex,
            operation_type="transition_generation",
            provider_name=provider.name,
            model_name="gpt-4.1-mini-2025-04-14-global-standard",
            content="An answer.",
            tokens_in=1234,
            tokens_out=567,
            expires_at=now + timedelta(hours=1 - i),
            hit_count=42,
            last_hit_at=now,
        )
    for hours in range(3):
        TelemetryRollup.objects.create(
            bucket_start=now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours),
            project=project,
            provider_name=provider.name,
            model_name="gpt-4.1-mini-2025-04-14-global-standard",
            operation_type="transition_generation",
            operations=12_345,
            successes=12_000,
            failures=345,
            cache_hits=1_234,
            tokens_in=1_234_567_890,
            tokens_out=987_654_321,
            cost=Decimal("12345.678901"),
            latency_sum_ms=12_345 * 4_321,
        )
    for op in OperationType:  # a transactional test starts from a flushed database
        if not OperationPreset.objects.filter(operation_type=op.value).exists():
            preset_reset(operation_type=op)
    return project


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


def _logged_in(browser: Browser, url: str, username: str) -> Page:
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    page.goto(f"{url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/admin/")
    return page


def _overflow(page: Page) -> int:
    """How far the page, or a scrolling box in it (the admin wraps its result table in
    one), reaches past its width, in pixels."""
    return page.evaluate(
        """() => Math.max(
            document.documentElement.scrollWidth - document.documentElement.clientWidth,
            ...[...document.querySelectorAll('#changelist .results, .table-wrap')].map(
                e => e.scrollWidth - e.clientWidth))"""
    )


# changelist → (rows expected at least, columns that must lie inside the window)
CHANGELISTS = {
    "telemetry/operationtelemetry": (30, ["cost", "latency", "success", "session"]),
    "telemetry/telemetryrollup": (3, ["operations", "cost", "average_latency_ms"]),
    "budgets/llmsession": (3, ["usage", "cost_accrued_usd", "session"]),
    "budgets/budgetreservation": (3, ["cost_usd", "expired"]),
    "budgets/budgetconstraint": (1, ["enforce_hard_limits"]),
    "budgets/spendbudget": (3, ["usage", "used", "active"]),
    "budgets/ratelimit": (2, ["requests_per_minute", "max_in_flight", "active"]),
    "budgets/spendperiod": (2, ["pool"]),
    "budgets/spendshard": (3, ["used", "reserved"]),
    "budgets/spendhold": (1, ["cost_usd", "expired"]),
    "budgets/alertendpoint": (1, ["active", "secret_end"]),
    "budgets/budgetalert": (1, ["threshold_percent", "used_shown", "cap_shown"]),
    "budgets/alertdelivery": (1, ["status", "last_status_code", "created_at"]),
    "presets/operationpreset": (13, ["customized", "cache_ttl_seconds"]),
    "catalog/provider": (1, ["enabled", "priority", "model_count"]),
    "catalog/llmmodel": (3, ["input_price", "output_price", "context_window"]),
    "tenancy/project": (1, ["active_keys", "sessions"]),
    "tenancy/apikey": (2, ["status", "last_used_at"]),
    "caching/cacheentry": (3, ["expired", "hit_count"]),
}


def test_every_changelist_fits_1440_px_with_its_key_columns_in_view(
    console_rows, superuser, live_server_url, browser, shots
):
    """No changelist scrolls sideways at 1440 px; cost, latency, success and the share of
    a cap are on screen; a truncated id carries its full value in its title."""
    page = _logged_in(browser, live_server_url, superuser)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    failures = {}
    for changelist, (rows, columns) in CHANGELISTS.items():
        page.goto(f"{live_server_url}/admin/{changelist}/")
        assert page.locator("#result_list, .paginator").count() >= 1, changelist
        assert page.locator("#result_list tbody tr").count() >= rows, changelist
        page.screenshot(path=str(shots / f"admin-{changelist.replace('/', '-')}.png"))
        outside = page.evaluate(
            """(columns) => columns.filter(name => {
                const th = document.querySelector('#result_list th.column-' + name);
                if (!th) return true;
                const box = th.getBoundingClientRect();
                const frame = th.closest('.results') || document.documentElement;
                const right = Math.min(
                    frame.getBoundingClientRect().right, document.documentElement.clientWidth);
                return box.width === 0 || box.right > right + 0.5;
            })""",
            columns,
        )
        overflow = _overflow(page)
        if overflow > 0 or outside:
            failures[changelist] = {"overflow_px": overflow, "outside": outside}
    assert failures == {}, failures
    assert errors == []


def test_long_ids_are_cut_on_one_line_with_the_full_value_on_hover(
    console_rows, superuser, live_server_url, browser, shots
):
    """Session ids stay on one line (no wrapping over several), shortened with an
    ellipsis, the full id in the title; the cap share's bar and percentage are whole."""
    page = _logged_in(browser, live_server_url, superuser)
    page.goto(f"{live_server_url}/admin/budgets/llmsession/")
    ids = page.locator("#result_list .field-session .short-id")
    expect(ids).to_have_count(3)
    first = ids.first
    assert (first.get_attribute("title") or "").startswith(LONG_SESSION)
    line_height = page.evaluate(
        "(e) => parseFloat(getComputedStyle(e).lineHeight) || 20", first.element_handle()
    )
    assert first.bounding_box()["height"] <= line_height * 1.5  # one line
    # The bar and its percentage are drawn in full: nothing of the cell is cut.
    clipped = page.evaluate(
        """() => [...document.querySelectorAll('#result_list td.field-usage')].map(td => {
            const cell = td.getBoundingClientRect();
            return [...td.querySelectorAll('span')].some(s => {
                const b = s.getBoundingClientRect();
                return b.right > cell.right + 0.5 || b.right > innerWidth;
            });
        })"""
    )
    assert clipped == [False, False, False], clipped
    expect(page.locator("#result_list td.field-usage", has_text="104%")).to_have_count(1)

    page.goto(f"{live_server_url}/admin/telemetry/operationtelemetry/")
    op_ids = page.locator("#result_list .field-session .short-id")
    assert op_ids.count() == 30
    heights = {round(box["height"]) for box in (e.bounding_box() for e in op_ids.all())}
    assert max(heights) <= 30, heights


def test_admin_features_survive_the_narrower_lists(
    console_rows, superuser, live_server_url, browser, shots
):
    """The actions, filters and search of the lists are still there, and the spend
    budgets keep their bars."""
    page = _logged_in(browser, live_server_url, superuser)
    page.goto(f"{live_server_url}/admin/budgets/alertendpoint/")
    expect(page.locator("select[name=action] option[value=send_test]")).to_have_count(1)
    page.goto(f"{live_server_url}/admin/budgets/llmsession/")
    expect(page.locator("select[name=action] option[value=clear_ledger]")).to_have_count(1)
    expect(page.locator("#changelist-filter")).to_be_visible()
    page.fill("#searchbar", LONG_SESSION + "-1")
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.goto(f"{live_server_url}/admin/budgets/spendbudget/")
    # One bar per budget, filled in proportion: 26 % and 89 % spent, the third none.
    bars = page.evaluate(
        """() => [...document.querySelectorAll('#result_list td.field-usage .usage-track')]
            .map(t => Math.round(100 * t.firstElementChild.getBoundingClientRect().width
                                 / t.getBoundingClientRect().width))"""
    )
    assert sorted(bars) == [0, 26, 89], bars


def _dashboard(page: Page, url: str, path: str) -> None:
    page.goto(f"{url}{path}")
    page.wait_for_load_state("networkidle")
    page.evaluate(
        "() => (window.auraCharts || []).forEach(c => { c.options.animation = false; "
        "c.update('none'); })"
    )


DASHBOARD_PAGES = {"overview": "/dashboard/", "sessions": "/dashboard/sessions/"}


def test_empty_dashboard_shows_empty_states_not_empty_charts(
    superuser, live_server_url, browser, shots
):
    """A fresh install: each page says there is nothing yet (no chart frame with a
    "1 ms / 0 ms" axis), and nothing scrolls sideways."""
    page = _logged_in(browser, live_server_url, superuser)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    _dashboard(page, live_server_url, "/dashboard/")
    page.screenshot(path=str(shots / "dashboard-overview-empty.png"), full_page=True)
    assert page.locator("canvas").count() == 0
    assert page.evaluate("(window.auraCharts || []).length") == 0
    expect(page.locator(".empty-state", has_text="No calls yet")).to_have_count(1)
    assert _overflow(page) <= 0

    _dashboard(page, live_server_url, "/dashboard/sessions/")
    page.screenshot(path=str(shots / "dashboard-sessions-empty.png"), full_page=True)
    expect(page.locator(".empty-state", has_text="No sessions yet")).to_have_count(1)
    assert _overflow(page) <= 0

    _dashboard(page, live_server_url, "/dashboard/spend/")
    page.screenshot(path=str(shots / "dashboard-spend-empty.png"), full_page=True)
    expect(page.locator(".empty-state", has_text="No spend limits yet")).to_have_count(1)
    assert _overflow(page) <= 0
    assert errors == []


def test_dashboard_with_data_draws_charts_and_fits(
    console_rows, superuser, live_server_url, browser, shots
):
    """With calls recorded, the overview draws its four charts, no empty state shows,
    and every page (long session ids included) fits the window."""
    page = _logged_in(browser, live_server_url, superuser)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _dashboard(page, live_server_url, "/dashboard/")
    page.wait_for_function("window.auraCharts && window.auraCharts.length === 4")
    expect(page.locator(".empty-state")).to_have_count(0)
    page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)
    assert _overflow(page) <= 0
    # Long session ids stay on one line, cut, the whole id in the title.
    hot = page.locator(".hot-name .short-id").first
    assert (hot.get_attribute("title") or "").startswith(LONG_SESSION)
    assert hot.evaluate("e => e.getBoundingClientRect().height < 30")
    for name, path in (("sessions", "/dashboard/sessions/"), ("spend", "/dashboard/spend/")):
        _dashboard(page, live_server_url, path)
        expect(page.locator(".empty-state")).to_have_count(0)
        page.screenshot(path=str(shots / f"dashboard-{name}.png"), full_page=True)
        assert _overflow(page) <= 0, name
        if name == "sessions":
            one_line = page.locator("a.session-id").evaluate_all(
                """links => links.map(e => e.getBoundingClientRect().height < 30
                    && e.querySelector('.short-id').title)"""
            )
            # One line each, and the three still tell apart (their ends differ).
            assert len(one_line) == 3 and all(one_line), one_line
            shown = page.locator("a.session-id").all_inner_texts()
            assert len(set(shown)) == 3 and all(t.endswith(("-0", "-1", "-2")) for t in shown)
    assert errors == []
