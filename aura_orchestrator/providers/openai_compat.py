"""OpenAI Chat Completions wire format (OpenAI itself and the many servers that copy it)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx

from .base import (
    CompletionRequest,
    CompletionResult,
    ProviderConfig,
    ProviderKindSpec,
    StreamChunk,
    Usage,
)
from .http import (
    Sender,
    aclosing_response,
    bad_response,
    error_for_stream_event,
    iter_sse,
    json_body,
    json_request,
    parse_event_json,
    raise_for_status,
    send,
    translate_transport_errors,
)


class OpenAICompatAdapter:
    spec = ProviderKindSpec(
        kind="openai",
        label="OpenAI-compatible (chat completions)",
        price_catalogue="openai",
        native_json_schema=True,
    )

    async def complete(
        self, client: Sender, config: ProviderConfig, request: CompletionRequest
    ) -> CompletionResult:
        with translate_transport_errors(config, request.timeout_seconds):
            response = await send(
                client,
                _post(config, request, stream=False),
            )
            await raise_for_status(config, response)
        body = json_body(config, response)
        choice = _first_choice(body)
        message = choice.get("message") if choice is not None else None
        if not isinstance(message, dict):
            raise bad_response(config, "response has no choices[0].message", response.status_code)
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise bad_response(
                config, "choices[0].message.content is not text", response.status_code
            )
        return CompletionResult(
            content=content or "",  # null for refusals and tool calls
            usage=parse_usage(body.get("usage")),
            model=str(body.get("model") or request.model),
            finish_reason=choice.get("finish_reason") if choice is not None else None,
            raw=body,
        )

    async def stream(
        self, client: Sender, config: ProviderConfig, request: CompletionRequest
    ) -> AsyncGenerator[StreamChunk, None]:
        finished = False
        with translate_transport_errors(config, request.timeout_seconds):
            response = await send(
                client,
                _post(config, request, stream=True),
                stream=True,
            )
            async with aclosing_response(response):
                await raise_for_status(config, response)
                async for event in iter_sse(response):
                    if event.data.strip() == "[DONE]":
                        return
                    chunk = parse_event_json(config, event.data)
                    if "error" in chunk:
                        raise error_for_stream_event(config, chunk)
                    parsed = _stream_chunk(chunk)
                    finished = finished or parsed.finish_reason is not None
                    yield parsed
        # Some compatible servers omit [DONE]; a stream cut before any finish_reason is broken.
        if not finished:
            raise bad_response(config, "stream ended before [DONE]")

    async def list_models(self, client: httpx.AsyncClient, config: ProviderConfig) -> list[str]:
        with translate_transport_errors(config, 30.0):
            response = await client.get(
                _url(config, "/models"), headers=_headers(config), timeout=httpx.Timeout(30.0)
            )
            await raise_for_status(config, response)
        data = json_body(config, response).get("data")
        if not isinstance(data, list):
            raise bad_response(config, "models response has no data list", response.status_code)
        return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]


def request_body(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body: only the parameters the caller set, so upstream defaults apply otherwise."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    optional = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "stop": list(request.stop) if request.stop is not None else None,
        "response_format": request.response_format,
        "n": request.n,
        "user": request.user,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    tokens_in, tokens_out = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if not isinstance(tokens_in, int) or not isinstance(tokens_out, int):
        return None
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(tokens_in, tokens_out, cached if isinstance(cached, int) else 0)


def _url(config: ProviderConfig, path: str) -> str:
    return config.base_url.rstrip("/") + path


def _headers(config: ProviderConfig) -> dict[str, str]:
    headers: dict[str, str] = {}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    headers.update(config.extra_headers)
    return headers


def _first_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    """Choice 0: with n > 1 the other choices stay available in `raw`."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


def _stream_chunk(chunk: dict[str, Any]) -> StreamChunk:
    choice = _first_choice(chunk)
    delta = choice.get("delta") if choice is not None else None
    text = delta.get("content") if isinstance(delta, dict) else None
    return StreamChunk(
        delta=text if isinstance(text, str) else "",
        finish_reason=choice.get("finish_reason") if choice is not None else None,
        usage=parse_usage(chunk.get("usage")),
        raw=chunk,
    )


def _post(config: ProviderConfig, request: CompletionRequest, *, stream: bool) -> httpx.Request:
    return json_request(
        _url(config, "/chat/completions"),
        request_body(request, stream=stream),
        headers=_headers(config),
        timeout=request.timeout_seconds,
    )
