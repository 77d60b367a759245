"""The fake upstream over a real loopback socket, driven by the real adapters."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import jsonschema
import pytest

from aura_orchestrator.providers import (
    KINDS,
    ChatMessage,
    CompletionRequest,
    ProviderBadResponse,
    ProviderConfig,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
    Usage,
    close_transports,
    get_adapter,
    get_transport,
    kind_spec,
)
from aura_orchestrator.providers.openai_compat import OpenAICompatAdapter
from aura_orchestrator.simulator import SHAPES, FakeUpstream, Fault, example_for_schema

KEY = "sk-sim-key"


@pytest.fixture(scope="module")
def sim_server() -> Iterator[FakeUpstream]:
    """A server of this module's own, so these tests need nothing from tests/conftest.py."""
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def sim(sim_server: FakeUpstream) -> FakeUpstream:
    sim_server.reset()
    return sim_server


def openai_config(upstream: FakeUpstream) -> ProviderConfig:
    return ProviderConfig("primary", "openai", upstream.openai_base_url, KEY)


def anthropic_config(upstream: FakeUpstream) -> ProviderConfig:
    return ProviderConfig("claude", "anthropic", upstream.anthropic_base_url, KEY)


def ask(prompt: str = "Plan a video about volcanoes", **params: object) -> CompletionRequest:
    messages = (ChatMessage("system", "You plan videos."), ChatMessage("user", prompt))
    return CompletionRequest(model="sim-gpt", messages=messages, **params)


async def complete(config: ProviderConfig, request: CompletionRequest):
    try:
        return await get_adapter(config.kind).complete(get_transport(), config, request)
    finally:
        await close_transports()


async def stream(config: ProviderConfig, request: CompletionRequest):
    try:
        return [c async for c in get_adapter(config.kind).stream(get_transport(), config, request)]
    finally:
        await close_transports()


@pytest.mark.asyncio
async def test_openai_success_is_deterministic_and_reports_usage(sim):
    request = ask(max_tokens=100)
    first = await complete(openai_config(sim), request)
    second = await complete(openai_config(sim), request)

    assert first.content == "Simulated answer to: Plan a video about volcanoes"
    assert (second.content, second.usage) == (first.content, first.usage)
    assert first.model == "sim-gpt"
    assert first.finish_reason == "stop"
    # (16 + 28) characters / 4 in, len(content) // 4 + 1 out
    assert first.usage == Usage(tokens_in=11, tokens_out=13)
    assert first.raw["id"] == "chatcmpl-sim-1"


@pytest.mark.asyncio
async def test_requests_and_headers_are_captured_and_counted(sim):
    await complete(openai_config(sim), ask(temperature=0.3))
    await complete(anthropic_config(sim), ask())
    async with httpx.AsyncClient() as client:
        await OpenAICompatAdapter().list_models(client, openai_config(sim))

    assert sim.request_count == 2  # completions only
    assert sim.path_counts == {"/v1/chat/completions": 1, "/v1/messages": 1, "/v1/models": 1}
    assert sim.requests[0]["temperature"] == 0.3
    assert sim.request_headers[0]["authorization"] == f"Bearer {KEY}"
    assert sim.request_headers[1]["x-api-key"] == KEY


@pytest.mark.asyncio
async def test_max_tokens_caps_completion_tokens_and_reports_length(sim):
    result = await complete(openai_config(sim), ask(max_tokens=3))
    assert result.usage.tokens_out == 3
    assert result.finish_reason == "length"


@pytest.mark.asyncio
async def test_markers_set_content_and_tokens_out(sim):
    prompt = '[[tokens_out:777]] [[content:{"items": [[1, 2]]}]]'
    result = await complete(openai_config(sim), ask(prompt, max_tokens=1000))
    assert result.content == '{"items": [[1, 2]]}'
    assert result.usage.tokens_out == 777


@pytest.mark.asyncio
async def test_json_schema_response_satisfies_the_schema(sim):
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "scenes": {"type": "array", "items": {"$ref": "#/$defs/scene"}, "minItems": 1},
            "meta": {
                "type": "object",
                "properties": {"draft": {"type": "boolean"}, "count": {"type": "integer"}},
                "required": ["draft", "count"],
            },
            "optional": {"type": "string"},
        },
        "required": ["title", "scenes", "meta"],
        "$defs": {
            "scene": {
                "type": "object",
                "properties": {"seconds": {"type": "number", "minimum": 5}},
                "required": ["seconds"],
            }
        },
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "plan", "schema": schema}}
    result = await complete(openai_config(sim), ask(response_format=response_format))

    content = json.loads(result.content)
    jsonschema.validate(content, schema)
    assert content == {
        "title": "x",
        "scenes": [{"seconds": 5}],
        "meta": {"draft": True, "count": 1},
    }


