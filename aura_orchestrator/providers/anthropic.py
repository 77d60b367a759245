"""Anthropic Messages API, translated to and from the OpenAI-shaped types the gateway speaks:
the adapter and its stream translator (the bodies: anthropic_messages.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from . import anthropic_messages as messages
from .anthropic_messages import map_finish_reason, parse_usage
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
        text, calls = messages.answer_of(blocks)
        thinking = messages.thinking_of(blocks)
        finish_reason = map_finish_reason(body.get("stop_reason"))
        return CompletionResult(
            content=text,
            usage=parse_usage(body.get("usage")),
            model=str(body.get("model") or request.model),
            finish_reason=finish_reason,
            raw=body,
            tool_calls=calls,
            choices=(
                (messages.choice_of(text, calls, finish_reason, thinking),)
                if calls or thinking
                else ()
            ),
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
        return messages.refusal(request)


async def count_tokens(client: Sender, config: ProviderConfig, request: CompletionRequest) -> int:
    """The provider's exact count of `request`'s input tokens (`/v1/messages/count_tokens`)."""
    with translate_transport_errors(config, request.timeout_seconds):
        response = await send(
            client,
            json_request(
                messages_url(config.base_url) + "/count_tokens",
                messages.count_body(request),
                headers=_headers(config, request),
                timeout=request.timeout_seconds,
            ),
        )
        await raise_for_status(config, response, error_types=ERROR_TYPES)
    tokens = json_body(config, response).get("input_tokens")
    if not isinstance(tokens, int):
        raise bad_response(config, "count_tokens answered no input_tokens", response.status_code)
    return tokens


def messages_url(base_url: str) -> str:
    """Accept both "https://api.anthropic.com" and "https://api.anthropic.com/v1"."""
    base = base_url.rstrip("/")
    return base + ("/messages" if base.endswith("/v1") else "/v1/messages")


def _dict(value: Any) -> dict[str, Any]:
    """Tolerate odd event shapes: a missing or mistyped field reads as empty."""
    return value if isinstance(value, dict) else {}


# Headers a request may carry to Anthropic (`CompletionRequest.headers`); the others
# (`anthropic-version`, the key) are the adapter's and the provider's own.
PASSED_HEADERS = frozenset({"anthropic-beta"})


def _headers(config: ProviderConfig, request: CompletionRequest) -> dict[str, str]:
    headers = {"anthropic-version": API_VERSION}
    if config.api_key:
        headers["x-api-key"] = config.api_key
    headers.update(config.extra_headers)
    for name, value in request.headers:
        name = name.lower()
        if name not in PASSED_HEADERS:
            continue
        # A beta the provider's extra_headers already asks for is kept: the lists join.
        configured = next((k for k in headers if k.lower() == name), None)
        if configured is None:
            headers[name] = value
        else:
            headers[configured] = f"{headers[configured]},{value}"
    return headers


class _StreamTranslator:
    """Turns Anthropic stream events into OpenAI chat.completion.chunk dicts: text deltas
    as content, each tool_use block as one OpenAI tool call (numbered from 0, its input
    JSON streamed as the call's arguments), thinking deltas as `reasoning_content`, a
    thinking block's signature (and a redacted_thinking block whole) as `thinking_blocks`
    (chunks.ChoicesAssembler joins them back into whole blocks)."""

    def __init__(self, *, model: str) -> None:
        self.id = "chatcmpl-anthropic"
        self.model = model
        self.created = int(time.time())
        self.start_usage: dict[str, Any] = {}
        self.calls: dict[Any, int] = {}  # a tool_use block's index -> its tool call's
        self.unfilled: set[Any] = set()  # tool_use blocks whose input has not streamed yet

    def translate(self, event: dict[str, Any]) -> StreamChunk | None:
        kind = event.get("type")
        if kind == "message_start":
            message = _dict(event.get("message"))
            self.id = str(message.get("id") or self.id)
            self.model = str(message.get("model") or self.model)
            self.start_usage = _dict(message.get("usage"))
            return StreamChunk("", raw=self._chunk({"role": "assistant", "content": ""}))
        if kind == "content_block_start":
            return self._call_start(event)
        if kind == "content_block_delta":
            delta = _dict(event.get("delta"))
            if delta.get("type") == "input_json_delta":
                return self._arguments(event.get("index"), str(delta.get("partial_json", "")))
            if delta.get("type") == "thinking_delta":
                piece = str(delta.get("thinking", ""))
                return StreamChunk("", raw=self._chunk({"reasoning_content": piece}))
            if delta.get("type") == "signature_delta":
                signed = {"type": "thinking", "thinking": "", "signature": delta.get("signature")}
                return StreamChunk("", raw=self._chunk({"thinking_blocks": [signed]}))
            if delta.get("type") != "text_delta":
                return None
            text = str(delta.get("text", ""))
            return StreamChunk(text, raw=self._chunk({"content": text}))
        if kind == "content_block_stop" and event.get("index") in self.unfilled:
            # A call whose input streamed nothing has no arguments: OpenAI's "{}" then.
            return self._arguments(event.get("index"), "{}")
        if kind == "message_delta":
            return self._final(event)
        return None  # ping, text blocks' starts and stops

    def _call_start(self, event: dict[str, Any]) -> StreamChunk | None:
        block = _dict(event.get("content_block"))
        if block.get("type") == "redacted_thinking":
            return StreamChunk("", raw=self._chunk({"thinking_blocks": [block]}))
        if block.get("type") != "tool_use":
            return None
        index = self.calls[event.get("index")] = len(self.calls)
        self.unfilled.add(event.get("index"))
        call = {
            "index": index,
            "id": str(block.get("id", "")),
            "type": "function",
            "function": {"name": str(block.get("name", "")), "arguments": ""},
        }
        return StreamChunk("", raw=self._chunk({"tool_calls": [call]}))

    def _arguments(self, block_index: Any, fragment: str) -> StreamChunk | None:
        index = self.calls.get(block_index)
        if index is None or not fragment:
            return None
        self.unfilled.discard(block_index)
        call = {"index": index, "function": {"arguments": fragment}}
        return StreamChunk("", raw=self._chunk({"tool_calls": [call]}))

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
        messages.request_body(request, stream=stream),
        headers=_headers(config, request),
        timeout=request.timeout_seconds,
    )
