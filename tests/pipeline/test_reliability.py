"""The promise under faults, in process: one deadline bounds each operation and its
reservation, a race is never a refusal, every outcome has its row, and provider text
PostgreSQL cannot store never breaks a finish. (tests/chaos runs the same against a
real two-worker server.)"""

import asyncio
import json
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from aura_orchestrator import errors, pipeline
from aura_orchestrator.deadline import Lifetimes, operation_seconds, reservation_seconds
from aura_orchestrator.pipeline import ending
from aura_orchestrator.providers.base import ChatMessage
from aura_orchestrator.simulator import Fault
from budgets.models import BudgetReservation, LlmSession
from budgets.services import budget_release_expired
from presets.operation_types import OperationType
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, body

LIFETIMES = Lifetimes(reservation_ttl=900, margin=30, max_retry_after=30)


# --- the deadline's arithmetic (pure) -------------------------------------------------------


def test_the_deadline_counts_every_attempt_backoff_route_and_the_schema_repair():
    one = operation_seconds(
        timeout_seconds=10, max_retries=2, routes=1, schema_repair=False, lifetimes=LIFETIMES
    )
    assert one == 3 * 10 + 2 * 30  # attempts x timeout + retries x the longest backoff
    two = operation_seconds(
        timeout_seconds=10, max_retries=2, routes=2, schema_repair=True, lifetimes=LIFETIMES
    )
    assert two == 4 * one


def test_the_deadline_is_capped_so_that_a_reservation_outlives_its_operation():
    capped = operation_seconds(
        timeout_seconds=600, max_retries=10, routes=3, schema_repair=True, lifetimes=LIFETIMES
    )
    assert capped == 900 - 30
    # The reservation: the time left plus the margin, never past the TTL.
    assert reservation_seconds(remaining=capped, lifetimes=LIFETIMES) == 900
    assert reservation_seconds(remaining=-5, lifetimes=LIFETIMES) == 30
    # A TTL shorter than the margin: the margin shrinks to half the TTL.
    short = Lifetimes(reservation_ttl=20, margin=30, max_retry_after=0)
    assert (
        operation_seconds(
            timeout_seconds=30, max_retries=0, routes=1, schema_repair=False, lifetimes=short
        )
        == 10
    )
    assert reservation_seconds(remaining=10, lifetimes=short) == 20


# --- against the fake upstream ----------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


def _short_lifetimes(settings, *, ttl: int, margin: float, max_retry_after: float = 1.0):
    settings.AURA = {
        **settings.AURA,
        "BUDGET_RESERVATION_TTL_SECONDS": ttl,
        "BUDGET_RESERVATION_MARGIN_SECONDS": margin,
        "MAX_RETRY_AFTER_SECONDS": max_retry_after,
    }


def _request(session_id: str, prompt: str = "Plan a video", **kwargs) -> pipeline.OperationRequest:
    return pipeline.OperationRequest(
        session_id=session_id,
        operation_type=OperationType.PLANNING,
        messages=(ChatMessage(role="user", content=prompt),),
        **kwargs,
    )


def _principal(api_key) -> pipeline.Principal:
    return pipeline.Principal(project_id=api_key.api_key.project_id, api_key_id=api_key.api_key.pk)


async def _ledger_matches_telemetry(session_id: str) -> LlmSession:
    ledger = await LlmSession.objects.aget(session_id=session_id)
    rows = [r async for r in OperationTelemetry.objects.filter(session_id=session_id)]
    assert ledger.tokens_used == sum(r.tokens_in + r.tokens_out for r in rows)
    assert Decimal(ledger.cost_accrued_micros) / 10**6 == sum(r.estimated_cost for r in rows)
    assert (ledger.tokens_reserved, ledger.cost_reserved_micros) == (0, 0)
    assert await BudgetReservation.objects.acount() == 0
    return ledger


@pytestmark_db
async def test_a_dripping_upstream_is_cut_at_the_timeout_not_after_the_whole_drip(
    asgi_client, provider, fake_upstream
):
    """Headers at once, then a byte every 0.2 s: each read is quick, so a per-read timeout
    never fires (it held a 2 s operation for more than 45 s). The whole call is bounded."""
    fake_upstream.enqueue(Fault(drip=0.2))
    started = time.monotonic()
    response = await asgi_client.post(
        EXECUTE,
        json=body(
            custom_preset={"timeout_seconds": 1, "max_retries": 0},
            budget_constraint={"max_tokens_per_session": 100_000},
        ),
    )
    elapsed = time.monotonic() - started
    data = response.json()
    assert response.status_code == 504, data
    assert data["error_code"] == "timeout"
    assert elapsed < 3, f"cut after {elapsed:.1f} s"
    row = await OperationTelemetry.objects.aget(operation_id=data["operation_id"])
    assert (row.success, row.error_code) == (False, "timeout")
    await _ledger_matches_telemetry("video-1")