@pytest.mark.asyncio
async def test_json_object_response_is_a_json_object(sim):
    result = await complete(openai_config(sim), ask(response_format={"type": "json_object"}))
    assert isinstance(json.loads(result.content), dict)


def test_example_for_schema_handles_enums_unions_and_bounds():
    assert example_for_schema({"enum": ["b", "a"]}) == "b"
    assert example_for_schema({"anyOf": [{"type": "integer"}, {"type": "string"}]}) == 1
    assert example_for_schema({"type": ["null", "string"], "minLength": 3}) == "xxx"
    assert example_for_schema({"type": "integer", "maximum": 0}) == 0


@pytest.mark.asyncio
async def test_openai_stream_concatenates_to_the_completion_and_ends_with_usage(sim):
    request = ask(max_tokens=100)
    chunks = await stream(openai_config(sim), request)
    full = await complete(openai_config(sim), request)

    assert len(chunks) > 3
    assert "".join(c.delta for c in chunks) == full.content
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    assert chunks[-1].usage == full.usage
    assert sim.requests[0]["stream_options"] == {"include_usage": True}


@pytest.mark.asyncio
async def test_openai_stream_has_no_usage_chunk_unless_asked(sim):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx.AsyncClient() as client:
        response = await client.post(sim.openai_base_url + "/chat/completions", json=body)

    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert all("usage" not in json.loads(event) for event in events[:-1])


@pytest.mark.asyncio
async def test_anthropic_path_complete_and_stream(sim):
    config = anthropic_config(sim)
    result = await complete(config, ask(max_tokens=50))
    chunks = await stream(config, ask(max_tokens=50))

    assert result.content == "Simulated answer to: Plan a video about volcanoes"
    assert result.raw["id"] == "msg_sim_1"
    assert result.usage == Usage(tokens_in=11, tokens_out=13)
    assert "".join(c.delta for c in chunks) == result.content
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage == result.usage
    assert sim.requests[0]["system"] == "You plan videos."


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_rate_limit_fault_carries_retry_after(sim, kind):
    sim.enqueue(Fault(status=429, headers={"Retry-After": "2"}))
    config = openai_config(sim) if kind == "openai" else anthropic_config(sim)

    with pytest.raises(ProviderRateLimited) as caught:
        await complete(config, ask())
    assert caught.value.retry_after == 2.0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(status=500), ProviderUnavailable),
        (Fault(status=529), ProviderUnavailable),
        (Fault(status=400, body={"error": {"message": "bad"}}), ProviderRequestRejected),
        (Fault(status=502, body="<html>gateway</html>"), ProviderUnavailable),
        (Fault(delay=1.0), ProviderTimeout),
        (Fault(malformed=True), ProviderBadResponse),
        (Fault(reset=True), ProviderUnavailable),
    ],
    ids=["500", "529", "400-body", "502-text", "delay", "malformed", "reset"],
)
async def test_faults_surface_as_provider_errors(sim, fault, expected):
    sim.enqueue(fault)
    with pytest.raises(ProviderError) as caught:
        await complete(openai_config(sim), ask(timeout_seconds=0.2))
    assert type(caught.value) is expected


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(status=429), ProviderRateLimited),
        (Fault(malformed=True), ProviderBadResponse),
        (Fault(reset=True), ProviderUnavailable),
    ],
)
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_stream_faults_surface_as_provider_errors(sim, kind, fault, expected):
    sim.enqueue(fault)
    config = openai_config(sim) if kind == "openai" else anthropic_config(sim)
    with pytest.raises(expected):
        await stream(config, ask())


@pytest.mark.asyncio
async def test_faults_are_consumed_in_order_then_success_resumes(sim):
    sim.enqueue(
        Fault(status=503), Fault(content="scripted", usage=(40, 2)), Fault(headers={"x-a": "1"})
    )
    config = openai_config(sim)

    with pytest.raises(ProviderUnavailable):
        await complete(config, ask())
    scripted = await complete(config, ask())
    await complete(config, ask())
    default = await complete(config, ask())

    assert (scripted.content, scripted.usage) == ("scripted", Usage(40, 2))
    assert default.content.startswith("Simulated answer to:")
    assert sim.request_count == 4


