"""Our results in Anthropic's shapes: the message body, its SSE events (from the OpenAI
chunks the pipeline yields, whatever the provider kind) and errors."""

import json
import logging
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import orjson

from aura_orchestrator import errors
from aura_orchestrator.api.exceptions import to_aura_error
from aura_orchestrator.pipeline import OperationResult, OperationStream
from aura_orchestrator.providers.anthropic_messages import FINISH_REASONS
from aura_orchestrator.providers.base import StreamChunk

logger = logging.getLogger(__name__)

# OpenAI finish_reason → Anthropic stop_reason: the adapter's map read backwards (the
# first Anthropic reason of each wins: stop → end_turn).
STOP_REASONS: dict[str, str] = {}
for _anthropic, _openai in FINISH_REASONS.items():
    STOP_REASONS.setdefault(_openai, _anthropic)

# Our statuses → Anthropic's error types (its closest; the rest are api_error).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def message_id(operation_id: uuid.UUID) -> str:
    return f"msg_{operation_id.hex}"


def error_body(error: errors.AuraError) -> dict:
    """Anthropic's error shape; our machine code (and the field, for a 400) kept beside."""
    body: dict[str, Any] = {
        "type": ERROR_TYPES.get(error.status, "api_error"),
        "message": error.message,
        "code": error.code,
    }
    if error.details.get("param") is not None:
        body["param"] = error.details["param"]
    return {"type": "error", "error": body}


def stop_reason(finish_reason: str | None) -> str:
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def usage_body(result: OperationResult) -> dict[str, int]:
    """What this request was billed (zero for a cache hit), as Anthropic counts it: cache
    reads and writes apart from `input_tokens` (telemetry keeps them, whatever the
    provider's kind)."""
    telemetry = result.telemetry
    read, written = telemetry["cache_read_tokens"], telemetry["cache_write_tokens"]
    return {
        "input_tokens": telemetry["tokens_in"] - read - written,
        "output_tokens": telemetry["tokens_out"],
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }


def _arguments(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def message_body(result: OperationResult) -> dict:
    """Choice 0 as a message: its thinking blocks (verbatim, as the Anthropic adapter
    kept them), its text block, then a tool_use block per call."""
    message: dict[str, Any] = {}
    finish = result.finish_reason
    first = result.answer.first if result.answer else None
    if first is not None:
        message, finish = first.get("message") or {}, first.get("finish_reason") or finish
    text = message.get("content") if message else result.content
    content: list[dict[str, Any]] = list(message.get("thinking_blocks") or ())
    content += [{"type": "text", "text": text}] if text else []
    content += [
        {
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": _arguments(call["function"]["arguments"]),
        }
        for call in message.get("tool_calls") or ()
    ]
    return {
        "id": message_id(result.operation_id),
        "type": "message",
        "role": "assistant",
        "model": result.telemetry["model_name"],
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": None,
        "usage": usage_body(result),
    }


def _event(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class _Blocks:
    """OpenAI deltas → content blocks: `reasoning_content` opens a thinking block (its
    pieces as thinking_delta, closed by the signature a `thinking_blocks` delta carries),
    text a text block, each tool call index a tool_use block (its argument fragments as
    input_json_delta); a new block closes the open one, as Anthropic streams one block
    at a time."""

    def __init__(self) -> None:
        self.index = -1  # the open block's index
        self.open: tuple[str, Any] | None = None  # ("text"|"thinking", None), ("tool", call index)
        self.finish: str | None = None

    def _start(self, key: tuple[str, Any], block: dict) -> list[bytes]:
        events = self.close()
        self.index += 1
        self.open = key
        start = {"type": "content_block_start", "index": self.index, "content_block": block}
        return [*events, _event("content_block_start", start)]

    def close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [_event("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _delta(self, delta: dict) -> bytes:
        body = {"type": "content_block_delta", "index": self.index, "delta": delta}
        return _event("content_block_delta", body)

    def text(self, text: str) -> list[bytes]:
        if not text:
            return []
        events = [] if self.open == ("text", None) else self._start(("text", None), _TEXT)
        return [*events, self._delta({"type": "text_delta", "text": text})]

    def thinking(self, text: str) -> list[bytes]:
        if not text:
            return []
        events = [] if self.open == _THINKING_KEY else self._start(_THINKING_KEY, _THINKING)
        return [*events, self._delta({"type": "thinking_delta", "thinking": text})]

    def thinking_block(self, block: dict) -> list[bytes]:
        """A signed thinking block ends the open one (its text streamed before); any other
        (redacted_thinking) is a block of its own, whole."""
        if block.get("type") != "thinking":
            return [*self._start(("redacted", self.index + 1), block), *self.close()]
        events = self.thinking(str(block.get("thinking") or ""))
        if self.open != _THINKING_KEY:
            events += self._start(_THINKING_KEY, _THINKING)
        signature = {"type": "signature_delta", "signature": block.get("signature") or ""}
        return [*events, self._delta(signature), *self.close()]

    def call(self, call: dict) -> list[bytes]:
        key = ("tool", call.get("index", 0))
        function = call.get("function") or {}
        events: list[bytes] = []
        if self.open != key:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": {},
            }
            events = self._start(key, block)
        if function.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": function["arguments"]}
            events.append(self._delta(delta))
        return events

    def chunk(self, chunk: StreamChunk) -> list[bytes]:
        if chunk.raw is None:  # a replayed plain answer
            self.finish = chunk.finish_reason or self.finish
            return self.text(chunk.delta)
        events: list[bytes] = []
        for choice in chunk.raw.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            events += self.thinking(delta.get("reasoning_content") or "")
            for block in delta.get("thinking_blocks") or ():
                events += self.thinking_block(block)
            events += self.text(delta.get("content") or "")
            for call in delta.get("tool_calls") or ():
                events += self.call(call)
            self.finish = choice.get("finish_reason") or self.finish
        return events


_TEXT = {"type": "text", "text": ""}
_THINKING = {"type": "thinking", "thinking": "", "signature": ""}
_THINKING_KEY = ("thinking", None)


def _error_event(error: errors.AuraError) -> bytes:
    return _event("error", error_body(error))


async def sse_events(stream: OperationStream) -> AsyncGenerator[bytes, None]:
    """message_start, ping, the blocks, message_delta (stop reason, usage) and
    message_stop; an `error` event when the operation fails mid-stream."""
    start: dict[str, Any] = {
        "id": message_id(stream.operation_id),
        "type": "message",
        "role": "assistant",
        "model": stream.model_name,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    yield _event("message_start", {"type": "message_start", "message": start})
    yield _event("ping", {"type": "ping"})
    blocks = _Blocks()
    try:
        assert stream.chunks is not None  # a stream that started (no `error`) has them
        async with aclosing(stream.chunks) as chunks:
            async for chunk in chunks:
                for event in blocks.chunk(chunk):
                    yield event
    except Exception as exc:  # the operation could not be finished: say so
        error = to_aura_error(exc)
        if error is None:
            logger.exception("stream of operation %s failed", stream.operation_id)
            error = errors.InternalError()
        yield _error_event(error)
        return
    result = stream.result
    if result is None:  # not reachable: the iterator sets it when it ends
        yield _error_event(errors.InternalError())
        return
    if result.error is not None:
        yield _error_event(result.error)
        return
    for event in blocks.close():
        yield event
    delta = {"stop_reason": stop_reason(blocks.finish), "stop_sequence": None}
    yield _event(
        "message_delta", {"type": "message_delta", "delta": delta, "usage": usage_body(result)}
    )
    yield _event("message_stop", {"type": "message_stop"})
