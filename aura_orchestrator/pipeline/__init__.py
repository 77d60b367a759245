"""The pipeline of one operation: the package that composes the apps. Read this module
top to bottom to follow one operation; each step lives in the module named beside it
(the same numbers as docs/ARCHITECTURE.md, "One operation").

    1  prepare        preset, route chain, named budget, cache key; session ledger and
                      cache lookup in one round trip                         plan.py
    2  [hit]          conclude with the cached answer: no provider, no charge ending.py
    3  single-flight  identical requests in flight wait for one leader       here
    4  reserve        the deadline, then the worst case on the ledger        plan.py
    5  providers      route by route: attempts within the deadline, retries,
                      fallback                                               chain.py
    6  schema         validate; once: settle, reserve again, ask again       schema.py
    7  conclude       settle (or release) + cache entry + telemetry row in one
                      commit, shielded, journaled if the database refuses    ending.py

Streams (`execute_stream`, streaming.py) take steps 1, 2, 4, then 5 until a first chunk,
relay the rest, and end in the same `conclude`. Embeddings (`OperationRequest.embedding`)
take every step but 6, their step 5 in embeddings.py. Types are in types.py.

Database work is three steps of the store (aura_orchestrator/store): prepare, reserve,
finish; on PostgreSQL each is one round trip on the event loop. No transaction is open
while a provider is called. Every outcome, refusals and cache hits included, leaves
exactly one telemetry row: every ending goes through `ending.conclude`, and `one_row`
turns whatever escapes into one.
"""

import asyncio
import time

from aura_orchestrator.caching.services import CachedAnswer
from aura_orchestrator.caching.singleflight import CacheLease, SingleFlight
from aura_orchestrator.pipeline.chain import call_chain
from aura_orchestrator.pipeline.embeddings import call_embeddings
from aura_orchestrator.pipeline.ending import conclude, one_row
from aura_orchestrator.pipeline.plan import prepare, reserve
from aura_orchestrator.pipeline.schema import validated_content
from aura_orchestrator.pipeline.streaming import OperationStream, execute_stream
from aura_orchestrator.pipeline.types import (
    EmbeddingInput,
    OperationRequest,
    OperationResult,
    PresetOverrides,
    Principal,
    Run,
)
from aura_orchestrator.providers.base import ChatMessage
from aura_orchestrator.store import get_store
from budgets.services import Caps
from presets.operation_types import OperationType
from presets.selectors import EffectivePreset

__all__ = [
    "Caps",
    "ChatMessage",
    "EmbeddingInput",
    "OperationRequest",
    "OperationResult",
    "OperationStream",
    "OperationType",
    "PresetOverrides",
    "Principal",
    "execute",
    "execute_stream",
]

_single_flight: SingleFlight[OperationResult] = SingleFlight()


async def execute(request: OperationRequest, *, principal: Principal) -> OperationResult:
    """Run one operation end to end. Never raises for an expected failure: the result
    carries the error, and telemetry records it."""
    run = Run(request=request, principal=principal)
    return await one_row(run, _execute(run))


async def _execute(run: Run) -> OperationResult:
    run.plan = plan = await prepare(request=run.request, principal=run.principal)  # 1
    if plan.cached is not None:  # 2
        return await conclude(run, cached=plan.cached)
    key_hash = plan.cache_key
    if key_hash is None:
        return await _call_and_settle(run)
    # 3: one leader per question; the others take its answer as a cache hit
    flight_key = f"{run.principal.project_id}:{key_hash}"
    result, led = await _single_flight.run(
        flight_key, lambda: _lead(run, plan.preset, key_hash, flight_key)
    )
    if led:
        return result
    if result.success:  # another request asked the same question a moment ago
        return await conclude(run, cached=_answer_of(result))
    return await _call_and_settle(run)


async def _call_and_settle(run: Run) -> OperationResult:
    """Steps 4 to 7, ending in a result whatever happens (a single-flight leader's
    failure is its followers' answer too)."""
    return await one_row(run, _call(run))


async def _call(run: Run) -> OperationResult:
    await reserve(run)  # 4
    if run.request.embedding is not None:
        await call_embeddings(run)  # 5: vectors, no text
        return await conclude(run, content="")  # 7
    completion = await call_chain(run, list(run.request.messages))  # 5
    content = completion.content
    schema = run.request.response_schema
    if schema is not None:  # 6
        content = await validated_content(run, completion, schema)
    return await conclude(run, content=content)  # 7


# --- Step 3: single-flight -----------------------------------------------------------------


async def _lead(
    run: Run, preset: EffectivePreset, key_hash: str, flight_key: str
) -> OperationResult:
    """The leader within this process. With a shared cache (Redis) it also takes a lease
    across processes: if another worker holds it, wait for that worker's cache entry
    (`key_hash`, the plan's cache key)."""
    if not CacheLease.shared():
        return await _call_and_settle(run)
    lease = CacheLease(
        flight_key, ttl_seconds=preset.timeout_seconds * (preset.max_retries + 1) + 5
    )
    if await lease.acquire():
        try:
            return await _call_and_settle(run)
        finally:
            await lease.release()
    answer = await _await_other_worker(run, lease, key_hash)
    if answer is not None:
        return await conclude(run, cached=answer)
    return await _call_and_settle(run)


async def _await_other_worker(run: Run, lease: CacheLease, key_hash: str) -> CachedAnswer | None:
    """Poll for the entry the lease holder will store; None once its lease is gone."""
    delay = 0.02
    deadline = time.monotonic() + lease.ttl
    while time.monotonic() < deadline:
        await asyncio.sleep(delay)
        answer = await get_store().cache_lookup(
            project_id=run.principal.project_id, key_hash=key_hash
        )
        if answer is not None:
            return answer
        if not await lease.held_by_other():
            return None
        delay = min(delay * 2, 0.2)
    return None


def _answer_of(result: OperationResult) -> CachedAnswer:
    """The leader's answer as its followers take it: as a cache hit."""
    t = result.telemetry
    return CachedAnswer(
        content=result.content or "",
        provider_name=t["provider_name"],
        model_name=t["model_name"],
        tokens_in=t["tokens_in"],
        tokens_out=t["tokens_out"],
        answer=result.answer if result.answer and result.answer.kept else None,
    )
