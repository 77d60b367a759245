"""Our results in OpenAI's shapes: chat.completion bodies, SSE chunks, errors, headers."""

import logging
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing

import orjson

from aura_orchestrator import errors
from aura_orchestrator.api.exceptions import openai_error_body, to_aura_error
from aura_orchestrator.api.render import jsonable
from aura_orchestrator.pipeline import OperationResult, OperationStream
from aura_orchestrator.providers.base import StreamChunk

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
SOFT_LIMIT = "(soft limit)"  # how budget warnings of soft caps end (budgets/)


def completion_id(operation_id: uuid.UUID) -> str:
    return f"chatcmpl-{operation_id.hex}"


def error_body(error: errors.AuraError) -> dict:
    body = openai_error_body(error)
    body["error"]["param"] = error.details.get("param")
    if "scope" in error.details:  # a budget's or a rate limit's refusal names it
        body["error"]["details"] = {
            key: value for key, value in error.details.items() if key in _REFUSAL_DETAILS
        }
    return body


# What a refusal tells the gateway's clients: the budget (scope, period, resets_at) or the
# rate limit (scope, limit, retry_after_seconds) that refused.
_REFUSAL_DETAILS = ("scope", "period", "resets_at", "limit", "retry_after_seconds")


def usage_body(telemetry: dict, details: dict | None = None) -> dict:
    """What this request was billed (zero tokens for a cache hit), with the provider's
    usage details (cached and reasoning tokens) when it sent them."""
    tokens_in, tokens_out = telemetry["tokens_in"], telemetry["tokens_out"]
    usage = {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }
    if details and not telemetry["cache_hit"]:
        usage |= details
    return usage


def completion_body(result: OperationResult, *, legacy_functions: bool = False) -> dict:
    answer = result.answer
    passthrough = answer.passthrough if answer else {}
    if answer is not None and answer.choices:
        choices = [_choice(c, legacy_functions) for c in answer.choices]
    else:
        choices = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.content, "refusal": None},
                "logprobs": None,
                "finish_reason": result.finish_reason or "stop",
            }
        ]
    return {
        "id": completion_id(result.operation_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.telemetry["model_name"],
        "choices": choices,
        "usage": usage_body(result.telemetry, passthrough.get("usage")),
        "system_fingerprint": passthrough.get("system_fingerprint"),
        **({"service_tier": passthrough["service_tier"]} if "service_tier" in passthrough else {}),
    }


def _choice(choice: dict, legacy_functions: bool) -> dict:
    """A provider's choice as we answer it; asked with legacy `functions`, its first tool
    call comes back as `function_call`."""
    choice = {**choice, "logprobs": choice.get("logprobs")}
    message = choice.get("message") or {}
    calls = message.get("tool_calls")
    if legacy_functions and calls:
        message = {k: v for k, v in message.items() if k != "tool_calls"}
        message["function_call"] = calls[0]["function"]
        choice = {**choice, "message": message, "finish_reason": "function_call"}
    return choice


def aura_headers(
    *,
    operation_id: uuid.UUID,
    session_id: str,
    cache_hit: bool,
    budget: dict,
    cost=None,
    limits: dict[str, str] | None = None,
) -> dict[str, str]:
    """What happened, for clients that cannot see our body: operation, cache, cost and
    what remains of the session's budget (when it is capped); the rate limits' standing
    (`limits`: OpenAI's x-ratelimit-* headers, when a limit applies)."""
    headers = {
        **(limits or {}),
        "X-Aura-Operation-Id": str(operation_id),
        "X-Aura-Cache": "hit" if cache_hit else "miss",
    }
    if session_id.isascii() and session_id.isprintable():
        headers["X-Aura-Session-Id"] = session_id
    if cost is not None:
        headers["X-Aura-Cost"] = jsonable(cost)
    if budget.get("remaining_cost") is not None:
        headers["X-Aura-Budget-Remaining-Cost"] = jsonable(budget["remaining_cost"])
    if budget.get("remaining_tokens") is not None:
        headers["X-Aura-Budget-Remaining-Tokens"] = str(budget["remaining_tokens"])
    soft = [w for w in budget.get("warnings", ()) if w.endswith(SOFT_LIMIT)]
    if soft:  # header values are ASCII: anything else is escaped as JSON escapes it
        headers["X-Aura-Budget-Warning"] = (
            orjson.dumps("; ".join(soft))
            .decode()[1:-1]
            .encode("ascii", "backslashreplace")
            .decode()
        )
    return headers


def _sse(data: dict) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"  # compact UTF-8, as OpenAI sends


class _ChunkShaper:
    """Provider chunks (already OpenAI-shaped, Anthropic's translated by its adapter) keep
    their content under our id and model; replayed cache chunks are built here. Usage
    is taken off every chunk: the settled usage goes in one last chunk when asked for."""

    def __init__(self, stream: OperationStream, *, legacy_functions: bool = False) -> None:
        self.legacy_functions = legacy_functions
        self.id = completion_id(stream.operation_id)
        self.model = stream.model_name
        self.created = int(time.time())
        self.sent_role = False

    def shape(self, chunk: StreamChunk) -> dict | None:
        if chunk.raw is not None:
            if not chunk.raw.get("choices"):
                return None  # a usage-only chunk
            body = {**chunk.raw, "id": self.id, "model": self.model}
            body.pop("usage", None)
            if self.legacy_functions:
                body["choices"] = [_legacy_delta(c) for c in body["choices"]]
            self.sent_role = True
            return body
        delta: dict = {}
        if not self.sent_role:
            delta["role"] = "assistant"
            self.sent_role = True
        if chunk.delta or not chunk.finish_reason:
            delta["content"] = chunk.delta
        return self.body([{"index": 0, "delta": delta, "finish_reason": chunk.finish_reason}])

    def body(self, choices: list, **extra) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }


