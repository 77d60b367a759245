"""Streaming operations (the gateways' `stream: true`): the same steps, a different step 5.

    1 prepare · 2 [hit] the cached answer replayed in chunks · 4 reserve
    5 the chain until a provider sends its first chunk (retries and fallback are only
      possible before anything reached the client), then the chunks relayed as they come,
      each within the timeout and all within the deadline
    6 the schema checked at the end (no repair: the text has been sent)
    7 conclude, however the relay ends: completed, the provider failing mid-way, or the
      consumer gone (what was consumed is charged)

Streams skip single-flight: each one has its own consumer.
"""

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, cast

from aura_orchestrator import errors
from aura_orchestrator.caching.services import Answer
from aura_orchestrator.catalog.selectors import Route
from aura_orchestrator.pipeline.chain import attempt_chain, final_error, usage_of, within
from aura_orchestrator.pipeline.ending import budget_body, conclude, one_row
from aura_orchestrator.pipeline.limits import limit_headers
from aura_orchestrator.pipeline.plan import prepare, reserve
from aura_orchestrator.pipeline.schema import streamed_schema_failure
from aura_orchestrator.pipeline.types import OperationRequest, OperationResult, Principal, Run
from aura_orchestrator.providers.base import (
    CompletionRequest,
    CompletionResult,
    ProviderAdapter,
    ProviderBadResponse,
    ProviderConfig,
    ProviderError,
    StreamChunk,
    Usage,
)
from aura_orchestrator.providers.chunks import ChoicesAssembler, passthrough_of, replay_deltas
from aura_orchestrator.providers.http import get_transport

logger = logging.getLogger(__name__)

# How much of a cached answer one replayed chunk carries.
_REPLAY_CHUNK_CHARS = 1024


@dataclass(slots=True, weakref_slot=True)
class OperationStream:
    """A streaming operation, handed back once its first chunk has arrived (or it failed).

    `error` set: nothing can be streamed (refused, or every attempt failed before a first
    chunk) and `result` holds the failed operation. Otherwise iterate `chunks` once: it
    relays the provider's chunks as they come (or replays a cached answer), and `result`
    is set when the iteration ends, however it ends: completed, the provider failing after
    the first chunk (`result.error`), or the consumer gone (closed or cancelled)."""

    operation_id: uuid.UUID
    was_cached: bool
    provider_name: str
    model_name: str
    budget: dict[str, Any]  # the session's ledger once the worst case is reserved
    chunks: AsyncGenerator[StreamChunk, None] | None = None
    error: errors.AuraError | None = None
    result: OperationResult | None = None
    headers: dict[str, str] = field(default_factory=dict)  # the rate limits' (x-ratelimit-*)


async def execute_stream(request: OperationRequest, *, principal: Principal) -> OperationStream:
    """Start one streaming operation: steps 1, 2 and 4, then step 5 until a provider sends
    its first chunk. Never raises for an expected failure: a failed start is a stream with
    its `error` and `result` (its row written, as `execute`'s)."""
    run = Run(request=request, principal=principal, streamed=True)
    started = await one_row(run, _start(run))
    if isinstance(started, OperationStream):
        return started
    return OperationStream(  # failed before anything could be streamed
        operation_id=run.operation_id,
        was_cached=False,
        provider_name=started.telemetry["provider_name"],
        model_name=started.telemetry["model_name"],
        budget=started.budget,
        error=started.error,
        result=started,
        headers=started.headers,
    )


async def _start(run: Run) -> OperationStream:
    run.plan = plan = await prepare(request=run.request, principal=run.principal)  # step 1
    if plan.cached is not None:  # step 2: the cached answer, replayed
        run.ttft_ms = run.elapsed_ms()
        result = await conclude(run, cached=plan.cached)
        route = run.route
        assert route is not None  # the cached answer's (conclude)
        return OperationStream(
            operation_id=run.operation_id,
            was_cached=True,
            provider_name=route.provider_name,
            model_name=route.model_name,
            budget=result.budget,
            chunks=_replay(result),
            result=result,
        )
    await reserve(run)  # step 4
    reservation, deadline = run.reservation, run.deadline
    assert reservation is not None and deadline is not None  # both set by reserve
    ledger = reservation.ledger
    capped = (ledger is not None and ledger.has_caps) or run.spend is not None
    budget = budget_body(run, ledger) if capped else {}
    first, upstream = await _open_stream(run)  # step 5, until the first chunk
    route = run.route
    assert route is not None  # the route that sent the first chunk (attempt_chain)
    stream = OperationStream(
        operation_id=run.operation_id,
        was_cached=False,
        provider_name=route.provider_name,
        model_name=route.model_name,
        budget=budget,
        headers=limit_headers(run),
    )
    relay = _relay(
        run,
        weakref.ref(stream),
        first,
        upstream,
        route=route,
        deadline=deadline,
        seconds=plan.preset.timeout_seconds,
    )
    # Prime it (no await inside, so no cancellation here): from now on, closing the
    # stream, or dropping it unread (a client gone before the first byte), settles it.
    await anext(relay)
    # Primed: the one None it yields is consumed; chunks follow.
    stream.chunks = cast("AsyncGenerator[StreamChunk, None]", relay)
    return stream


