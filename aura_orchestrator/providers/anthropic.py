"""Anthropic Messages API, translated to and from the OpenAI-shaped types the gateway speaks."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from .base import (
    CompletionRequest,
    CompletionResult,
    ProviderAuthError,
    ProviderConfig,
    ProviderError,
    ProviderKindSpec,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
    Refusal,
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

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the Messages API requires max_tokens

# Anthropic's documented error types; they decide over the status when present, and are all
# there is for errors sent inside a 200 stream.
ERROR_TYPES: dict[str, type[ProviderError]] = {
    "invalid_request_error": ProviderRequestRejected,
    "not_found_error": ProviderRequestRejected,
    "request_too_large": ProviderRequestRejected,
    "authentication_error": ProviderAuthError,
    "permission_error": ProviderAuthError,
    "rate_limit_error": ProviderRateLimited,
    "api_error": ProviderUnavailable,
    "overloaded_error": ProviderUnavailable,
    "timeout_error": ProviderTimeout,
}

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicAdapter:
    spec = ProviderKindSpec(
        kind="anthropic",
        label="Anthropic (Messages API)",
        price_catalogue="anthropic",
        native_json_schema=False,  # the Messages API has no response_format
    )

    async def complete(
        self, client: Sender, config: ProviderConfig, request: CompletionRequest
    ) -> CompletionResult:
        with translate_transport_errors(config, request.timeout_seconds):
            response = await send(
                client,
                _post(config, request, stream=False),
            )
            await raise_for_status(config, response, error_types=ERROR_TYPES)
        body = json_body(config, response)
        blocks = body.get("content")
        if not isinstance(blocks, list):
            raise bad_response(config, "response has no content list", response.status_code)
        return CompletionResult(
            content="".join(
                str(block.get("text", ""))
                for block in blocks
                if isinstance(block, dict) and block.get("type") == "text"
            ),
            usage=parse_usage(body.get("usage")),
            model=str(body.get("model") or request.model),
            finish_reason=map_finish_reason(body.get("stop_reason")),
            raw=body,
        )

    async def stream(
        self, client: Sender, config: ProviderConfig, request: CompletionRequest
    ) -> AsyncGenerator[StreamChunk, None]:
        translator = _StreamTranslator(model=request.model)
        with translate_transport_errors(config, request.timeout_seconds):
            response = await send(
                client,
                _post(config, request, stream=True),
                stream=True,
            )
            async with aclosing_response(response):
                await raise_for_status(config, response, error_types=ERROR_TYPES)
                async for event in iter_sse(response):
                    data = parse_event_json(config, event.data)
                    kind = data.get("type")
                    if kind == "error":
                        raise error_for_stream_event(config, data, error_types=ERROR_TYPES)
                    if kind == "message_stop":
                        return
                    chunk = translator.translate(data)
                    if chunk is not None:
                        yield chunk
        raise bad_response(config, "stream ended before message_stop")

    def refusal(self, request: CompletionRequest) -> Refusal | None:
        # Until the Messages translation of tools and images lands: text only.
        if request.tools:
            return Refusal("tools", "Anthropic routes do not take tools yet.")
        if (request.n or 1) > 1:
            return Refusal("n", "The Messages API answers one choice (`n` must be 1).")
        for index, message in enumerate(request.messages):
            if message.parts is not None or message.tool_calls or message.tool_call_id:
                return Refusal(f"messages[{index}]", "Anthropic routes take text messages only.")
        for name in request.extra:
            return Refusal(name, f"The Messages API has no `{name}`.")
        return None


def messages_url(base_url: str) -> str:
    """Accept both "https://api.anthropic.com" and "https://api.anthropic.com/v1"."""
    base = base_url.rstrip("/")
    return base + ("/messages" if base.endswith("/v1") else "/v1/messages")


def request_body(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": m.role, "content": m.content} for m in request.messages if m.role != "system"
        ],
    }
    if system:
        body["system"] = system
    if request.temperature is not None:
        # OpenAI's range is 0..2, Anthropic's 0..1.
        body["temperature"] = min(max(request.temperature, 0.0), 1.0)
    elif request.top_p is not None:
        # Recent Claude models reject temperature and top_p together; temperature wins.
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if stream:
        body["stream"] = True
    return body


def parse_usage(raw: Any) -> Usage | None:
    """Anthropic's input_tokens exclude cache reads and writes; Usage.tokens_in includes them."""
    if not isinstance(raw, dict):
        return None
    tokens_in, tokens_out = raw.get("input_tokens"), raw.get("output_tokens")
    if not isinstance(tokens_in, int) or not isinstance(tokens_out, int):
        return None
    cached = _int(raw.get("cache_read_input_tokens"))
    written = _int(raw.get("cache_creation_input_tokens"))
    return Usage(tokens_in + cached + written, tokens_out, cached)


def map_finish_reason(stop_reason: Any) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(str(stop_reason), str(stop_reason))


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _dict(value: Any) -> dict[str, Any]:
    """Tolerate odd event shapes: a missing or mistyped field reads as empty."""
    return value if isinstance(value, dict) else {}


def _headers(config: ProviderConfig) -> dict[str, str]:
    headers = {"anthropic-version": API_VERSION}
    if config.api_key:
        headers["x-api-key"] = config.api_key
    headers.update(config.extra_headers)
    return headers


class _StreamTranslator:
    """Turns Anthropic stream events into OpenAI chat.completion.chunk dicts."""

    def __init__(self, *, model: str) -> None:
        self.id = "chatcmpl-anthropic"
        self.model = model
        self.created = int(time.time())
        self.start_usage: dict[str, Any] = {}

    def translate(self, event: dict[str, Any]) -> StreamChunk | None:
        kind = event.get("type")
        if kind == "message_start":
            message = _dict(event.get("message"))
            self.id = str(message.get("id") or self.id)
            self.model = str(message.get("model") or self.model)
            self.start_usage = _dict(message.get("usage"))
            return StreamChunk("", raw=self._chunk({"role": "assistant", "content": ""}))
        if kind == "content_block_delta":
            delta = _dict(event.get("delta"))
            if delta.get("type") != "text_delta":
                return None  # tool input and thinking deltas have no chat-completions text
            text = str(delta.get("text", ""))
            return StreamChunk(text, raw=self._chunk({"content": text}))
        if kind == "message_delta":
            return self._final(event)
        return None  # ping, content_block_start/stop

    def _final(self, event: dict[str, Any]) -> StreamChunk:
        # message_delta usage is cumulative; input counts only appear there in newer versions.
        latest = {k: v for k, v in _dict(event.get("usage")).items() if v is not None}
        usage = parse_usage({**self.start_usage, **latest})
        finish = map_finish_reason(_dict(event.get("delta")).get("stop_reason"))
        raw = self._chunk({}, finish_reason=finish)
        if usage is not None:
            raw["usage"] = {
                "prompt_tokens": usage.tokens_in,
                "completion_tokens": usage.tokens_out,
                "total_tokens": usage.tokens_in + usage.tokens_out,
                "prompt_tokens_details": {"cached_tokens": usage.cached_tokens_in},
            }
        return StreamChunk("", finish_reason=finish, usage=usage, raw=raw)

    def _chunk(self, delta: dict[str, Any], *, finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }


def _post(config: ProviderConfig, request: CompletionRequest, *, stream: bool) -> httpx.Request:
    return json_request(
        messages_url(config.base_url),
        request_body(request, stream=stream),
        headers=_headers(config),
        timeout=request.timeout_seconds,
    )