def test_error_rate_and_latency_for_the_demo():
    with FakeUpstream(error_rate=1.0, latency=0.05, seed=7) as upstream:
        statuses = []
        started = time.perf_counter()
        with httpx.Client(base_url=upstream.openai_base_url) as client:
            for _ in range(6):
                response = client.post("/chat/completions", json={"model": "m", "messages": []})
                statuses.append(response.status_code)
                if response.status_code == 429:
                    assert response.headers["retry-after"] == "0"
        assert time.perf_counter() - started >= 6 * 0.05
    assert set(statuses) <= {429, 500}
    assert len(set(statuses)) == 2


def test_stop_does_not_wait_for_delayed_answers():
    upstream = FakeUpstream().start()
    upstream.enqueue(Fault(delay=30))
    with httpx.Client(timeout=0.1) as client, pytest.raises(httpx.ReadTimeout):
        client.post(upstream.openai_base_url + "/chat/completions", json={"messages": []})
    started = time.perf_counter()
    upstream.stop()
    assert time.perf_counter() - started < 2


def test_unknown_paths_and_invalid_bodies_are_rejected(sim):
    with httpx.Client(base_url=sim.url) as client:
        assert client.get("/nope").status_code == 404
        assert client.post("/v1/chat/completions", content=b"{oops").status_code == 400
        models = client.get("/v1/models").json()
    assert [model["id"] for model in models["data"]] == list(sim.models)


def test_a_drip_sends_the_headers_at_once_then_the_body_byte_by_byte(sim):
    sim.enqueue(Fault(status=503, body="abcdef", drip=0.1))
    with (
        httpx.Client(timeout=5) as client,
        client.stream("POST", sim.openai_base_url + "/chat/completions", json={}) as response,
    ):
        started = time.perf_counter()
        assert response.status_code == 503  # the headers came before the first byte
        pieces = list(response.iter_raw())
        elapsed = time.perf_counter() - started
    assert pieces == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert elapsed >= 0.5  # each byte waits for the drip, so no read ever times out


def test_a_dripping_stream_sends_its_first_bytes_at_once_and_keeps_its_events(sim):
    ask_for = {"model": "m", "messages": [{"role": "user", "content": "drip"}], "stream": True}
    url = sim.openai_base_url + "/chat/completions"
    with httpx.Client(timeout=5) as client:
        whole = client.post(url, json=ask_for).content
        sim.enqueue(Fault(drip=0.1, drip_after=len(whole) - 6))
        started = time.perf_counter()
        with client.stream("POST", url, json=ask_for) as response:
            pieces = response.iter_raw()
            first = next(pieces)
            first_after = time.perf_counter() - started
            rest = list(pieces)
        elapsed = time.perf_counter() - started

    assert first_after < 0.3  # before the first drip interval had passed three times
    assert len(rest) == 6 and all(len(piece) == 1 for piece in rest)
    assert elapsed >= 0.1 * 5

    # The same events as without the drip (but for the serial in the ids, and the time).
    import re

    def same(body: bytes) -> bytes:
        return re.sub(rb'"created": \d+', b'"created": 0', body.replace(b"sim-2", b"sim-1"))

    assert same(first + b"".join(rest)) == same(whole)


def test_stop_cuts_a_drip_short():
    upstream = FakeUpstream().start()
    upstream.enqueue(Fault(drip=30))
    with (
        httpx.Client(timeout=5) as client,
        client.stream("POST", upstream.openai_base_url + "/chat/completions", json={}) as r,
    ):
        assert r.status_code == 200
        started = time.perf_counter()
        upstream.stop()
        with pytest.raises(httpx.HTTPError):
            r.read()
    assert time.perf_counter() - started < 2


def test_the_simulator_speaks_every_registered_kind_under_its_declaration():
    """Each registered kind has a fake shape, keyed by the adapter's own declaration."""
    assert set(SHAPES) == set(KINDS)
    for kind, shape in SHAPES.items():
        assert shape.spec is kind_spec(kind)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_each_kind_is_answered_at_its_base_url_by_its_adapter(sim, kind):
    config = ProviderConfig("p", kind, sim.base_url(kind), KEY)
    result = await complete(config, ask())
    assert result.content == "Simulated answer to: Plan a video about volcanoes"
    assert sim.path_counts == {SHAPES[kind].path: 1}
