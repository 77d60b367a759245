"""Anthropic Messages adapter against httpx.MockTransport: mapping, errors, stream translation."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from aura_orchestrator.providers import (
    ChatMessage,
    CompletionRequest,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderConfig,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
    StreamChunk,
    Usage,
)
from aura_orchestrator.providers.anthropic import AnthropicAdapter, messages_url

SECRET = "sk-ant-test-secret-456"
CONFIG = ProviderConfig("claude", "anthropic", "https://api.anthropic.test", SECRET)
REQUEST = CompletionRequest(
    model="claude-test",
    messages=(
        ChatMessage("system", "Be brief."),
        ChatMessage("system", "Answer in English."),
        ChatMessage("user", "Hello"),
        ChatMessage("assistant", "Hi"),
        ChatMessage("user", "Tell me more"),
    ),
)

Handler = Callable[[httpx.Request], httpx.Response]


def message_body(**overrides: object) -> dict:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-2025",
        "content": [{"type": "text", "text": "Hello there."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 4},
    }
    body.update(overrides)
    return body


async def complete(handler: Handler, request: CompletionRequest = REQUEST, config=CONFIG):
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await AnthropicAdapter().complete(client, config, request)


async def stream(handler: Handler, request: CompletionRequest = REQUEST) -> list[StreamChunk]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return [chunk async for chunk in AnthropicAdapter().stream(client, CONFIG, request)]


def sse(*events: dict) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def capture(seen: list[httpx.Request], body: dict | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body or message_body())

    return handler


@pytest.mark.parametrize(
    "base_url",
    ["https://api.anthropic.test", "https://api.anthropic.test/", "https://api.anthropic.test/v1"],
)
def test_messages_url_accepts_base_with_or_without_v1(base_url):
    assert messages_url(base_url) == "https://api.anthropic.test/v1/messages"


@pytest.mark.asyncio
async def test_complete_maps_the_request_to_the_messages_api():
    """System messages become `system`, max_tokens defaults, temperature is clamped to 0..1."""
    seen: list[httpx.Request] = []
    request = CompletionRequest(
        model="claude-test",
        messages=REQUEST.messages,
        temperature=1.4,
        top_p=0.9,
        stop=("END",),
        user="svc-1",
        timeout_seconds=9,
    )
    await complete(capture(seen), request)

    sent = seen[0]
    assert str(sent.url) == "https://api.anthropic.test/v1/messages"
    assert sent.headers["x-api-key"] == SECRET
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.extensions["timeout"]["read"] == 9
    assert json.loads(sent.content) == {
        "model": "claude-test",
        "max_tokens": 1024,
        "system": "Be brief.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": "Tell me more"},
        ],
        "temperature": 1.0,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "svc-1"},
    }


@pytest.mark.asyncio
async def test_top_p_is_sent_when_temperature_is_not():
    """Recent Claude models refuse both at once."""
    seen: list[httpx.Request] = []
    request = CompletionRequest(
        model="m", messages=(ChatMessage("user", "x"),), top_p=0.5, max_tokens=10
    )
    await complete(capture(seen), request)

    body = json.loads(seen[0].content)
    assert body["top_p"] == 0.5
    assert body["max_tokens"] == 10
    assert "temperature" not in body
    assert "system" not in body


@pytest.mark.asyncio
async def test_complete_joins_text_blocks_and_maps_usage_with_cache():
    body = message_body(
        content=[
            {"type": "text", "text": "Part one. "},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            {"type": "text", "text": "Part two."},
        ],
        usage={
            "input_tokens": 10,
            "output_tokens": 7,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
        },
    )
    result = await complete(lambda request: httpx.Response(200, json=body))

    assert result.content == "Part one. Part two."
    assert result.model == "claude-test-2025"
    assert result.usage == Usage(tokens_in=115, tokens_out=7, cached_tokens_in=100)
    assert result.raw == body


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        (None, None),
    ],
)
async def test_stop_reason_is_mapped_to_openai_finish_reason(stop_reason, finish_reason):
    body = message_body(stop_reason=stop_reason)
    result = await complete(lambda request: httpx.Response(200, json=body))
    assert result.finish_reason == finish_reason


def anthropic_error(kind: str, message: str = "nope") -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "kind", "headers", "expected", "retry_after"),
    [
        (429, "rate_limit_error", {"retry-after": "4"}, ProviderRateLimited, 4.0),
        (529, "overloaded_error", {}, ProviderUnavailable, None),
        (500, "api_error", {}, ProviderUnavailable, None),
        (503, "unknown_future_error", {}, ProviderUnavailable, None),
        (400, "invalid_request_error", {}, ProviderRequestRejected, None),
        (404, "not_found_error", {}, ProviderRequestRejected, None),
        (413, "request_too_large", {}, ProviderRequestRejected, None),
        (401, "authentication_error", {}, ProviderAuthError, None),
        (403, "permission_error", {}, ProviderAuthError, None),
        # the error type decides over an odd status
        (400, "overloaded_error", {}, ProviderUnavailable, None),
    ],
)
async def test_errors_are_classified_by_status_and_error_type(
    status, kind, headers, expected, retry_after
):
    with pytest.raises(ProviderError) as caught:
        await complete(
            lambda request: httpx.Response(status, headers=headers, json=anthropic_error(kind))
        )

    error = caught.value
    assert type(error) is expected
    assert (error.status, error.code, error.retry_after) == (status, kind, retry_after)
    assert str(error) == f"claude: HTTP {status} from upstream: nope"


@pytest.mark.asyncio
async def test_api_key_never_appears_in_errors():
    body = anthropic_error("authentication_error", f"invalid x-api-key {SECRET}")
    with pytest.raises(ProviderAuthError) as caught:
        await complete(lambda request: httpx.Response(401, json=body))
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(CONFIG)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "response",
    [httpx.Response(200, text="<html>"), httpx.Response(200, json={"id": "msg"})],
    ids=["invalid-json", "missing-content"],
)
async def test_malformed_success_bodies_are_bad_responses(response):
    with pytest.raises(ProviderBadResponse):
        await complete(lambda request: response)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("exception", "expected"),
    [(httpx.ReadTimeout, ProviderTimeout), (httpx.ConnectError, ProviderUnavailable)],
)
async def test_transport_exceptions_are_classified(exception, expected):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception("boom", request=request)

    with pytest.raises(expected):
        await complete(handler)


STREAM_EVENTS = (
    {
        "type": "message_start",
        "message": {
            "id": "msg_42",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-2025",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {"output_tokens": 15},
    },
    {"type": "message_stop"},
)


@pytest.mark.asyncio
async def test_stream_translates_events_to_openai_chunks():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=sse(*STREAM_EVENTS))

    chunks = await stream(handler)

    assert json.loads(seen[0].content)["stream"] is True
    assert [c.delta for c in chunks] == ["", "Hel", "lo", ""]
    assert [c.finish_reason for c in chunks] == [None, None, None, "length"]
    assert chunks[-1].usage == Usage(tokens_in=30, tokens_out=15, cached_tokens_in=5)
    assert all(c.usage is None for c in chunks[:-1])

    first, text, final = chunks[0].raw, chunks[1].raw, chunks[-1].raw
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert text["object"] == "chat.completion.chunk"
    assert text["id"] == "msg_42"
    assert text["model"] == "claude-test-2025"
    assert text["choices"] == [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]
    assert final["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    assert final["usage"]["prompt_tokens"] == 30
    assert final["usage"]["completion_tokens"] == 15
    assert final["usage"]["total_tokens"] == 45


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "expected"),
    [("overloaded_error", ProviderUnavailable), ("rate_limit_error", ProviderRateLimited)],
)
async def test_error_event_mid_stream_is_classified_by_type(kind, expected):
    body = sse(STREAM_EVENTS[0], STREAM_EVENTS[3], anthropic_error(kind, "busy"))

    with pytest.raises(expected) as caught:
        await stream(lambda request: httpx.Response(200, content=body))
    assert caught.value.code == kind


@pytest.mark.asyncio
async def test_stream_error_status_raises_before_any_chunk():
    response = httpx.Response(529, json=anthropic_error("overloaded_error"))
    with pytest.raises(ProviderUnavailable):
        await stream(lambda request: response)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [sse(*STREAM_EVENTS[:4]), sse(STREAM_EVENTS[0]) + b"data: {oops\n\n"],
    ids=["cut-before-message-stop", "invalid-json"],
)
async def test_broken_streams_are_bad_responses(body):
    with pytest.raises(ProviderBadResponse):
        await stream(lambda request: httpx.Response(200, content=body))
