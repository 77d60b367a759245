"""GET /api/v1/usage: the spend budgets that apply to the caller's key (and an end user),
their current period summed over its shards, what remains and when it resets."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from aura_orchestrator.tenancy.services import api_key_create, project_get_or_create
from budgets import periods
from budgets.spend_models import Scope, SpendBudget, SpendShard

URL = "/api/v1/usage"
# Sunday 29 March 2026, 22:30 UTC: already Monday 30 March, 00:30 (CEST) in Paris, the
# night the clocks went forward; a UTC day, week or month would all begin elsewhere.
NOW = datetime(2026, 3, 29, 22, 30, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setattr(periods, "now", lambda: NOW)
    return NOW


@pytest.fixture
def paris(project):
    project.time_zone = "Europe/Paris"
    project.save()
    return project


def _budget(project, **fields) -> SpendBudget:
    fields.setdefault("scope", Scope.PROJECT)
    fields.setdefault("period", "month")
    return SpendBudget.objects.create(project=project, **fields)


def _start(budget: SpendBudget) -> datetime:
    return periods.window(budget.period, time_zone=budget.project.time_zone, now=NOW)[0]


def _shard(budget, shard, *, subject="", start=None, tokens=0, cost=0, t_res=0, c_res=0):
    return SpendShard.objects.create(
        budget=budget,
        subject=subject,
        period_start=start or _start(budget),
        shard=shard,
        tokens_used=tokens,
        cost_accrued_micros=cost,
        tokens_reserved=t_res,
        cost_reserved_micros=c_res,
    )


def _by_scope(body) -> dict:
    entries = {}
    for entry in body["budgets"]:
        assert entry["scope"] not in entries, body
        entries[entry["scope"]] = entry
    return entries


def test_project_and_key_budgets_summed_over_their_shards(api_client, api_key, paris, clock):
    key = api_key.api_key
    month = _budget(paris, max_cost=Decimal("5"), max_tokens=10_000)
    day = _budget(paris, scope=Scope.API_KEY, api_key=key, period="day", max_tokens=1_000)
    day.enforce_hard_limits = False
    day.save()
    _shard(month, 0, tokens=300, cost=1_250_000, t_res=50, c_res=250_000)
    _shard(month, 3, tokens=200, cost=500_000)
    # Last month's ledger is not this month's.
    _shard(month, 0, start=datetime(2026, 1, 31, 23, tzinfo=UTC), tokens=9_000, cost=4_000_000)
    _shard(day, 1, tokens=1_200)  # a soft budget overrun: nothing remains, not less

    response = api_client.get(URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["project"], body["api_key"], body["end_user"]) == ("studio", "test-service", None)
    assert [b["scope"] for b in body["budgets"]] == ["project:studio", "api_key:test-service"]
    entries = _by_scope(body)
    assert entries["project:studio"] == {
        "scope": "project:studio",
        "budget_id": month.pk,
        "period": "month",
        "period_start": "2026-02-28T23:00:00Z",
        "resets_at": "2026-03-31T22:00:00Z",
        "enforce_hard_limits": True,
        "max_tokens": 10_000,
        "max_cost": "5.000000",
        "tokens_used": 500,
        "cost_used": "1.750000",
        "tokens_reserved": 50,
        "cost_reserved": "0.250000",
        "remaining_tokens": 9_450,
        "remaining_cost": "3.000000",
        "provider": None,
        "model": None,
    }
    key_entry = entries["api_key:test-service"]
    assert key_entry["enforce_hard_limits"] is False
    assert (key_entry["tokens_used"], key_entry["remaining_tokens"]) == (1_200, 0)
    assert (key_entry["max_cost"], key_entry["remaining_cost"]) == (None, None)
    assert key_entry["cost_used"] == "0.000000"


def test_other_keys_projects_and_end_users_are_not_shown(api_client, api_key, project, clock):
    mine = _budget(project, max_tokens=100)
    other_key = api_key_create(name="sibling", project=project).api_key
    _budget(project, scope=Scope.API_KEY, api_key=other_key, max_tokens=5)
    _budget(project, scope=Scope.END_USER, end_user="u-1", max_tokens=5)
    _budget(project, scope=Scope.DEFAULT_END_USER, max_tokens=5)
    _budget(project, max_tokens=5, active=False)
    elsewhere = project_get_or_create(name="elsewhere")
    _budget(elsewhere, max_tokens=7)
    foreign_key = api_key_create(name="test-service", project=elsewhere).api_key
    _budget(elsewhere, scope=Scope.API_KEY, api_key=foreign_key, max_tokens=7)

    body = api_client.get(URL).json()

    assert [b["budget_id"] for b in body["budgets"]] == [mine.pk]


def test_an_end_users_own_budget_else_the_default_applied_to_them(
    api_client, api_key, project, provider, clock
):
    _budget(project, max_tokens=1_000)
    default = _budget(project, scope=Scope.DEFAULT_END_USER, period="day", max_tokens=100)
    narrowed = _budget(
        project,
        scope=Scope.DEFAULT_END_USER,
        period="day",
        max_cost=Decimal("0.5"),
        provider=provider.provider,
        model_name="sim-gpt",
    )
    own = _budget(project, scope=Scope.END_USER, end_user="alice", period="day", max_tokens=500)
    _shard(default, 0, subject="bob", tokens=40, t_res=5)
    _shard(default, 1, subject="carol", tokens=90)  # another end user's ledger
    _shard(narrowed, 0, subject="bob", cost=100_000)
    _shard(own, 0, tokens=123)

    bob = api_client.get(URL, {"end_user": "bob"}).json()
    assert bob["end_user"] == "bob"
    ids = [b["budget_id"] for b in bob["budgets"]]
    assert ids[0] == SpendBudget.objects.get(scope=Scope.PROJECT).pk
    assert sorted(ids[1:]) == sorted([default.pk, narrowed.pk])
    entries = {b["budget_id"]: b for b in bob["budgets"]}
    assert entries[default.pk]["scope"] == "end_user:bob"
    assert (entries[default.pk]["tokens_used"], entries[default.pk]["tokens_reserved"]) == (40, 5)
    assert entries[default.pk]["remaining_tokens"] == 55
    assert entries[narrowed.pk]["scope"] == "end_user:bob"
    assert (entries[narrowed.pk]["provider"], entries[narrowed.pk]["model"]) == (
        "primary",
        "sim-gpt",
    )
    assert (entries[narrowed.pk]["cost_used"], entries[narrowed.pk]["remaining_cost"]) == (
        "0.100000",
        "0.400000",
    )

    # Alice's own budget replaces the default of the same narrowing, not the narrowed one.
    alice = api_client.get(URL, {"end_user": "alice"}).json()
    entries = {b["budget_id"]: b for b in alice["budgets"]}
    assert default.pk not in entries
    assert entries[own.pk]["scope"] == "end_user:alice"
    assert entries[own.pk]["tokens_used"] == 123
    assert entries[narrowed.pk]["scope"] == "end_user:alice"
    assert entries[narrowed.pk]["cost_used"] == "0.000000"

    # A newcomer: the defaults, with nothing spent yet.
    dave = api_client.get(URL, {"end_user": "dave"}).json()
    entries = {b["budget_id"]: b for b in dave["budgets"]}
    assert entries[default.pk]["tokens_used"] == 0
    assert entries[default.pk]["remaining_tokens"] == 100


@pytest.mark.parametrize(
    ("period", "start", "resets"),
    [
        ("day", "2026-03-29T22:00:00Z", "2026-03-30T22:00:00Z"),
        ("week", "2026-03-29T22:00:00Z", "2026-04-05T22:00:00Z"),
        ("month", "2026-02-28T23:00:00Z", "2026-03-31T22:00:00Z"),
        ("none", "1970-01-01T00:00:00Z", None),
    ],
)
def test_periods_follow_the_projects_time_zone(api_client, paris, clock, period, start, resets):
    budget = _budget(paris, period=period, max_tokens=10)
    _shard(budget, 0, tokens=4)

    [entry] = api_client.get(URL).json()["budgets"]

    assert (entry["period"], entry["period_start"], entry["resets_at"]) == (period, start, resets)
    assert entry["tokens_used"] == 4


@pytest.mark.parametrize("value", ["", "   ", "a" * 257, "bad\x00user", "tab\there"])
def test_a_bad_end_user_is_refused_naming_the_field(api_client, project, value):
    response = api_client.get(URL, {"end_user": value})

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error_code"] == "invalid_request"
    assert "end_user" in body["details"]["fields"]
    assert body["details"]["param"] == "end_user"


def test_the_longest_end_user_is_accepted(api_client, project):
    response = api_client.get(URL, {"end_user": "u" * 200})
    assert response.status_code == 200
    assert response.json()["end_user"] == "u" * 200


def test_without_a_key_401(client, project):
    _budget(project, max_tokens=10)
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["error_code"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_schema_documents_usage(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/usage"]["get"]
    assert {"200", "400", "401"} <= set(operation["responses"])
    [parameter] = [p for p in operation["parameters"] if p["name"] == "end_user"]
    assert parameter["schema"]["maxLength"] == 256
    budget = schema["components"]["schemas"]["SpendBudgetUsage"]
    assert {"resets_at", "remaining_cost", "provider", "model"} <= set(budget["properties"])
