"""The spend-limits dashboard: this period's spend from the ledger against each project and
API-key cap, the burn rate, and the projected day the cap is reached, at a fixed clock."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from aura_orchestrator.tenancy.models import Project
from aura_orchestrator.tenancy.services import api_key_create
from budgets import periods
from budgets.spend_models import Scope, SpendBudget
from budgets.spend_selectors import spend_limits
from tests.budgets.spend_rows import make_ledger

NOW = datetime(2026, 12, 11, 0, 0, tzinfo=UTC)  # ten days into December (UTC)
BEFORE = datetime(2026, 11, 20, tzinfo=UTC)  # budgets older than the period
URL = reverse("dashboard:spend")


@pytest.fixture
def fixed_clock(monkeypatch):
    monkeypatch.setattr(periods, "now", lambda: NOW)


def _budget(project, **fields) -> SpendBudget:
    return SpendBudget.objects.create(project=project, created_at=BEFORE, **fields)


@pytest.mark.django_db
def test_month_burn_rate_and_projected_day():
    project = Project.objects.create(name="studio")
    key = api_key_create(name="ingest", project=project).api_key
    roomy = _budget(project, max_cost=Decimal("100"))
    tight = _budget(project, scope=Scope.API_KEY, api_key=key, max_cost=Decimal("30"))
    tokens = _budget(project, scope=Scope.API_KEY, api_key=key, max_tokens=1_000_000)
    for budget in (roomy, tight):  # $20 over ten days: $2 a day
        make_ledger(budget, spent=[(0, 12_000_000), (0, 8_000_000)], period_start=_dec1())
    make_ledger(tokens, spent=[(500_000, 0)], period_start=_dec1())
    rows = {row.budget.pk: row for row in spend_limits(now=NOW)}

    cost = rows[roomy.pk].units[0]
    assert (cost.kind, cost.used, cost.cap, cost.per_day) == (
        "cost",
        Decimal("20"),
        Decimal("100"),
        Decimal("2"),
    )
    assert rows[roomy.pk].reached_at is None  # $80 left lasts 40 days: past January 1
    assert rows[roomy.pk].resets_at == datetime(2027, 1, 1, tzinfo=UTC)
    # $10 left at $2 a day: five days from now.
    assert rows[tight.pk].reached_at == datetime(2026, 12, 16, tzinfo=UTC)
    # 50,000 tokens a day; 500,000 left: ten days.
    assert rows[tokens.pk].units[0].per_day == 50_000
    assert rows[tokens.pk].reached_at == datetime(2026, 12, 21, tzinfo=UTC)


def _dec1() -> datetime:
    return datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.django_db
def test_burn_rate_counts_from_creation_and_in_the_projects_time_zone():
    # New York's December began at 05:00 UTC: ten days before 05:00 on the 11th.
    ny = Project.objects.create(name="ny", time_zone="America/New_York")
    at = datetime(2026, 12, 11, 5, 0, tzinfo=UTC)
    local = _budget(ny, max_cost=Decimal("50"))
    make_ledger(local, spent=[(0, 10_000_000)], period_start=datetime(2026, 12, 1, 5, tzinfo=UTC))
    # Created on the 6th: five days of spending, not ten.
    young = SpendBudget.objects.create(
        project=ny, max_cost=Decimal("50"), created_at=datetime(2026, 12, 6, 5, tzinfo=UTC)
    )
    make_ledger(young, spent=[(0, 10_000_000)], period_start=datetime(2026, 12, 1, 5, tzinfo=UTC))
    rows = {row.budget.pk: row for row in spend_limits(now=at)}
    assert rows[local.pk].units[0].per_day == Decimal("1")
    assert rows[young.pk].units[0].per_day == Decimal("2")
    assert rows[young.pk].reached_at == datetime(2026, 12, 31, 5, tzinfo=UTC)  # $40 / $2


@pytest.mark.django_db
def test_page_shows_bars_rates_and_projection(staff_client, fixed_clock):
    project = Project.objects.create(name="studio")
    tight = _budget(project, max_cost=Decimal("30"), period="month")
    make_ledger(tight, spent=[(0, 20_000_000)], reserved=(0, 1_000_000))
    spent = _budget(project, max_cost=Decimal("10"), period="week")
    make_ledger(spent, spent=[(0, 10_000_000)])
    # Neither end-user budgets nor inactive ones are listed.
    _budget(project, scope=Scope.END_USER, end_user="u-1", max_cost=Decimal("1"))
    _budget(project, max_cost=Decimal("1"), active=False)
    response = staff_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('data-budget="') == 2
    assert 'aria-current="page">Spend limits' in html
    assert 'aria-valuenow="70"' in html  # (20 + 1) / 30
    assert "$2.00/day" in html
    assert "the month's, over 1" in html  # ten days (1 week, 3 days)
    assert "Dec 16, 00:00" in html  # $10 left at $2 a day
    assert '<span class="pill pill-bad">reached</span>' in html  # the weekly one


@pytest.mark.django_db
def test_not_this_period_when_the_rate_is_too_low(staff_client, fixed_clock):
    project = Project.objects.create(name="studio")
    make_ledger(_budget(project, max_cost=Decimal("100")), spent=[(0, 1_000_000)])
    html = staff_client.get(URL).content.decode()
    assert "not this period" in html


@pytest.mark.django_db
def test_empty_state_has_no_chart_frames(staff_client):
    html = staff_client.get(URL).content.decode()
    assert "No spend limits" in html
    assert "<canvas" not in html and "spend-limits" not in html


@pytest.mark.django_db
def test_project_filter_and_a_bad_project(staff_client, fixed_clock):
    a, b = Project.objects.create(name="a"), Project.objects.create(name="b")
    _budget(a, max_cost=Decimal("1"))
    _budget(b, max_cost=Decimal("1"))
    assert staff_client.get(URL, {"project": a.pk}).content.decode().count('data-budget="') == 1
    html = staff_client.get(URL, {"project": 999_999}).content.decode()
    assert html.count('data-budget="') == 2  # all projects, and a message says why
    assert "There is no project with this id." in html


@pytest.mark.django_db
def test_staff_only(client, django_user_model):
    assert client.get(URL).status_code == 302
    user = django_user_model.objects.create_user(username="nobody", password="x")
    plain = Client()
    plain.force_login(user)
    response = plain.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_lifetime_budgets_burn_from_creation_and_young_ones_from_an_hour():
    project = Project.objects.create(name="studio")
    lifetime = SpendBudget.objects.create(
        project=project, period="none", max_cost=Decimal("100"), created_at=_dec1()
    )
    make_ledger(lifetime, spent=[(0, 20_000_000)], period_start=periods.LIFETIME_START)
    young = SpendBudget.objects.create(
        project=project, max_cost=Decimal("100"), created_at=NOW - timedelta(minutes=1)
    )
    make_ledger(young, spent=[(0, 1_000)], period_start=_dec1())
    rows = {row.budget.pk: row for row in spend_limits(now=NOW)}
    # $20 over ten days; no reset, so the cap is reached in 40 days whatever the month.
    assert rows[lifetime.pk].units[0].per_day == Decimal("2")
    assert rows[lifetime.pk].reached_at == datetime(2027, 1, 20, tzinfo=UTC)
    # A minute old: charted as an hour old, so $0.001 is $0.024 a day, not $1.44.
    assert rows[young.pk].units[0].per_day == Decimal("0.024")