def _legacy_delta(choice: dict) -> dict:
    """A streamed tool call as the legacy `function_call` delta (the first call only)."""
    delta = choice.get("delta") or {}
    calls = delta.get("tool_calls")
    if choice.get("finish_reason") == "tool_calls":
        choice = {**choice, "finish_reason": "function_call"}
    if not calls:
        return choice
    rest = {k: v for k, v in delta.items() if k != "tool_calls"}
    first = [c for c in calls if c.get("index", 0) == 0]
    if first:
        rest["function_call"] = {
            k: v for k, v in (first[0].get("function") or {}).items() if k in ("name", "arguments")
        }
    return {**choice, "delta": rest}


async def sse_events(
    stream: OperationStream, *, include_usage: bool, legacy_functions: bool = False
) -> AsyncGenerator[bytes, None]:
    """The SSE body: each chunk as the provider sends it; then the usage chunk (when
    asked for) and `[DONE]`, or an error event when the provider failed mid-stream."""
    shaper = _ChunkShaper(stream, legacy_functions=legacy_functions)
    try:
        assert stream.chunks is not None  # a stream that started (no `error`) has them
        # aclosing: when the server closes this body early, the pipeline's iterator is
        # closed at once too, so the operation is settled now rather than at collection.
        async with aclosing(stream.chunks) as chunks:
            async for chunk in chunks:
                body = shaper.shape(chunk)
                if body is not None:
                    yield _sse(body)
    except Exception as exc:  # the operation could not be finished: say so, never a silent cut
        error = to_aura_error(exc)
        if error is None:
            logger.exception("stream of operation %s failed", stream.operation_id)
            error = errors.InternalError()
        yield _sse(error_body(error))
        return
    result = stream.result
    if result is None:  # not reachable: the iterator sets it when it ends
        yield _sse(error_body(errors.InternalError()))
        return
    if result.error is not None:
        yield _sse(error_body(result.error))
        return
    if include_usage:
        details = result.answer.passthrough.get("usage") if result.answer else None
        yield _sse(shaper.body([], usage=usage_body(result.telemetry, details)))
    yield DONE
