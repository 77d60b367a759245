"""The spend budgets' gauges at /metrics: read from the database at each scrape, with one
process (the default registry) and with several (the multiprocess registry of `serve`)."""

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aura_orchestrator.tenancy.services import project_get_or_create
from budgets import periods
from budgets.spend_models import Scope, SpendBudget, SpendShard


def _gauges(text: str) -> dict[tuple[str, str, str, str, str], float]:
    """(name, project, scope, period, unit) → value of every aura_budget_* sample."""
    found = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("aura_budget_") or family.type != "gauge":
            continue
        for sample in family.samples:
            labels = sample.labels
            key = (sample.name, labels["project"], labels["scope"], labels["period"])
            found[(*key, labels["unit"])] = sample.value
    return found


def _ledger(project) -> dict:
    """A project budget, a key-less default end-user budget with two end users' ledgers,
    and a budget of another project, all in their current periods."""
    now = periods.now()
    month = SpendBudget.objects.create(
        project=project, period="month", max_tokens=10_000, max_cost=Decimal("2.5")
    )
    start = periods.window("month", time_zone=project.time_zone, now=now)[0]
    for shard, (tokens, cost, t_res, c_res) in enumerate(
        [(300, 400_000, 20, 50_000), (7, 1, 0, 0)]
    ):
        SpendShard.objects.create(
            budget=month,
            period_start=start,
            shard=shard,
            tokens_used=tokens,
            cost_accrued_micros=cost,
            tokens_reserved=t_res,
            cost_reserved_micros=c_res,
        )
    # Last period's ledger is not exported.
    SpendShard.objects.create(
        budget=month,
        period_start=datetime(2001, 1, 1, tzinfo=UTC),
        shard=0,
        tokens_used=99_999,
    )
    default = SpendBudget.objects.create(
        project=project, scope=Scope.DEFAULT_END_USER, period="day", max_tokens=50
    )
    day = periods.window("day", time_zone=project.time_zone, now=now)[0]
    SpendShard.objects.create(
        budget=default, subject="ann", period_start=day, shard=0, tokens_used=11
    )
    SpendShard.objects.create(
        budget=default, subject="bo", period_start=day, shard=2, tokens_used=4
    )
    other = project_get_or_create(name="elsewhere")
    SpendBudget.objects.create(project=other, period="none", max_cost=Decimal("1"))
    return {"month": month, "default": default}


def _check(gauges: dict) -> None:
    assert gauges[("aura_budget_used", "studio", "project:studio", "month", "tokens")] == 307
    assert gauges[
        ("aura_budget_used", "studio", "project:studio", "month", "usd")
    ] == pytest.approx(0.400001)
    assert gauges[("aura_budget_reserved", "studio", "project:studio", "month", "tokens")] == 20
    assert gauges[
        ("aura_budget_reserved", "studio", "project:studio", "month", "usd")
    ] == pytest.approx(0.05)
    assert gauges[("aura_budget_cap", "studio", "project:studio", "month", "tokens")] == 10_000
    assert gauges[("aura_budget_cap", "studio", "project:studio", "month", "usd")] == 2.5
    # One series per end user of the default budget, named as refusals name them.
    assert gauges[("aura_budget_used", "studio", "end_user:ann", "day", "tokens")] == 11
    assert gauges[("aura_budget_used", "studio", "end_user:bo", "day", "tokens")] == 4
    assert gauges[("aura_budget_cap", "studio", "end_user:bo", "day", "tokens")] == 50
    assert ("aura_budget_cap", "studio", "end_user:bo", "day", "usd") not in gauges  # no cost cap
    # Another project's budget, nothing spent yet: its cap, zero used.
    assert gauges[("aura_budget_cap", "elsewhere", "project:elsewhere", "none", "usd")] == 1
    assert gauges[("aura_budget_used", "elsewhere", "project:elsewhere", "none", "usd")] == 0


def test_gauges_at_metrics_in_one_process(client, project):
    _ledger(project)
    response = client.get("/metrics")
    assert response.status_code == 200
    _check(_gauges(response.content.decode()))


def test_gauges_follow_the_ledger_at_each_scrape(client, project):
    budgets = _ledger(project)
    key = ("aura_budget_used", "studio", "project:studio", "month", "tokens")
    assert _gauges(client.get("/metrics").content.decode())[key] == 307
    SpendShard.objects.filter(budget=budgets["month"], shard=1).update(tokens_used=1_007)
    assert _gauges(client.get("/metrics").content.decode())[key] == 1_307
    budgets["month"].active = False
    budgets["month"].save()
    assert key not in _gauges(client.get("/metrics").content.decode())


@pytest.mark.django_db(transaction=True)
def test_gauges_with_several_worker_processes(live_server_factory):
    """`serve --workers 2` exposes the multiprocess registry: the gauges are there too,
    once (not once per worker)."""
    _ledger(project_get_or_create(name="studio"))
    server = live_server_factory(2)
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    _check(_gauges(text))
    assert text.count('aura_budget_cap{period="month",project="studio"') == 2  # tokens, usd
