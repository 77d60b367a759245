"""The gateway driven by the official OpenAI SDK against a real `manage.py serve`.

The server runs in its own process on the test database; the fake upstream runs in this
one. Money: the `provider` fixture prices input at 1 and output at 2 micro-dollars a
token.
"""

import json
import time
from decimal import Decimal

import httpx
import openai
import pytest

from budgets.models import BudgetConstraint, LlmSession
from telemetry.models import OperationTelemetry

pytestmark = pytest.mark.django_db(transaction=True)

MICRO = Decimal("0.000001")


def cost(tokens_in: int, tokens_out: int) -> Decimal:
    return (Decimal(tokens_in + 2 * tokens_out) * MICRO).quantize(MICRO)


def wait_for_telemetry(operation_id: str, timeout: float = 10.0) -> OperationTelemetry:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = OperationTelemetry.objects.filter(operation_id=operation_id).first()
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError(f"no telemetry for {operation_id} within {timeout} s")


def test_plain_completion_returns_the_chat_completion_shape_with_usage_and_headers(
    client, fake_upstream, api_key
):
    """A non-streaming call answers in OpenAI's shape; the request's own temperature
    overrides the preset, the rest (max_tokens) comes from the `completion` preset; the
    headers name the operation, the cache outcome and the cost, which telemetry agrees with."""
    raw = client.chat.completions.with_raw_response.create(
        model="sim-gpt",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour"}]},
        ],
        temperature=0.2,
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Simulated answer to: Name a colour"
    assert completion.choices[0].finish_reason == "stop"
    sent = fake_upstream.requests[-1]
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 2000
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}

    row = OperationTelemetry.objects.get(operation_id=raw.headers["x-aura-operation-id"])
    assert (row.source, row.streamed, row.success) == ("gateway", False, True)
    assert row.session_id == f"gateway-{api_key.api_key.prefix}"
    assert completion.usage.prompt_tokens == row.tokens_in > 0
    assert completion.usage.completion_tokens == row.tokens_out > 0
    assert raw.headers["x-aura-cache"] == "miss"
    assert Decimal(raw.headers["x-aura-cost"]) == row.estimated_cost
    assert row.estimated_cost == cost(row.tokens_in, row.tokens_out)


def test_streaming_relays_every_chunk_and_settles_usage_from_the_final_chunk(client, fake_upstream):
    """`stream: true` with include_usage: the deltas join to the answer, the last chunk
    carries the usage, and the ledger is charged exactly that usage, nothing left reserved."""
    stream = client.chat.completions.create(
        model="primary/sim-gpt",
        messages=[{"role": "user", "content": "Tell me about the tides of the sea"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Aura-Session-Id": "stream-1", "X-Aura-Operation-Type": "Creative"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Simulated answer to: Tell me about the tides of the sea"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 5
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    usage = chunks[-1].usage

    row = OperationTelemetry.objects.get(session_id="stream-1")
    assert (row.streamed, row.success, row.operation_type) == (True, True, "creative")
    assert row.time_to_first_token_ms is not None
    assert (row.tokens_in, row.tokens_out) == (usage.prompt_tokens, usage.completion_tokens)
    session = LlmSession.objects.get(session_id="stream-1")
    assert session.tokens_used == usage.total_tokens
    assert session.tokens_reserved == 0 and session.cost_reserved_micros == 0
    assert session.operation_count == 1


def test_json_schema_response_format_is_passed_on_and_validated(client, fake_upstream):
    """A json_schema response_format reaches the provider and the answer is a document
    of that schema (the pipeline validates it)."""
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "scenes": {"type": "integer"}},
        "required": ["title", "scenes"],
        "additionalProperties": False,
    }
    completion = client.chat.completions.create(
        model="sim-gpt",
        messages=[{"role": "user", "content": "Plan a video"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "plan", "schema": schema, "strict": True},
        },
    )
    document = json.loads(completion.choices[0].message.content)
    assert set(document) == {"title", "scenes"} and isinstance(document["scenes"], int)
    assert fake_upstream.requests[-1]["response_format"]["json_schema"]["schema"] == schema


def test_an_exhausted_budget_raises_the_sdk_status_error_with_402(client, fake_upstream):
    """A named budget admits the first call; the second would pass the session's token cap,
    so the SDK raises APIStatusError 402 with code budget_exceeded and no provider call."""
    BudgetConstraint.objects.create(name="tight", max_tokens_per_session=150)
    headers = {"X-Aura-Session-Id": "budget-1", "X-Aura-Budget": "tight"}
    messages = [{"role": "user", "content": "Go [[tokens_out:100]]"}]
    first = client.chat.completions.with_raw_response.create(
        model="sim-gpt", messages=messages, max_tokens=100, extra_headers=headers
    )
    used = LlmSession.objects.get(session_id="budget-1").tokens_used
    assert int(first.headers["x-aura-budget-remaining-tokens"]) == 150 - used

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="sim-gpt", messages=messages, max_tokens=100, extra_headers=headers
        )
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "budget_exceeded"
    assert caught.value.body["message"].startswith("Budget exceeded")
    assert fake_upstream.request_count == 1


