"""Rate limits through a real `manage.py serve` (two workers on PostgreSQL with the Redis
windows, one on SQLite with the database's): exact under a burst, calls in flight
counted at the upstream, the openai SDK backing off by itself, a key held to one model."""

import asyncio
import time
from decimal import Decimal

import httpx
import openai
import pytest
from django.db import connection

from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.simulator import Fault
from budgets.limit_models import RateLimit
from telemetry.models import OperationTelemetry

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"


def _workers() -> int:
    return 1 if connection.vendor == "sqlite" else 2


def _limit(project, **fields) -> RateLimit:
    limit = RateLimit(project=project, **fields)
    limit.full_clean()
    limit.save()
    return limit


def _chat(n: int, model: str = "sim-gpt") -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": f"Scene {n}: what happens?"}],
        "max_tokens": 20,
    }


async def _burst(url: str, key: str, bodies: list[dict]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as c:
        return await asyncio.gather(*[c.post(CHAT, json=b) for b in bodies])


def test_sixty_a_minute_admits_exactly_sixty_of_two_hundred_sent_at_once(
    live_server_factory, project, api_key, provider, fake_upstream
):
    server = live_server_factory(_workers())
    _limit(project, scope="api_key", api_key=api_key.api_key, requests_per_minute=60)
    started = time.monotonic()
    answers = asyncio.run(_burst(server.url, api_key.raw_key, [_chat(n) for n in range(200)]))
    took = time.monotonic() - started
    statuses = [a.status_code for a in answers]
    assert sorted(set(statuses)) == [200, 429]
    assert statuses.count(200) == 60
    assert fake_upstream.request_count == 60
    for refused in (a for a in answers if a.status_code == 429):
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["x-ratelimit-limit-requests"] == "60"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert 60 - took - 1 <= int(refused.headers["retry-after"]) <= 60
    assert OperationTelemetry.objects.count() == 200  # every answer has its row


def test_five_in_flight_never_has_more_than_five_at_the_upstream(
    live_server_factory, project, api_key, provider, fake_upstream
):
    server = live_server_factory(_workers())
    _limit(project, max_in_flight=5)
    fake_upstream.enqueue(*[Fault(delay=0.3)] * 50)
    answers = asyncio.run(_burst(server.url, api_key.raw_key, [_chat(n) for n in range(50)]))
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 5 and statuses.count(429) == 45
    assert fake_upstream.peak_in_flight == 5
    # every end frees its place: afterwards five fit again
    fake_upstream.reset()
    again = asyncio.run(_burst(server.url, api_key.raw_key, [_chat(n) for n in range(5)]))
    assert [a.status_code for a in again] == [200] * 5


def test_tokens_per_minute_admit_what_fits_and_count_what_was_used(
    live_server_factory, project, api_key, provider, fake_upstream
):
    server = live_server_factory(_workers())
    _limit(project, scope="api_key", api_key=api_key.api_key, tokens_per_minute=450)
    # Slow answers: the first two are still in flight while the others are admitted.
    fake_upstream.enqueue(*[Fault(delay=0.5, usage=(30, 2))] * 20)
    url, key = server.url, api_key.raw_key
    bodies = [_chat(n) | {"max_tokens": 150} for n in range(4)]
    first = asyncio.run(_burst(url, key, bodies))
    # worst cases of 160 to 175 tokens: two fit in 450 at once, not three
    assert sorted(a.status_code for a in first) == [200, 200, 429, 429]
    time.sleep(2)  # the two admitted ones are corrected to the 32 tokens they used (ends run
    # beside the answers: a loaded machine may take a moment)
    second = asyncio.run(_burst(url, key, bodies[:2]))
    assert [a.status_code for a in second] == [200, 200]


def test_the_openai_sdk_waits_on_our_429_and_its_retry_succeeds(
    live_server_factory, project, api_key, provider, fake_upstream
):
    server = live_server_factory(_workers())
    _limit(project, scope="api_key", api_key=api_key.api_key, max_in_flight=1)
    fake_upstream.enqueue(*[Fault(delay=0.5)] * 4)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key.raw_key, max_retries=2)

    def call(n: int):
        return client.chat.completions.with_raw_response.create(**_chat(n))

    async def both():
        return await asyncio.gather(*[asyncio.to_thread(call, n) for n in range(2)])

    started = time.monotonic()
    raws = asyncio.run(both())
    assert [r.http_response.status_code for r in raws] == [200, 200]
    assert all(r.parse().choices[0].message.content for r in raws)
    assert time.monotonic() - started >= 0.9  # one of them waited for the other
    refused = OperationTelemetry.objects.filter(error_code="rate_limited").count()
    assert refused >= 1  # the SDK met a 429 and retried by itself
    assert fake_upstream.request_count == 2


