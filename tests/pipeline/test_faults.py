"""Provider faults: retries with backoff, Retry-After, fallback, final errors; budgets are
released and telemetry tells every attempt."""

import time
from decimal import Decimal

import pytest

from aura_orchestrator.simulator import Fault
from budgets.models import BudgetReservation, LlmSession
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, body

pytestmark = [pytest.mark.django_db(transaction=True)]

CAPPED = {"max_cost_per_session": "1.00"}


async def _project_id() -> int:
    from aura_orchestrator.tenancy.models import Project

    return (await Project.objects.aget(name="studio")).pk


async def _ledger(session_id="video-1") -> LlmSession:
    return await LlmSession.objects.aget(session_id=session_id)


async def test_429_with_retry_after_is_retried_after_the_wait(asgi_client, provider, fake_upstream):
    fake_upstream.enqueue(Fault(status=429, headers={"Retry-After": "1"}))
    started = time.monotonic()
    response = await asgi_client.post(EXECUTE, json=body())
    elapsed = time.monotonic() - started
    data = response.json()
    assert response.status_code == 200, data
    assert elapsed >= 1.0, "Retry-After: 1 must be honoured"
    assert data["telemetry"]["retry_count"] == 1
    assert fake_upstream.request_count == 2
    attempts = data["telemetry"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["ProviderRateLimited", "ok"]
    assert attempts[0]["status"] == 429


async def test_rate_limit_on_every_attempt_is_a_429_with_retry_after(
    asgi_client, provider, fake_upstream
):
    fake_upstream.enqueue(*[Fault(status=429, headers={"Retry-After": "0"})] * 3)
    response = await asgi_client.post(
        EXECUTE, json=body(custom_preset={"max_retries": 2}, budget_constraint=CAPPED)
    )
    data = response.json()
    assert response.status_code == 429, data
    assert data["error_code"] == "rate_limited"
    assert "Retry-After" in response.headers
    assert data["telemetry"]["retry_count"] == 2
    ledger = await _ledger()
    assert (ledger.tokens_reserved, ledger.cost_reserved_micros) == (0, 0)
    assert ledger.cost_accrued_micros == 0
    assert await BudgetReservation.objects.acount() == 0


async def test_server_errors_exhaust_retries_then_502(asgi_client, provider, fake_upstream):
    fake_upstream.enqueue(*[Fault(status=500)] * 2)
    response = await asgi_client.post(
        EXECUTE, json=body(custom_preset={"max_retries": 1}, budget_constraint=CAPPED)
    )
    data = response.json()
    assert response.status_code == 502, data
    assert data["error_code"] == "provider_error"
    assert "2 attempt(s) on primary failed" in data["error_message"]
    assert fake_upstream.request_count == 2
    row = await OperationTelemetry.objects.aget(operation_id=data["operation_id"])
    assert (row.success, row.retry_count, row.error_code) == (False, 1, "provider_error")
    assert len(row.attempts) == 2
    assert (await _ledger()).tokens_reserved == 0


async def test_timeout_is_a_504_and_releases_the_budget(asgi_client, provider, fake_upstream):
    fake_upstream.enqueue(Fault(delay=2.0))
    response = await asgi_client.post(
        EXECUTE,
        json=body(custom_preset={"timeout_seconds": 1, "max_retries": 0}, budget_constraint=CAPPED),
    )
    data = response.json()
    assert response.status_code == 504, data
    assert data["error_code"] == "timeout"
    assert data["telemetry"]["attempts"][0]["outcome"] == "ProviderTimeout"
    assert (await _ledger()).cost_reserved_micros == 0


@pytest.mark.parametrize("fault", [Fault(malformed=True), Fault(reset=True), Fault(status=503)])
async def test_retryable_faults_then_success(asgi_client, provider, fake_upstream, fault):
    fake_upstream.enqueue(fault)
    response = await asgi_client.post(EXECUTE, json=body(custom_preset={"max_retries": 1}))
    data = response.json()
    assert response.status_code == 200, data
    assert data["telemetry"]["retry_count"] == 1
    assert fake_upstream.request_count == 2


async def test_client_errors_are_not_retried_but_fall_back(
    asgi_client, provider, backup_provider, fake_upstream
):
    """A 400 from one provider is not retried there; the next provider is tried."""
    fake_upstream.enqueue(Fault(status=400))
    response = await asgi_client.post(EXECUTE, json=body(custom_preset={"max_retries": 3}))
    data = response.json()
    assert response.status_code == 200, data
    assert fake_upstream.request_count == 1
    assert backup_provider.request_count == 1
    assert data["telemetry"]["provider_name"] == "backup"
    assert [a["provider"] for a in data["telemetry"]["attempts"]] == ["primary", "backup"]
    assert data["telemetry"]["retry_count"] == 1


async def test_fallback_after_retries_and_the_request_can_name_the_chain(
    asgi_client, provider, backup_provider, fake_upstream
):
    fake_upstream.enqueue(*[Fault(status=500)] * 2)
    response = await asgi_client.post(
        EXECUTE,
        json=body(custom_preset={"max_retries": 1}, providers=["primary", "backup"]),
    )
    data = response.json()
    assert response.status_code == 200, data
    assert data["telemetry"]["provider_name"] == "backup"
    assert data["telemetry"]["retry_count"] == 2
    # Naming only the backup skips the primary altogether.
    response = await asgi_client.post(EXECUTE, json=body(session_id="b", providers=["backup"]))
    assert response.json()["telemetry"]["provider_name"] == "backup"
    assert fake_upstream.request_count == 2


async def test_whole_chain_failing_releases_and_records(
    asgi_client, provider, backup_provider, fake_upstream
):
    fake_upstream.enqueue(Fault(reset=True))
    backup_provider.enqueue(Fault(status=502))
    response = await asgi_client.post(
        EXECUTE, json=body(custom_preset={"max_retries": 0}, budget_constraint=CAPPED)
    )
    data = response.json()
    assert response.status_code == 502, data
    assert "primary, backup" in data["error_message"]
    ledger = await _ledger()
    assert (ledger.tokens_reserved, ledger.tokens_used, ledger.operation_count) == (0, 0, 0)
    assert await OperationTelemetry.objects.filter(success=False).acount() == 1


async def test_connection_refused_provider_falls_back(asgi_client, provider, backup_provider):
    from aura_orchestrator.catalog.models import Provider

    await Provider.objects.filter(name="primary").aupdate(base_url="http://127.0.0.1:9/v1")
    response = await asgi_client.post(EXECUTE, json=body(custom_preset={"max_retries": 0}))
    assert response.status_code == 200, response.json()
    assert response.json()["telemetry"]["provider_name"] == "backup"


async def test_a_failed_telemetry_write_still_charges_what_was_consumed(
    api_key, provider, fake_upstream, monkeypatch
):
    """Settlement, cache store and telemetry commit together; if that transaction fails,
    the settlement is retried alone, so a provider's work is never left unpaid."""
    from aura_orchestrator import pipeline
    from aura_orchestrator.store import get_store

    store = get_store()
    if type(store).__name__ == "PgStore":  # the async store's precompiled INSERT fails
        import psycopg

        from aura_orchestrator.store import pg

        DatabaseError = psycopg.Error
        monkeypatch.setattr(pg, "TELEMETRY_INSERT_SQL", "INSERT INTO no_such_table VALUES (1)")
    else:
        from django.db import DatabaseError

        from aura_orchestrator.store import orm

        def broken_insert(**fields):
            raise DatabaseError("disk full")

        monkeypatch.setattr(orm, "telemetry_record", broken_insert)
    fake_upstream.enqueue(Fault(usage=(100, 50)))
    with pytest.raises(DatabaseError):
        await pipeline.execute(
            pipeline.OperationRequest(
                session_id="video-1",
                operation_type=pipeline.OperationType.PLANNING,
                messages=(pipeline.ChatMessage(role="user", content="Plan a video"),),
                enable_cache=True,
                caps=pipeline.Caps.inline(max_cost_per_session=Decimal("1.00")),
            ),
            principal=pipeline.Principal(project_id=await _project_id()),
        )
    ledger = await _ledger()
    assert (ledger.tokens_used, ledger.cost_accrued_micros) == (150, 200)
    assert (ledger.tokens_reserved, ledger.cost_reserved_micros) == (0, 0)
    assert await BudgetReservation.objects.acount() == 0
    assert not await OperationTelemetry.objects.aexists()
    from aura_orchestrator.caching.models import CacheEntry

    assert not await CacheEntry.objects.aexists(), "the answer is not cached without its row"
