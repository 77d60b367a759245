"""Spend budgets in the console: the changelist shows this period's spend from the shards,
the add form refuses inconsistent scopes by field, a cap change re-balances the open
periods, and the list reads its page's spend in one query whatever its length."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from aura_orchestrator.tenancy.models import Project
from aura_orchestrator.tenancy.services import api_key_create, project_get_or_create
from budgets.spend_models import Scope, SpendBudget, SpendPeriod, SpendShard
from tests.budgets.spend_rows import current_start, make_hold, make_ledger

CHANGELIST = "admin:budgets_spendbudget_changelist"


def _form(project, **overrides) -> dict:
    data = {
        "project": project.pk,
        "scope": Scope.PROJECT,
        "api_key": "",
        "end_user": "",
        "provider": "",
        "model_name": "",
        "period": "month",
        "max_cost": "",
        "max_tokens": "",
        "enforce_hard_limits": "on",
        "thresholds": "50,80,100",
        "alert_emails": "",
        "active": "on",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _row(html: str, label: str) -> str:
    """The changelist row whose scope link is `label` (its full text, in the title of the
    shortened id)."""
    for row in re.findall(r"<tr>.*?</tr>", html, re.S):
        if f'title="{label}"' in row:
            return row
    raise AssertionError(f"no row for {label}")


@pytest.mark.django_db
def test_changelist_shows_the_current_period_summed_over_shards(admin_client, project):
    key = api_key_create(name="ingest", project=project).api_key
    budget = SpendBudget.objects.create(
        project=project, scope=Scope.API_KEY, api_key=key, max_cost=Decimal("10")
    )
    # $2.50 + $1.50 spent on two shards, $0.25 reserved: 42.5 % of $10 in use.
    make_ledger(budget, spent=[(1_000, 2_500_000), (500, 1_500_000)], reserved=(0, 250_000))
    # Last month's ledger does not count.
    make_ledger(
        budget, spent=[(9, 9_000_000)], period_start=current_start(budget) - timedelta(days=40)
    )
    response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    row = _row(response.content.decode(), "api_key:ingest")
    assert 'title="42.5% of cap"' in row  # the bar: (4.00 + 0.25) / 10
    assert "$4.000000 · 1,500 tok" in row  # used
    assert '<td class="field-caps">$10</td>' in row  # the cost cap, in USD as typed
    # What is left is on the budget's page: 10 - 4 - 0.25.
    page = admin_client.get(reverse("admin:budgets_spendbudget_change", args=[budget.pk]))
    assert "$5.750000" in page.content.decode()


@pytest.mark.django_db
def test_the_bar_shows_the_fuller_cap_and_default_end_users_are_counted(admin_client, project):
    budget = SpendBudget.objects.create(
        project=project,
        scope=Scope.DEFAULT_END_USER,
        max_cost=Decimal("1"),
        max_tokens=1_000,
        period="day",
    )
    make_ledger(budget, subject="u-1", spent=[(900, 100_000)])  # tokens 90 %: the fuller
    make_ledger(budget, subject="u-2", spent=[(100, 300_000)])
    row = _row(admin_client.get(reverse(CHANGELIST)).content.decode(), "end_user:*")
    assert 'title="90.0% of cap"' in row
    assert "$0.400000 · 1,000 tok (2 end users)" in row  # the sum over end users
    page = admin_client.get(reverse("admin:budgets_spendbudget_change", args=[budget.pk]))
    assert "$0.900000 · 100 tok (least left)" in page.content.decode()  # what u-1 has left


@pytest.mark.django_db
def test_add_form_creates_a_budget(admin_client, project):
    key = api_key_create(name="ingest", project=project).api_key
    response = admin_client.post(
        reverse("admin:budgets_spendbudget_add"),
        _form(project, scope=Scope.API_KEY, api_key=key.pk, max_cost="12.50", max_tokens=""),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    budget = SpendBudget.objects.get()
    assert (budget.api_key_id, budget.max_cost, budget.max_tokens) == (
        key.pk,
        Decimal("12.50"),
        None,
    )
    assert budget.max_cost_micros == 12_500_000


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"scope": Scope.API_KEY, "max_cost": "1"}, "api_key"),  # no key for scope api_key
        ({"scope": Scope.PROJECT, "end_user": "u-1", "max_cost": "1"}, "end_user"),
        ({"scope": Scope.END_USER, "max_cost": "1"}, "end_user"),  # nobody named
        ({}, "max_cost"),  # no cap at all
        ({"max_cost": "-1"}, "max_cost"),
        ({"max_cost": "1", "thresholds": "50,abc"}, "thresholds"),
    ],
)
def test_add_form_refuses_inconsistent_budgets_by_field(admin_client, project, overrides, field):
    response = admin_client.post(
        reverse("admin:budgets_spendbudget_add"), _form(project, **overrides)
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert not SpendBudget.objects.exists()


@pytest.mark.django_db
def test_a_key_of_another_project_is_refused(admin_client, project):
    other = api_key_create(name="theirs", project=project_get_or_create(name="other")).api_key
    response = admin_client.post(
        reverse("admin:budgets_spendbudget_add"),
        _form(project, scope=Scope.API_KEY, api_key=other.pk, max_cost="1"),
    )
    assert response.status_code == 200
    assert "api_key" in response.context["adminform"].form.errors


@pytest.mark.django_db
def test_change_form_offers_only_the_projects_unrevoked_keys(admin_client, project):
    mine = api_key_create(name="mine", project=project).api_key
    revoked = api_key_create(name="old", project=project).api_key
    revoked.revoked_at = revoked.created_at
    revoked.save(update_fields=["revoked_at"])
    theirs = api_key_create(name="theirs", project=project_get_or_create(name="other")).api_key
    budget = SpendBudget.objects.create(project=project, max_cost=Decimal("1"))
    response = admin_client.get(reverse("admin:budgets_spendbudget_change", args=[budget.pk]))
    offered = set(
        response.context["adminform"].form.fields["api_key"].queryset.values_list("pk", flat=True)
    )
    assert offered == {mine.pk}
    assert theirs.pk not in offered and revoked.pk not in offered


@pytest.mark.django_db
def test_cap_change_rebalances_the_open_period(admin_client, project):
    budget = SpendBudget.objects.create(project=project, max_cost=Decimal("10"))
    period = make_ledger(budget, spent=[(0, 3_000_000), (0, 1_000_000)], reserved=(0, 500_000))
    assert period.pool_cost_micros == 5_500_000
    response = admin_client.post(
        reverse("admin:budgets_spendbudget_change", args=[budget.pk]),
        _form(project, max_cost="6"),
    )
    assert response.status_code == 302
    period.refresh_from_db()
    # The new cap less what the shards hold (4.00 spent + 0.50 reserved).
    assert (period.max_cost_micros, period.pool_cost_micros) == (6_000_000, 1_500_000)
    allotments = sorted(
        SpendShard.objects.filter(budget=budget).values_list("allot_cost_micros", flat=True)
    )
    assert allotments == [1_000_000, 3_500_000]


@pytest.mark.django_db
def test_soft_budget_has_no_pool_and_other_edits_leave_it_alone(admin_client, project):
    budget = SpendBudget.objects.create(project=project, max_cost=Decimal("10"))
    period = make_ledger(budget, spent=[(0, 3_000_000)])
    url = reverse("admin:budgets_spendbudget_change", args=[budget.pk])
    # An alert edit does not touch the ledger (the pool is left as it is, even if off).
    SpendPeriod.objects.filter(pk=period.pk).update(pool_cost_micros=123)
    assert admin_client.post(url, _form(project, max_cost="10", thresholds="90")).status_code == 302
    period.refresh_from_db()
    assert period.pool_cost_micros == 123
    # Going soft: no allotment, no pool (a soft budget never refuses).
    form = _form(project, max_cost="10")
    del form["enforce_hard_limits"]
    assert admin_client.post(url, form).status_code == 302
    period.refresh_from_db()
    assert period.pool_cost_micros == 0
    assert SpendShard.objects.get(budget=budget).allot_cost_micros is None


@pytest.mark.django_db
def test_change_page_lists_recent_periods(admin_client, project):
    budget = SpendBudget.objects.create(project=project, max_cost=Decimal("10"))
    make_ledger(budget, spent=[(700, 2_000_000), (300, 1_000_000)])
    make_ledger(
        budget, spent=[(5, 8_000_000)], period_start=current_start(budget) - timedelta(days=40)
    )
    html = admin_client.get(
        reverse("admin:budgets_spendbudget_change", args=[budget.pk])
    ).content.decode()
    assert 'class="spend-periods"' in html
    assert "$3.000000 · 1,000 tok" in html  # this period, summed over its two shards
    assert "$8.000000 · 5 tok" in html  # the one before
    assert "$7.000000 · 0 tok" in html  # this period's pool


def _budgets(n: int, offset: int = 0) -> None:
    for i in range(offset, offset + n):
        project = Project.objects.create(name=f"p-{i}", time_zone="Europe/Paris")
        key = api_key_create(name=f"k-{i}", project=project).api_key
        budget = SpendBudget.objects.create(
            project=project, scope=Scope.API_KEY, api_key=key, max_tokens=1_000 + i
        )
        make_ledger(budget, spent=[(10, 0), (20, 0)])


@pytest.mark.django_db
def test_changelist_queries_do_not_grow_with_budgets(admin_client, django_assert_max_num_queries):
    _budgets(2)
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(reverse(CHANGELIST)).status_code == 200
    _budgets(10, offset=2)
    with django_assert_max_num_queries(len(few)):
        response = admin_client.get(reverse(CHANGELIST))
    assert response.content.decode().count('of cap"') == 12


@pytest.mark.django_db
def test_ledger_lists_are_read_only(admin_client, project):
    budget = SpendBudget.objects.create(project=project, max_cost=Decimal("10"))
    make_ledger(budget, spent=[(1, 1)])
    hold = make_hold(SpendShard.objects.get(budget=budget))
    for model in ("spendperiod", "spendshard", "spendhold"):
        assert admin_client.get(reverse(f"admin:budgets_{model}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:budgets_{model}_add")).status_code == 403
    response = admin_client.post(reverse("admin:budgets_spendhold_delete", args=[hold.pk]))
    assert response.status_code == 403


@pytest.mark.django_db
def test_project_time_zone_is_shown_and_edited(admin_client):
    project = project_get_or_create(name="studio")
    assert "UTC" in admin_client.get(reverse("admin:tenancy_project_changelist")).content.decode()
    url = reverse("admin:tenancy_project_change", args=[project.pk])
    data = {
        "name": "studio",
        "description": "",
        "time_zone": "Mars/Olympus",
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "time_zone" in response.context["adminform"].form.errors
    response = admin_client.post(url, {**data, "time_zone": "America/New_York"})
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.time_zone == "America/New_York"
