"""OpenAI-compatible adapter against httpx.MockTransport: wire format and error taxonomy."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

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
from aura_orchestrator.providers.openai_compat import OpenAICompatAdapter

SECRET = "sk-test-very-secret-key-123"
CONFIG = ProviderConfig("primary", "openai", "https://upstream.test/v1/", SECRET)
REQUEST = CompletionRequest(
    model="gpt-test",
    messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "Hello")),
)

Handler = Callable[[httpx.Request], httpx.Response]


def completion_body(**overrides: object) -> dict:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-test-2025",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
    body.update(overrides)
    return body


async def complete(handler: Handler, request: CompletionRequest = REQUEST, config=CONFIG):
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await OpenAICompatAdapter().complete(client, config, request)


async def stream(handler: Handler, request: CompletionRequest = REQUEST) -> list[StreamChunk]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return [chunk async for chunk in OpenAICompatAdapter().stream(client, CONFIG, request)]


def sse(*events: object) -> bytes:
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    return "".join(lines).encode()


def stream_chunk(content: str | None = None, finish: str | None = None, **extra: object) -> dict:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


@pytest.mark.asyncio
async def test_complete_posts_only_the_parameters_that_are_set():
    """Unset parameters are omitted so the upstream's defaults apply; max_tokens keeps its name."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion_body())

    request = CompletionRequest(
        model="gpt-test",
        messages=REQUEST.messages,
        temperature=0.2,
        max_tokens=100,
        stop=("END",),
        response_format={"type": "json_object"},
        timeout_seconds=12.5,
    )
    await complete(handler, request)

    sent = seen[0]
    assert sent.method == "POST"
    assert str(sent.url) == "https://upstream.test/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert json.loads(sent.content) == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        "temperature": 0.2,
        "max_tokens": 100,
        "stop": ["END"],
        "response_format": {"type": "json_object"},
    }
    assert sent.extensions["timeout"] == {
        "connect": 12.5,
        "read": 12.5,
        "write": 12.5,
        "pool": 12.5,
    }


@pytest.mark.asyncio
async def test_complete_without_api_key_sends_no_authorization_but_extra_headers():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion_body())

    config = ProviderConfig("local", "openai", "http://h/v1", None, (("api-key", "azure"),))
    await complete(handler, config=config)

    assert "authorization" not in seen[0].headers
    assert seen[0].headers["api-key"] == "azure"


@pytest.mark.asyncio
async def test_complete_maps_content_model_finish_reason_and_usage():
    body = completion_body(
        usage={
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 100},
        }
    )
    result = await complete(lambda request: httpx.Response(200, json=body))

    assert result.content == "Hi!"
    assert result.model == "gpt-test-2025"
    assert result.finish_reason == "stop"
    assert result.usage == Usage(tokens_in=120, tokens_out=30, cached_tokens_in=100)
    assert result.raw == body


@pytest.mark.asyncio
async def test_complete_reports_no_usage_when_the_provider_sent_none():
    body = completion_body()
    del body["usage"]
    result = await complete(lambda request: httpx.Response(200, json=body))
    assert result.usage is None


@pytest.mark.asyncio
async def test_complete_null_content_becomes_empty_text():
    """Refusals and tool calls come with content null."""
    body = completion_body(
        choices=[{"index": 0, "message": {"role": "assistant", "content": None}}]
    )
    result = await complete(lambda request: httpx.Response(200, json=body))
    assert result.content == ""
    assert result.finish_reason is None


def _http_date_in(seconds: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "headers", "expected", "retry_after"),
    [
        (429, {"Retry-After": "7"}, ProviderRateLimited, 7.0),
        (429, {"retry-after-ms": "1500", "Retry-After": "2"}, ProviderRateLimited, 1.5),
        (429, {}, ProviderRateLimited, None),
        (500, {}, ProviderUnavailable, None),
        (502, {}, ProviderUnavailable, None),
        (503, {"Retry-After": "3"}, ProviderUnavailable, 3.0),
        (529, {}, ProviderUnavailable, None),
        (408, {}, ProviderTimeout, None),
        (400, {}, ProviderRequestRejected, None),
        (404, {}, ProviderRequestRejected, None),
        (422, {}, ProviderRequestRejected, None),
        (401, {}, ProviderAuthError, None),
        (403, {}, ProviderAuthError, None),
    ],
)
async def test_error_statuses_are_classified(status, headers, expected, retry_after):
    body = {"error": {"message": "upstream says no", "type": "some_type", "code": "some_code"}}
    with pytest.raises(ProviderError) as caught:
        await complete(lambda request: httpx.Response(status, headers=headers, json=body))

    error = caught.value
    assert type(error) is expected
    assert error.status == status
    assert error.retry_after == retry_after
    assert error.code == "some_code"
    assert error.provider == "primary"
    assert str(error) == f"primary: HTTP {status} from upstream: upstream says no"


@pytest.mark.asyncio
async def test_retry_after_as_http_date():
    headers = {"Retry-After": _http_date_in(120)}
    with pytest.raises(ProviderRateLimited) as caught:
        await complete(lambda request: httpx.Response(429, headers=headers))
    assert 115 <= caught.value.retry_after <= 120


