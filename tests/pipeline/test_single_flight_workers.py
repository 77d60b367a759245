"""Single-flight across processes: with Redis as the shared cache, identical requests in
flight on different servers (as on two machines, same database) make one upstream call."""

import asyncio

import httpx
import pytest
import redis

from aura_orchestrator.simulator import Fault
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, body

REDIS_URL = "redis://127.0.0.1:6379/14"
REQUESTS = 12


@pytest.mark.django_db(transaction=True)
def test_identical_requests_on_two_servers_make_one_upstream_call(
    live_server_factory, api_key, provider, fake_upstream
):
    redis.Redis.from_url(REDIS_URL).flushdb()
    servers = [live_server_factory(1, REDIS_URL=REDIS_URL, AURA_INSTANCE=n) for n in "ab"]
    fake_upstream.enqueue(Fault(delay=1.0))
    payload = body(session_id="shared", enable_cache=True, prompt="Rate the pacing of scene 9")

    async def fire() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {api_key.raw_key}"}
        async with httpx.AsyncClient(headers=headers, timeout=60) as client:
            return await asyncio.gather(
                *[client.post(servers[i % 2].url + EXECUTE, json=payload) for i in range(REQUESTS)]
            )

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * REQUESTS, [r.text for r in responses]
    assert fake_upstream.request_count == 1
    assert sum(not r.json()["was_cached"] for r in responses) == 1
    assert OperationTelemetry.objects.filter(session_id="shared", cache_hit=True).count() == 11
