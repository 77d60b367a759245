"""Fixtures of the foundation tests: a logged-in operator and a few rows of every model."""

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from aura_orchestrator.caching.models import CacheEntry
from aura_orchestrator.catalog.services import ProviderConfigured, provider_configure
from aura_orchestrator.tenancy.services import CreatedKey
from budgets.models import BudgetConstraint, BudgetReservation, LlmSession, RateLimit
from budgets.spend_models import (
    AlertDelivery,
    AlertEndpoint,
    BudgetAlert,
    SpendBudget,
    SpendShard,
)
from presets.models import OperationPreset
from presets.operation_types import OperationType
from presets.services import seed_values
from telemetry.models import OperationTelemetry, TelemetryRollup
from tests.budgets.spend_rows import make_hold, make_ledger

OPERATOR_PASSWORD = "a-long-operator-password"


@pytest.fixture(autouse=True)
def _seed_presets(request):
    """The 13 preset rows come from a data migration, and a transactional test's flush
    (here or anywhere earlier in the run; --reuse-db keeps the result) deletes them. Put
    back the missing ones so every test starts from a freshly migrated database."""
    marker = request.node.get_closest_marker("django_db")
    names = request.fixturenames
    if marker is None and "db" not in names and "transactional_db" not in names:
        yield
        return
    transactional = "transactional_db" in names or bool(
        marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    present = set(OperationPreset.objects.values_list("operation_type", flat=True))
    OperationPreset.objects.bulk_create(
        OperationPreset(operation_type=op, **seed_values(op))
        for op in OperationType
        if op.value not in present
    )
    yield


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(
        username="operator", email="operator@example.com", password=OPERATOR_PASSWORD
    )


@pytest.fixture
def admin_client(client, operator):
    """A Django test client logged in through the admin's login form."""
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "operator", "password": OPERATOR_PASSWORD, "next": "/admin/"},
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    return client


@dataclass
class Rows:
    api_key: CreatedKey
    configured: ProviderConfigured
    constraint: BudgetConstraint
    session: LlmSession
    reservation: BudgetReservation
    telemetry: OperationTelemetry
    cache_entry: CacheEntry


def make_session(project, session_id: str, **fields) -> LlmSession:
    defaults = {
        "max_tokens_per_session": 10_000,
        "max_cost_per_session_micros": 2_000_000,
        "tokens_used": 2_500,
        "cost_accrued_micros": 1_234_567,
        "operation_count": 3,
    }
    return LlmSession.objects.create(
        project=project, session_id=session_id, **{**defaults, **fields}
    )


def make_telemetry(project, session_id: str, **fields) -> OperationTelemetry:
    now = timezone.now()
    defaults = {
        "project": project,
        "session_id": session_id,
        "operation_type": "planning",
        "provider_name": "primary",
        "model_name": "sim-gpt",
        "tokens_in": 120,
        "tokens_out": 480,
        "retry_count": 1,
        "latency_ms": 850,
        "success": True,
        "estimated_cost": Decimal("0.001080"),
        "started_at": now - timedelta(seconds=1),
        "completed_at": now,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 2000,
        "attempts": [
            {
                "provider": "primary",
                "model": "sim-gpt",
                "latency_ms": 12,
                "outcome": "RateLimitError",
                "status": 429,
                "error": "slow down",
            },
            {
                "provider": "primary",
                "model": "sim-gpt",
                "latency_ms": 830,
                "outcome": "ok",
                "status": None,
                "error": None,
            },
        ],
    }
    return OperationTelemetry.objects.create(**{**defaults, **fields})


def make_cache_entry(project, key_hash: str, *, expired: bool = False) -> CacheEntry:
    now = timezone.now()
    return CacheEntry.objects.create(
        project=project,
        key_hash=key_hash,
        operation_type="scene_analysis",
        provider_name="primary",
        model_name="sim-gpt",
        content='{"importance": "high"}',
        tokens_in=10,
        tokens_out=20,
        expires_at=now - timedelta(minutes=1) if expired else now + timedelta(hours=1),
        hit_count=4,
    )


def _alert_rows(project) -> None:
    """An endpoint, a budget's alert and its delivery (budgets/alerts.py writes these)."""
    endpoint = AlertEndpoint.objects.create(
        project=project, url="http://127.0.0.1:9/hook", secret="s" * 32
    )
    budget = SpendBudget.objects.create(project=project, max_cost=Decimal("10"))
    alert = BudgetAlert.objects.create(
        budget=budget,
        period_start=timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0),
        threshold=50,
        unit="cost",
        used=5_000_000,
        cap=10_000_000,
    )
    AlertDelivery.objects.create(
        alert=alert, endpoint=endpoint, channel="webhook", target=endpoint.url, payload={}
    )


@pytest.fixture
def rows(db, api_key, monkeypatch) -> Rows:
    """One or more rows of every model the admin shows."""
    project = api_key.api_key.project
    configured = provider_configure(
        name="primary",
        kind="openai",
        base_url="http://127.0.0.1:9/v1",
        api_key_env="TEST_PRIMARY_API_KEY",
        model="sim-gpt",
        input_price=Decimal("1"),
        output_price=Decimal("2"),
        make_default=True,
    )
    constraint = BudgetConstraint.objects.create(
        name="video-standard",
        max_tokens_per_operation=5000,
        max_cost_per_operation=Decimal("0.50"),
        max_tokens_per_session=50_000,
        max_cost_per_session=Decimal("5.00"),
    )
    session = make_session(project, "video-123", constraint=constraint, tokens_reserved=600)
    make_session(
        project, "video-uncapped", max_tokens_per_session=None, max_cost_per_session_micros=None
    )
    reservation = BudgetReservation.objects.create(
        session=session,
        operation_id=uuid.uuid4(),
        tokens=600,
        cost_micros=1_200,
        expires_at=timezone.now() + timedelta(minutes=15),
    )
    LlmSession.objects.filter(pk=session.pk).update(cost_reserved_micros=1_200)
    telemetry = make_telemetry(project, "video-123", api_key=api_key.api_key)
    make_telemetry(project, "video-123", success=False, error_code="budget_exceeded", attempts=[])
    TelemetryRollup.objects.create(
        bucket_start=timezone.now().replace(minute=0, second=0, microsecond=0),
        project=project,
        provider_name="primary",
        model_name="sim-gpt",
        operation_type="planning",
        operations=2,
        latency_sum_ms=250,
    )
    cache_entry = make_cache_entry(project, "a" * 64)
    make_cache_entry(project, "b" * 64, expired=True)
    # Spend budgets (issue 15): a monthly budget with its current period's ledger, a hold.
    budget = SpendBudget.objects.create(project=project, max_cost=Decimal("10"))
    make_ledger(budget, spent=[(1_000, 2_000_000)], reserved=(100, 1_000))
    make_hold(SpendShard.objects.get(budget=budget), tokens=100, cost_micros=1_000)
    _alert_rows(project)
    RateLimit.objects.create(
        project=project, scope="api_key", api_key=api_key.api_key, requests_per_minute=60
    )
    return Rows(
        api_key=api_key,
        configured=configured,
        constraint=constraint,
        session=session,
        reservation=reservation,
        telemetry=telemetry,
        cache_entry=cache_entry,
    )