def test_an_unknown_model_is_a_404_model_not_found(client, fake_upstream):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="gpt-nonexistent", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.body["code"] == "model_not_found"
    assert fake_upstream.request_count == 0


def test_a_repeated_request_is_a_cache_hit_also_when_streamed(client, fake_upstream):
    """With caching asked for, the second identical call is served from cache (header
    says hit, no provider call, nothing charged); a streamed request replays it too."""
    ask = {
        "model": "sim-gpt",
        "messages": [{"role": "user", "content": "What is a tide?"}],
        "extra_headers": {"X-Aura-Enable-Cache": "true", "X-Aura-Session-Id": "cache-1"},
    }
    first = client.chat.completions.with_raw_response.create(**ask)
    second = client.chat.completions.with_raw_response.create(**ask)
    assert (first.headers["x-aura-cache"], second.headers["x-aura-cache"]) == ("miss", "hit")
    answer = first.parse().choices[0].message.content
    assert second.parse().choices[0].message.content == answer
    assert second.parse().usage.total_tokens == 0
    assert Decimal(second.headers["x-aura-cost"]) == 0

    with client.chat.completions.with_streaming_response.create(stream=True, **ask) as streamed:
        assert streamed.headers["x-aura-cache"] == "hit"
        text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert text == answer
    assert fake_upstream.request_count == 1
    hits = OperationTelemetry.objects.filter(session_id="cache-1", cache_hit=True)
    assert sorted(hits.values_list("streamed", flat=True)) == [False, True]


def test_a_client_that_disconnects_mid_stream_is_charged_what_it_consumed(
    live_server_url, api_key, provider, fake_upstream, slow_stream
):
    """The client closes the connection after a few chunks while the upstream is still
    streaming: the reservation is handed back (0 reserved) and the ledger accrues exactly
    the usage telemetry records (prompt + the completion tokens received), not the worst case."""
    slow_stream(0.1)
    words = " ".join(f"word{i}" for i in range(60))
    body = {
        "model": "sim-gpt",
        "stream": True,
        "messages": [{"role": "user", "content": f"[[content:{words}]]"}],
    }
    headers = {"Authorization": f"Bearer {api_key.raw_key}", "X-Aura-Session-Id": "gone-1"}
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST", f"{live_server_url}/v1/chat/completions", json=body, headers=headers
        ) as r,
    ):
        assert r.status_code == 200
        operation_id = r.headers["x-aura-operation-id"]
        received = 0
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content":"word' in line:
                received += 1
                if received == 3:
                    break

    row = wait_for_telemetry(operation_id)
    assert (row.success, row.error_code, row.streamed) == (False, "client_disconnected", True)
    assert 3 <= row.tokens_out < 60
    session = LlmSession.objects.get(session_id="gone-1")
    assert session.tokens_reserved == 0 and session.cost_reserved_micros == 0
    assert session.tokens_used == row.tokens_in + row.tokens_out
    assert session.cost_accrued_micros * MICRO == row.estimated_cost
    assert row.estimated_cost == cost(row.tokens_in, row.tokens_out)


def test_the_first_chunk_arrives_when_the_upstreams_does_not_at_the_end(client, slow_stream):
    """The upstream waits 0.1 s between events: the gateway relays the first content
    chunk long before the stream ends (no buffering)."""
    slow_stream(0.1)
    words = " ".join(f"w{i}" for i in range(12))
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model="sim-gpt",
        messages=[{"role": "user", "content": f"[[content:{words}]]"}],
        stream=True,
    )
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    assert total >= 1.0  # 13 events, 0.1 s apart
    assert first is not None and first < 0.5 * total