@pytestmark_db
async def test_a_dripping_stream_ends_with_an_error_event_at_the_idle_timeout(
    api_key, provider, fake_upstream
):
    """After its first chunks the upstream drips: each chunk must come within the timeout
    (idle), all of them within the deadline; the client's stream ends with an error event."""
    from aura_orchestrator.gateway.render import sse_events

    fake_upstream.enqueue(Fault(drip=0.3, drip_after=400))  # the first chunks, then a drip
    started = time.monotonic()
    stream = await pipeline.execute_stream(
        _request(
            "drip-stream",
            prompt="[[content:" + "word " * 200 + "]]",
            overrides=pipeline.PresetOverrides(timeout_seconds=1, max_retries=0),
        ),
        principal=_principal(api_key),
    )
    assert stream.error is None
    events = [part async for part in sse_events(stream, include_usage=True)]
    elapsed = time.monotonic() - started
    last = json.loads(events[-1].decode().removeprefix("data: "))
    assert last["error"]["code"] == "timeout", last
    assert elapsed < 4, elapsed
    row = await OperationTelemetry.objects.aget(session_id="drip-stream")
    assert (row.success, row.error_code, row.streamed) == (False, "timeout", True)
    assert row.tokens_in > 0  # the prompt the provider read is charged
    await _ledger_matches_telemetry("drip-stream")


@pytestmark_db
async def test_the_reservation_lives_until_the_deadline_plus_the_margin(
    api_key, provider, fake_upstream, settings
):
    _short_lifetimes(settings, ttl=20, margin=5)
    fake_upstream.enqueue(Fault(delay=1.0))
    task = asyncio.ensure_future(
        pipeline.execute(
            _request(
                "lifetime", overrides=pipeline.PresetOverrides(timeout_seconds=2, max_retries=1)
            ),
            principal=_principal(api_key),
        )
    )
    for _ in range(100):
        held = await BudgetReservation.objects.afirst()
        if held is not None:
            break
        await asyncio.sleep(0.02)
    assert held is not None
    lifetime = (held.expires_at - held.created_at).total_seconds()
    # 2 attempts x 2 s + 1 retry x the longest backoff (8 s): 12 s, plus the 5 s margin.
    assert 16.5 <= lifetime <= 17.1, lifetime
    assert (await task).success


@pytestmark_db
async def test_the_expiry_job_never_frees_a_running_operations_budget(
    api_key, provider, fake_upstream, settings
):
    """Defect 1 of the reliability issue: a 50-token hard cap ended at 60 used. Op 1 holds
    its worst case past the reservation TTL; the expiry job runs all along; op 2 comes
    after the TTL. With the deadline enforced, op 1 is cut before its reservation can
    expire, so the cap holds, whatever the timings."""
    _short_lifetimes(settings, ttl=3, margin=1)
    caps = pipeline.Caps.inline(max_tokens_per_session=50)
    overrides = pipeline.PresetOverrides(max_tokens=20, timeout_seconds=30, max_retries=0)
    fake_upstream.enqueue(Fault(delay=5.0, usage=(10, 20)), Fault(usage=(10, 20)))
    stop = asyncio.Event()

    async def expiry_job() -> None:
        while not stop.is_set():
            await sync_to_async(budget_release_expired)()
            await asyncio.sleep(0.2)

    job = asyncio.ensure_future(expiry_job())
    first = asyncio.ensure_future(
        pipeline.execute(
            _request("capped", caps=caps, overrides=overrides), principal=_principal(api_key)
        )
    )
    await asyncio.sleep(3.5)  # past the old fixed TTL
    second = await pipeline.execute(
        _request("capped", caps=caps, overrides=overrides), principal=_principal(api_key)
    )
    first = await first
    stop.set()
    await job
    assert first.error is not None and first.error.code == "timeout"
    assert second.success
    ledger = await _ledger_matches_telemetry("capped")
    assert ledger.tokens_used <= 50
    assert not await OperationTelemetry.objects.filter(budget_overrun=True).aexists()


