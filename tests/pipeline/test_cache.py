"""The response cache: hits, misses on any parameter, TTL, tenants, single-flight."""

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from aura_orchestrator.caching.models import CacheEntry
from aura_orchestrator.simulator import Fault
from budgets.models import LlmSession
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, body

pytestmark = [pytest.mark.django_db(transaction=True)]


def cached(**extra) -> dict:
    return body(enable_cache=True, **extra)


async def test_second_identical_request_is_a_free_cache_hit(asgi_client, provider, fake_upstream):
    first = (await asgi_client.post(EXECUTE, json=cached())).json()
    second = (await asgi_client.post(EXECUTE, json=cached())).json()
    assert first["was_cached"] is False and second["was_cached"] is True
    assert second["content"] == first["content"]
    assert fake_upstream.request_count == 1
    t = second["telemetry"]
    assert t["cache_hit"] is True and t["estimated_cost"] == "0.000000"
    assert t["provider_name"] == "primary" and t["retry_count"] == 0
    assert second["budget"]["total_cost_accrued"] == first["budget"]["total_cost_accrued"]
    assert second["budget"]["operation_count"] == 1, "a cache hit is not charged"
    entry = await CacheEntry.objects.aget()
    assert entry.hit_count == 1
    assert await OperationTelemetry.objects.filter(cache_hit=True).acount() == 1


async def test_whitespace_and_line_endings_do_not_change_the_key(
    asgi_client, provider, fake_upstream
):
    await asgi_client.post(EXECUTE, json=cached(prompt="Plan  a video\r\nabout tides "))
    hit = (await asgi_client.post(EXECUTE, json=cached(prompt="Plan a video\nabout tides"))).json()
    assert hit["was_cached"] is True


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "Plan a video about waves"},
        {"system_prompt": "Be brief"},
        {"operation_type": "scripting"},
        {"custom_preset": {"temperature": 0.2}},
        {"custom_preset": {"top_p": 0.5}},
        {"custom_preset": {"max_tokens": 100}},
        {"response_schema": {"type": "object"}},
        {"model": "primary/sim-gpt-2"},
    ],
)
async def test_any_parameter_change_is_a_miss(asgi_client, provider, fake_upstream, change):
    from aura_orchestrator.catalog.models import LlmModel

    await LlmModel.objects.acreate(
        provider=provider.provider, name="sim-gpt-2", input_price=1, output_price=2
    )
    await asgi_client.post(EXECUTE, json=cached())
    other = (await asgi_client.post(EXECUTE, json=cached(**change))).json()
    assert other["success"] is True, other
    assert other["was_cached"] is False
    assert fake_upstream.request_count == 2


async def test_disabled_cache_never_reads_or_writes(asgi_client, provider, fake_upstream):
    for _ in range(2):
        data = (await asgi_client.post(EXECUTE, json=body(enable_cache=False))).json()
        assert data["was_cached"] is False
    assert fake_upstream.request_count == 2
    assert await CacheEntry.objects.acount() == 0


async def test_preset_default_decides_when_the_request_is_silent(
    asgi_client, provider, fake_upstream
):
    """scene_analysis is cached by default; creative is not."""
    for op in ("scene_analysis", "scene_analysis", "creative", "creative"):
        await asgi_client.post(EXECUTE, json=body(operation_type=op))
    assert fake_upstream.request_count == 3


async def test_expired_entries_are_never_served(asgi_client, provider, fake_upstream):
    await asgi_client.post(EXECUTE, json=cached(cache_ttl_seconds=60))
    await CacheEntry.objects.aupdate(expires_at=timezone.now() - timedelta(seconds=1))
    again = (await asgi_client.post(EXECUTE, json=cached(cache_ttl_seconds=60))).json()
    assert again["was_cached"] is False
    assert fake_upstream.request_count == 2
    entry = await CacheEntry.objects.aget()
    assert entry.expires_at > timezone.now() + timedelta(seconds=50)


async def test_tenants_never_share_cache_entries_or_sessions(
    asgi_client, other_api_key, provider, fake_upstream
):
    await asgi_client.post(EXECUTE, json=cached())
    headers = {"Authorization": f"Bearer {other_api_key.raw_key}"}
    other = (await asgi_client.post(EXECUTE, json=cached(), headers=headers)).json()
    assert other["was_cached"] is False
    assert fake_upstream.request_count == 2
    assert other["budget"]["operation_count"] == 1, "same session id, separate ledger"
    assert await LlmSession.objects.filter(session_id="video-1").acount() == 2


async def test_failures_are_not_cached(asgi_client, provider, fake_upstream):
    fake_upstream.enqueue(Fault(status=400))
    failed = await asgi_client.post(EXECUTE, json=cached())
    assert failed.status_code == 502
    assert await CacheEntry.objects.acount() == 0


async def test_identical_concurrent_requests_make_one_upstream_call(
    asgi_client, provider, fake_upstream
):
    """Single-flight: the first request leads, the others wait and count as cache hits."""
    fake_upstream.enqueue(Fault(delay=0.5))
    responses = await asyncio.gather(*[asgi_client.post(EXECUTE, json=cached()) for _ in range(8)])
    bodies = [r.json() for r in responses]
    assert all(r.status_code == 200 for r in responses), bodies
    assert fake_upstream.request_count == 1
    assert sum(not b["was_cached"] for b in bodies) == 1
    assert len({b["content"] for b in bodies}) == 1
    assert await OperationTelemetry.objects.filter(cache_hit=True).acount() == 7
    ledger = await LlmSession.objects.aget(session_id="video-1")
    assert ledger.operation_count == 1
