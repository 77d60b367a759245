"""Provider faults: retries with backoff, Retry-After, fallback, final errors; budgets are
released and telemetry tells every attempt."""

import asyncio
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


async def _plan_a_video(**extra):
    """One operation through the pipeline itself, capped at $1 for the session."""
    from aura_orchestrator import pipeline

    return await pipeline.execute(
        pipeline.OperationRequest(
            session_id="video-1",
            operation_type=pipeline.OperationType.PLANNING,
            messages=(pipeline.ChatMessage(role="user", content="Plan a video"),),
            caps=pipeline.Caps.inline(max_cost_per_session=Decimal("1.00")),
            **extra,
        ),
        principal=pipeline.Principal(project_id=await _project_id()),
    )


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


async def test_a_finish_the_database_refuses_is_journaled_then_written_whole(
    api_key, provider, fake_upstream, monkeypatch
):
    """The finish (charge, cache entry, telemetry row) fails while the database is away:
    the answer still goes out, and the whole finish lands later from the journal: never
    a charge without its row (it used to settle alone and lose the row)."""
    import psycopg

    from aura_orchestrator.caching.models import CacheEntry
    from aura_orchestrator.pipeline import ending
    from aura_orchestrator.store import get_store

    store = get_store()
    failures = []

    async def database_away(self, finish):
        failures.append(finish.telemetry["operation_id"])
        raise psycopg.OperationalError("connection refused")

    def still_away(finish):
        failures.append(finish.telemetry["operation_id"])
        raise psycopg.OperationalError("connection refused")

    # Every try of the pipeline fails (the store's finish, then its idempotent retries):
    # it must journal. The journal's replay goes through its own path.
    monkeypatch.setattr(type(store), "finish", database_away)
    monkeypatch.setattr(ending, "finish_once", still_away)
    fake_upstream.enqueue(Fault(usage=(100, 50)))
    result = await _plan_a_video(enable_cache=True)
    assert result.success, result.error
    assert len(failures) == 3
    assert any("database is unavailable" in w for w in result.budget["warnings"])
    # Until it is replayed nothing is charged and nothing is written, the worst case stays
    # reserved: the cap still counts it.
    deadline = time.monotonic() + 10
    while not await OperationTelemetry.objects.filter(operation_id=result.operation_id).aexists():
        assert time.monotonic() < deadline, "the journaled finish was never replayed"
        await asyncio.sleep(0.1)
    ledger = await _ledger()
    assert (ledger.tokens_used, ledger.cost_accrued_micros) == (150, 200)
    assert (ledger.tokens_reserved, ledger.cost_reserved_micros) == (0, 0)
    assert ledger.operation_count == 1
    assert await BudgetReservation.objects.acount() == 0
    assert await OperationTelemetry.objects.acount() == 1
    assert await CacheEntry.objects.acount() == 1


async def test_a_journaled_finish_is_applied_once(api_key, provider, fake_upstream):
    """Replaying an entry whose commit had landed (the reply was lost) writes nothing."""
    from asgiref.sync import sync_to_async

    from aura_orchestrator.store import journal as journal_module
    from aura_orchestrator.store.base import Finish

    fake_upstream.enqueue(Fault(usage=(10, 5)))
    result = await _plan_a_video()
    assert result.success
    row = await OperationTelemetry.objects.aget(operation_id=result.operation_id)
    fields = {
        f.name if not f.is_relation else f.attname: getattr(
            row, f.attname if f.is_relation else f.name
        )
        for f in OperationTelemetry._meta.concrete_fields
        if not f.primary_key and f.name != "budget_overrun"
    }
    replayed = journal_module.decode(
        journal_module.encode(
            Finish(reservation=None, charge=None, session_pk=None, cache=None, telemetry=fields)
        )
    )
    assert replayed.telemetry == fields  # the journal's encoding loses nothing
    assert await sync_to_async(journal_module.apply_once)(replayed) is None
    assert await OperationTelemetry.objects.acount() == 1


async def test_a_finish_whose_commit_landed_but_whose_reply_was_lost_is_not_written_twice(
    api_key, provider, fake_upstream, monkeypatch
):
    """The connection dies after COMMIT: the retry finds the row and reads the ledger back
    (it used to fail on the duplicate row and journal a finish that had landed)."""
    import psycopg

    from aura_orchestrator.store import get_store

    store = get_store()
    real_finish = type(store).finish

    async def reply_lost(self, finish):
        await real_finish(self, finish)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(type(store), "finish", reply_lost)
    fake_upstream.enqueue(Fault(usage=(100, 50)))
    result = await _plan_a_video()
    assert result.success
    assert result.budget["warnings"] == []
    assert result.budget["total_tokens_used"] == 150
    ledger = await _ledger()
    assert (ledger.tokens_used, ledger.operation_count, ledger.tokens_reserved) == (150, 1, 0)
    assert await OperationTelemetry.objects.acount() == 1


async def test_a_reservation_whose_reply_was_lost_is_handed_back_with_the_503s_row(
    api_key, provider, fake_upstream, monkeypatch
):
    """The database goes away while the reserve's reply travels: the reservation committed
    but the operation never learned of it and answers 503. Its journaled row hands back
    whatever that operation holds (found by the chaos outage test: budget held until the
    expiry job)."""
    import psycopg

    from aura_orchestrator.store import get_store

    store = get_store()
    real_reserve = type(store).reserve

    async def reply_lost(self, **kwargs):
        await real_reserve(self, **kwargs)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(type(store), "reserve", reply_lost)
    result = await _plan_a_video()
    assert result.error is not None and result.error.code == "unavailable"
    assert fake_upstream.request_count == 0
    deadline = time.monotonic() + 10
    while await BudgetReservation.objects.aexists():
        assert time.monotonic() < deadline, "the reservation was never handed back"
        await asyncio.sleep(0.1)
    ledger = await _ledger()
    assert (ledger.tokens_reserved, ledger.cost_reserved_micros, ledger.tokens_used) == (0, 0, 0)
    row = await OperationTelemetry.objects.aget(operation_id=result.operation_id)
    assert row.error_code == "unavailable"