@pytestmark_db
@pytest.mark.parametrize("caps", ["none", "inline", "named"])
async def test_concurrent_first_requests_of_a_new_session_all_reserve(
    api_key, provider, fake_upstream, caps
):
    """Defect 3: the first requests of a new session raced to create it, and the losers
    were refused ("the session's caps changed during the request") with budget to spare."""
    from budgets.models import BudgetConstraint

    kwargs: dict = {}
    if caps == "inline":
        kwargs["caps"] = pipeline.Caps.inline(max_tokens_per_session=10**9)
    elif caps == "named":
        await BudgetConstraint.objects.acreate(name="roomy", max_tokens_per_session=10**9)
        kwargs["budget_name"] = "roomy"
    results = await asyncio.gather(
        *(
            pipeline.execute(_request(f"new-{caps}", **kwargs), principal=_principal(api_key))
            for _ in range(30)
        )
    )
    refused = [r.error.message for r in results if r.error is not None]
    assert refused == []
    ledger = await _ledger_matches_telemetry(f"new-{caps}")
    assert ledger.operation_count == 30


@pytestmark_db
async def test_a_cancelled_execute_writes_its_row_and_hands_the_budget_back(
    api_key, provider, fake_upstream
):
    """Defect 7: a client gone mid-call left no row."""
    fake_upstream.enqueue(Fault(delay=3.0))
    task = asyncio.ensure_future(
        pipeline.execute(
            _request("gone", caps=pipeline.Caps.inline(max_tokens_per_session=10**6)),
            principal=_principal(api_key),
        )
    )
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await OperationTelemetry.objects.aget(session_id="gone")
    assert (row.success, row.error_code) == (False, "client_disconnected")
    await _ledger_matches_telemetry("gone")


@pytestmark_db
@pytest.mark.parametrize("enable_cache", [True, False])
async def test_a_provider_answer_with_nul_reaches_the_client_intact_and_is_recorded(
    api_key, provider, fake_upstream, enable_cache
):
    """Defect 4, provider side: PostgreSQL text cannot hold U+0000. The client gets the
    answer as sent; the row is written; such an answer is simply not cached."""
    from aura_orchestrator.caching.models import CacheEntry

    fake_upstream.enqueue(Fault(content="a\x00b", usage=(5, 5)))
    result = await pipeline.execute(
        _request(
            "nul",
            enable_cache=enable_cache,
            caps=pipeline.Caps.inline(max_tokens_per_session=10**6),
        ),
        principal=_principal(api_key),
    )
    assert result.success, result.error
    assert result.content == "a\x00b"
    assert await OperationTelemetry.objects.filter(session_id="nul").acount() == 1
    assert not await CacheEntry.objects.aexists()
    await _ledger_matches_telemetry("nul")


@pytestmark_db
async def test_a_provider_error_message_with_nul_is_recorded_escaped(
    api_key, provider, fake_upstream
):
    fake_upstream.enqueue(Fault(status=400, body='{"error": {"message": "bad\\u0000input"}}'))
    result = await pipeline.execute(
        _request("nul-error", caps=pipeline.Caps.inline(max_tokens_per_session=10**6)),
        principal=_principal(api_key),
    )
    assert result.error is not None and result.error.code == "provider_error"
    row = await OperationTelemetry.objects.aget(session_id="nul-error")
    assert "\x00" not in row.error_message and "\x00" not in json.dumps(row.attempts)
    await _ledger_matches_telemetry("nul-error")


@pytestmark_db
async def test_a_stream_whose_finish_cannot_be_written_ends_with_an_error_event(
    asgi_client, provider, fake_upstream, monkeypatch
):
    """The database and the journal both refuse: the client is told, not cut off."""
    import psycopg

    from aura_orchestrator.store import get_store
    from aura_orchestrator.store.journal import journal

    async def database_away(self, finish):
        raise psycopg.OperationalError("connection refused")

    async def disk_full(finish):
        raise OSError("No space left on device")

    def still_away(finish):
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(type(get_store()), "finish", database_away)
    monkeypatch.setattr(ending, "finish_once", still_away)
    monkeypatch.setattr(journal, "append", disk_full)
    response = await asgi_client.post(
        "/v1/chat/completions",
        json={"model": "sim-gpt", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Aura-Session-Id": "lost"},
    )
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events and events[-1] != "[DONE]"
    assert "error" in json.loads(events[-1])


def test_errors_table_has_the_internal_error():
    assert (errors.InternalError.code, errors.InternalError.status) == ("internal_error", 500)