def test_retryable_flags_follow_the_taxonomy():
    assert ProviderRateLimited.retryable and ProviderUnavailable.retryable
    assert ProviderTimeout.retryable and ProviderBadResponse.retryable
    assert not ProviderRequestRejected.retryable and not ProviderAuthError.retryable
    assert issubclass(ProviderAuthError, ProviderRequestRejected)


@pytest.mark.asyncio
async def test_error_message_is_short_and_falls_back_to_the_raw_body():
    long = "x" * 1000
    with pytest.raises(ProviderUnavailable) as caught:
        await complete(lambda request: httpx.Response(500, json={"error": {"message": long}}))
    assert len(str(caught.value)) < 260

    with pytest.raises(ProviderUnavailable) as caught:
        await complete(lambda request: httpx.Response(502, text="<html>Bad gateway</html>"))
    assert str(caught.value) == "primary: HTTP 502 from upstream: <html>Bad gateway</html>"


@pytest.mark.asyncio
async def test_api_key_never_appears_in_errors_or_config_repr():
    """Upstreams echo keys back ("Incorrect API key provided: sk-..."): it must not travel on."""
    body = {
        "error": {"message": f"Incorrect API key provided: {SECRET}", "code": "invalid_api_key"}
    }
    with pytest.raises(ProviderAuthError) as caught:
        await complete(lambda request: httpx.Response(401, json=body))

    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert SECRET not in repr(CONFIG)
    assert SECRET not in str(CONFIG)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="{not json"),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, json={"id": "x", "usage": {}}),
        httpx.Response(200, json={"choices": []}),
        httpx.Response(200, json={"choices": [{"index": 0, "message": {"content": 42}}]}),
    ],
    ids=["invalid-json", "not-an-object", "missing-choices", "empty-choices", "content-not-text"],
)
async def test_malformed_success_bodies_are_bad_responses(response):
    with pytest.raises(ProviderBadResponse) as caught:
        await complete(lambda request: response)
    assert caught.value.retryable


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (httpx.ReadTimeout, ProviderTimeout),
        (httpx.ConnectTimeout, ProviderTimeout),
        (httpx.PoolTimeout, ProviderTimeout),
        (httpx.ConnectError, ProviderUnavailable),
        (httpx.ReadError, ProviderUnavailable),
        (httpx.RemoteProtocolError, ProviderUnavailable),
    ],
)
async def test_transport_exceptions_are_classified_by_type(exception, expected):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception("boom", request=request)

    with pytest.raises(expected) as caught:
        await complete(handler)
    assert caught.value.provider == "primary"
    assert caught.value.status is None
    assert isinstance(caught.value.__cause__, exception)


@pytest.mark.asyncio
async def test_stream_yields_deltas_finish_reason_and_usage():
    body = sse(
        {
            **stream_chunk(),
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
        },
        stream_chunk("Hel"),
        stream_chunk("lo"),
        stream_chunk(finish="stop"),
        {**stream_chunk(), "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
        "[DONE]",
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    chunks = await stream(handler)

    sent = json.loads(seen[0].content)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert [c.delta for c in chunks] == ["", "Hel", "lo", "", ""]
    assert [c.finish_reason for c in chunks] == [None, None, None, "stop", None]
    assert chunks[-1].usage == Usage(5, 2)
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[1].raw == stream_chunk("Hel")


@pytest.mark.asyncio
async def test_stream_error_status_is_raised_before_any_chunk():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, headers={"Retry-After": "1"}, json={"error": {"message": "slow"}}
        )

    with pytest.raises(ProviderRateLimited) as caught:
        await stream(handler)
    assert caught.value.retry_after == 1.0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (sse(stream_chunk("a"), "{oops"), ProviderBadResponse),
        (sse(stream_chunk("a"), "[1]"), ProviderBadResponse),
        (sse(stream_chunk("a")), ProviderBadResponse),  # cut off: no finish_reason, no [DONE]
        (sse(stream_chunk("a"), {"error": {"message": "crashed"}}), ProviderUnavailable),
    ],
    ids=["invalid-json", "not-an-object", "truncated", "error-event"],
)
async def test_broken_streams_raise(body, expected):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    with pytest.raises(expected):
        await stream(handler)


@pytest.mark.asyncio
async def test_stream_without_done_is_accepted_after_a_finish_reason():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=sse(stream_chunk("a"), stream_chunk(finish="stop")))

    chunks = await stream(handler)
    assert [c.delta for c in chunks] == ["a", ""]


@pytest.mark.asyncio
async def test_stream_read_timeout_is_a_provider_timeout():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ProviderTimeout):
        await stream(handler)


@pytest.mark.asyncio
async def test_list_models():
    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == "https://upstream.test/v1/models"
        return httpx.Response(200, json={"object": "list", "data": [{"id": "a"}, {"id": "b"}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        assert await OpenAICompatAdapter().list_models(client, CONFIG) == ["a", "b"]
