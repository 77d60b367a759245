"""Single-flight across processes. With Redis as the shared cache (REDIS_URL), identical
requests in flight on different servers (as on two machines, same database) make one
upstream call. Without it (the embedded default), single-flight holds within each server
process: each makes the call once, and the stored entry serves the rest."""

import asyncio
import uuid

import httpx
import pytest
from django.conf import settings

from aura_orchestrator.simulator import Fault
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, body

REQUESTS = 12


@pytest.mark.django_db(transaction=True)
def test_identical_requests_on_two_servers_make_one_upstream_call_per_shared_cache(
    live_server_factory, api_key, provider, fake_upstream
):
    """On the suite's REDIS_URL: one upstream call in all, 11 cache hits. With REDIS_URL
    empty: one call per server (2), 10 cache hits; every request answered either way."""
    redis_url = settings.REDIS_URL or ""
    servers = [live_server_factory(1, REDIS_URL=redis_url, AURA_INSTANCE=n) for n in "ab"]
    # Each leader's call takes a second, so both servers' requests are all in flight
    # before any answer is stored (a second fault is left unused when Redis leads once).
    fake_upstream.enqueue(Fault(delay=1.0))
    fake_upstream.enqueue(Fault(delay=1.0))
    # A prompt of this run only: a shared Redis keeps entries of earlier runs.
    prompt = f"Rate the pacing of scene 9 ({uuid.uuid4().hex})"
    payload = body(session_id="shared", enable_cache=True, prompt=prompt)

    async def fire() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {api_key.raw_key}"}
        async with httpx.AsyncClient(headers=headers, timeout=60) as client:
            return await asyncio.gather(
                *[client.post(servers[i % 2].url + EXECUTE, json=payload) for i in range(REQUESTS)]
            )

    responses = asyncio.run(fire())
    calls = 1 if redis_url else len(servers)
    assert [r.status_code for r in responses] == [200] * REQUESTS, [r.text for r in responses]
    assert fake_upstream.request_count == calls
    assert sum(not r.json()["was_cached"] for r in responses) == calls
    hits = OperationTelemetry.objects.filter(session_id="shared", cache_hit=True).count()
    assert hits == REQUESTS - calls