async def _replay(result: OperationResult) -> AsyncGenerator[StreamChunk, None]:
    """A cached answer as a stream: its text in pieces, or, when it holds more (tool
    calls, several choices, logprobs), every choice's deltas as OpenAI chunks."""
    content = result.content or ""
    answer = result.answer
    if answer is None or not answer.choices:
        for start in range(0, len(content), _REPLAY_CHUNK_CHARS):
            yield StreamChunk(content[start : start + _REPLAY_CHUNK_CHARS])
        yield StreamChunk("", finish_reason="stop")
        return
    created = int(time.time())
    fingerprint = answer.passthrough.get("system_fingerprint")
    for choice in answer.choices:
        for delta in replay_deltas(choice, chunk_chars=_REPLAY_CHUNK_CHARS):
            raw = {
                "object": "chat.completion.chunk",
                "created": created,
                "system_fingerprint": fingerprint,
                "choices": [delta],
            }
            text = delta["delta"].get("content") if delta["index"] == 0 else None
            yield StreamChunk(text or "", finish_reason=delta["finish_reason"], raw=raw)


async def _open_stream(run: Run) -> tuple[StreamChunk, AsyncGenerator[StreamChunk, None]]:
    """Like `call_chain`, but an attempt succeeds when its first chunk arrives: retries
    and fallback are only possible before anything was sent to the client."""

    async def first_chunk(
        adapter: ProviderAdapter, config: ProviderConfig, request: CompletionRequest
    ) -> tuple[StreamChunk, AsyncGenerator[StreamChunk, None]]:
        upstream = adapter.stream(get_transport(), config, request)
        try:
            return await anext(upstream), upstream
        except StopAsyncIteration:
            raise ProviderBadResponse(
                f"{config.name}: the stream ended before its first chunk", provider=config.name
            ) from None

    return await attempt_chain(run, list(run.request.messages), first_chunk)


async def _relay(
    run: Run,
    stream_ref: "weakref.ref[OperationStream]",
    first: StreamChunk,
    upstream: AsyncGenerator[StreamChunk, None],
    *,
    route: Route,
    deadline: float,
    seconds: float,
) -> AsyncGenerator[StreamChunk | None, None]:
    """Hand each chunk on as it arrives, each within `seconds` (the preset's timeout) and
    all by `deadline` (the run's), then conclude, however the iteration ends. The first
    step only primes it (yields None); the stream is held by weak reference so that an
    unread stream is collected, and its generator finalized, without waiting for the
    cycle collector. `route` is the one that sent `first`."""
    parts: list[str] = []
    assembler = ChoicesAssembler()  # tool calls, other choices, logprobs: for cache and row
    passthrough: dict[str, Any] = {}  # the provider's fingerprint and usage details
    reported: Usage | None = None
    error: errors.AuraError | None = None
    completed = False
    chunk = first
    try:
        yield None
        while True:
            if chunk.usage is not None:
                reported = chunk.usage
                if chunk.raw is not None:
                    passthrough = passthrough_of(chunk.raw)
            run.finish_reason = chunk.finish_reason or run.finish_reason
            if chunk.delta:
                if run.ttft_ms is None:
                    run.ttft_ms = run.elapsed_ms()
                parts.append(chunk.delta)
            if chunk.raw is not None:
                assembler.feed(chunk.raw)
            yield chunk
            try:
                # Each chunk within the preset's timeout (idle), all of them within the
                # operation's deadline (total).
                chunk = await within(deadline, anext(upstream), seconds=seconds, route=route)
            except StopAsyncIteration:
                completed = True
                break
    except ProviderError as exc:  # after the first chunk: no retry, the stream ends in error
        attempt = run.attempts[-1]
        attempt.update(outcome=type(exc).__name__, status=exc.status, error=str(exc)[:300])
        error = final_error(run, exc)
    finally:
        if not completed and error is None:
            error = errors.ClientDisconnected()
        # The consumer may be cancelled (client gone): the upstream's close and the
        # conclusion run in a task of their own, which a second cancellation cannot
        # interrupt (conclude shields only its write).
        choices = assembler.choices()
        if choices or passthrough:
            run.answer = Answer(choices=choices, passthrough=passthrough)
        end = asyncio.ensure_future(
            _end_stream(run, stream_ref, upstream, route, "".join(parts), reported, error)
        )
        await asyncio.shield(end)


async def _end_stream(
    run: Run,
    stream_ref: "weakref.ref[OperationStream]",
    upstream: AsyncGenerator[StreamChunk, None],
    route: Route,
    content: str,
    reported: Usage | None,
    error: errors.AuraError | None,
) -> None:
    """Close the upstream, count what was consumed (the provider's usage, else counted),
    check the schema (step 6), then conclude (step 7): charged in full, cached when
    complete and valid."""
    try:
        await upstream.aclose()  # stop the provider generating what nobody will read
    except Exception:  # cleanup of a broken upstream must never prevent settlement
        logger.debug("closing the upstream stream of %s failed", run.operation_id, exc_info=True)
    consumed = CompletionResult(
        content=content,
        usage=reported,
        model=route.model_name,
        finish_reason=run.finish_reason,
        raw={},
        choices=run.answer.choices if run.answer else (),
    )
    run.usage.add(usage_of(consumed, route, list(run.request.messages), run.request.tools))
    if error is None:
        error = streamed_schema_failure(run, content)
    result = await conclude(run, content=content, error=error)
    stream = stream_ref()
    if stream is not None:  # gone when nobody read it
        stream.result = result