def test_a_key_held_to_one_model_is_refused_another_and_lists_only_its_own(
    live_server_factory, project, api_key, provider, fake_upstream
):
    server = live_server_factory(_workers())
    provider_configure(
        name="primary",
        kind="openai",
        base_url=fake_upstream.openai_base_url,
        api_key_env="TEST_PRIMARY_API_KEY",
        model="sim-mini",
        input_price=Decimal("0.1"),
        output_price=Decimal("0.2"),
    )
    _limit(project, scope="api_key", api_key=api_key.api_key, allowed_models="sim-mini")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key.raw_key, max_retries=0)
    assert {m.id for m in client.models.list()} == {"sim-mini", "primary/sim-mini"}
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(**_chat(1, "sim-gpt"))
    assert refused.value.status_code == 403
    assert refused.value.body["code"] == "model_not_allowed"
    answer = client.chat.completions.create(**_chat(2, "sim-mini"))
    assert answer.choices[0].message.content
    assert [r["model"] for r in fake_upstream.requests] == ["sim-mini"]


def _one_in_flight_frees_its_place(server, api_key) -> int:
    """Status of a call made once the place should be free again (retried a few times
    within two seconds: the end runs beside the answer)."""
    headers = {"Authorization": f"Bearer {api_key.raw_key}"}
    status = 0
    for _ in range(20):
        status = httpx.post(f"{server.url}{CHAT}", json=_chat(99), headers=headers).status_code
        if status != 429:
            return status
        time.sleep(0.1)
    return status


def test_a_failed_call_frees_its_place_in_flight(
    live_server_factory, project, api_key, provider, fake_upstream
):
    server = live_server_factory(_workers())
    _limit(project, scope="api_key", api_key=api_key.api_key, max_in_flight=1)
    fake_upstream.enqueue(Fault(status=400))  # rejected by the provider: no retry
    headers = {"Authorization": f"Bearer {api_key.raw_key}"}
    failed = httpx.post(f"{server.url}{CHAT}", json=_chat(1), headers=headers)
    assert failed.status_code == 502
    assert _one_in_flight_frees_its_place(server, api_key) == 200


def test_a_client_gone_mid_stream_frees_its_place_in_flight(
    live_server_factory, project, api_key, provider, fake_upstream
):
    server = live_server_factory(_workers())
    _limit(project, scope="api_key", api_key=api_key.api_key, max_in_flight=1)
    fake_upstream.stream_chunk_delay = 0.1
    try:
        words = " ".join(f"word{i}" for i in range(60))
        body = _chat(2) | {"stream": True}
        body["messages"][0]["content"] = f"[[content:{words}]]"
        headers = {"Authorization": f"Bearer {api_key.raw_key}"}
        with (
            httpx.Client(timeout=30) as http,
            http.stream("POST", f"{server.url}{CHAT}", json=body, headers=headers) as r,
        ):
            assert r.status_code == 200
            # while it streams, its place is taken
            other = httpx.post(f"{server.url}{CHAT}", json=_chat(3), headers=headers)
            assert other.status_code == 429
            for line in r.iter_lines():
                if '"content":"word2' in line:
                    break  # the client goes away mid-stream
    finally:
        fake_upstream.stream_chunk_delay = 0.0
    assert _one_in_flight_frees_its_place(server, api_key) == 200
