"""The pipeline of one operation, the one module that composes the apps.

    resolve preset and route chain → cache lookup → reserve the worst case on the budget
    → call providers (timeout, retries with backoff, fallback) → validate the JSON schema
    → settle actual usage → store in cache → write telemetry

Database work is three steps of the store (aura_orchestrator/store): prepare (ledger
and cache lookup), reserve, finish (settle, cache, telemetry, ledger in one commit); on
PostgreSQL each is one round trip on the event loop. No transaction is open while a
provider is called. Every outcome, refusals and cache hits included, leaves one
telemetry row.
"""

import asyncio
import json
import logging
import os
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

import jsonschema
import referencing
import referencing.exceptions
from django.conf import settings
from django.utils import timezone

from aura_orchestrator import errors, metrics
from aura_orchestrator.caching.config_cache import MemoMiss, memo_only
from aura_orchestrator.caching.keys import cache_key
from aura_orchestrator.caching.services import CachedAnswer
from aura_orchestrator.caching.singleflight import CacheLease, SingleFlight
from aura_orchestrator.catalog.selectors import Route, route_chain_resolve
from aura_orchestrator.catalog.tokens import count_message_tokens, count_tokens
from aura_orchestrator.db import db
from aura_orchestrator.dbhealth import DATABASE_UNAVAILABLE, unavailable
from aura_orchestrator.deadline import Lifetimes, operation_seconds, reservation_seconds
from aura_orchestrator.money import cost_micros, micros_to_usd
from aura_orchestrator.pgtext import is_storable, storable
from aura_orchestrator.providers.base import (
    ChatMessage,
    CompletionRequest,
    CompletionResult,
    ProviderAdapter,
    ProviderBadResponse,
    ProviderConfig,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    StreamChunk,
    Usage,
)
from aura_orchestrator.providers.http import get_transport
from aura_orchestrator.providers.registry import get_adapter
from aura_orchestrator.providers.retry import backoff_delay
from aura_orchestrator.store import CacheWrite, Finish, get_store
from aura_orchestrator.store.base import Finished
from aura_orchestrator.store.journal import finish_once, journal
from budgets.models import LlmSession
from budgets.selectors import budget_status
from budgets.services import Caps, Reservation
from presets.operation_types import OperationType
from presets.selectors import EffectivePreset, preset_get

logger = logging.getLogger(__name__)

T = TypeVar("T")


# --- What comes in and what goes out ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the project (tenant) and the API key."""

    project_id: int
    api_key_id: int | None = None


@dataclass(frozen=True, slots=True)
class PresetOverrides:
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    timeout_seconds: float | None = None
    max_retries: int | None = None


@dataclass(frozen=True, slots=True)
class OperationRequest:
    session_id: str
    operation_type: OperationType
    messages: tuple[ChatMessage, ...]
    enable_cache: bool | None = None
    cache_ttl_seconds: int | None = None
    caps: Caps | None = None
    budget_name: str | None = None
    overrides: PresetOverrides = PresetOverrides()
    providers: tuple[str, ...] | None = None
    model: str | None = None
    response_schema: dict | None = None
    # OpenAI-gateway extras, passed through to the provider.
    stop: tuple[str, ...] | None = None
    response_format: dict | None = None
    user: str | None = None
    source: str = "api"


@dataclass(slots=True)
class OperationResult:
    operation_id: uuid.UUID
    success: bool
    content: str | None
    was_cached: bool
    error: errors.AuraError | None
    telemetry: dict
    budget: dict
    finish_reason: str | None = None

    @property
    def status(self) -> int:
        return 200 if self.error is None else self.error.status


# --- Internal state of one run -----------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    preset: EffectivePreset
    chain: list[Route]
    caps: Caps | None
    cache_key: str | None
    cache_ttl: int
    prompt_tokens: int
    session: LlmSession | None = None
    cached: CachedAnswer | None = None


@dataclass(slots=True)
class _Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cost_micros: int = 0

    def add(self, other: "_Usage") -> None:
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.cost_micros += other.cost_micros

    def minus(self, other: "_Usage") -> "_Usage":
        return _Usage(
            tokens_in=self.tokens_in - other.tokens_in,
            tokens_out=self.tokens_out - other.tokens_out,
            cost_micros=self.cost_micros - other.cost_micros,
        )

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass(slots=True)
class _Run:
    request: OperationRequest
    principal: Principal
    operation_id: uuid.UUID = field(default_factory=uuid.uuid4)
    started_at: object = field(default_factory=timezone.now)
    t0: float = field(default_factory=time.perf_counter)
    plan: _Plan | None = None
    reservation: Reservation | None = None
    attempts: list[dict] = field(default_factory=list)
    usage: _Usage = field(default_factory=_Usage)  # everything the providers reported
    charged: _Usage = field(default_factory=_Usage)  # the part already settled on the ledger
    route: Route | None = None
    warnings: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    streamed: bool = False
    ttft_ms: int | None = None  # streams: time to the first text delta
    deadline: float | None = None  # the loop's clock; set when it first reserves
    database_down: bool = False  # it failed for want of a database: its finish is journaled
    finishing: bool = False  # its finish has begun: it writes the one row

    def time_left(self) -> float:
        return self.deadline - asyncio.get_running_loop().time()

    @property
    def retry_count(self) -> int:
        return max(0, len(self.attempts) - 1)

    @property
    def unsettled(self) -> _Usage:
        return self.usage.minus(self.charged)


_single_flight: SingleFlight["OperationResult"] = SingleFlight()
_NO_REMOTE_SCHEMAS = referencing.Registry()


# --- The pipeline --------------------------------------------------------------------


async def execute(request: OperationRequest, *, principal: Principal) -> OperationResult:
    """Run one operation end to end. Never raises for an expected failure: the result
    carries the error, and telemetry records it."""
    run = _Run(request=request, principal=principal)
    return await _one_row(run, _execute(run))


async def _execute(run: _Run) -> OperationResult:
    run.plan = await _prepare(request=run.request, principal=run.principal)
    if run.plan.cached is not None:
        return await _finish_cached(run, run.plan.cached)
    if run.plan.cache_key is None:
        return await _call_and_settle(run)
    flight_key = f"{run.principal.project_id}:{run.plan.cache_key}"
    result, led = await _single_flight.run(flight_key, lambda: _lead(run, flight_key))
    if led:
        return result
    if result.success:  # another request asked the same question a moment ago
        return await _finish_cached(run, _answer_of(result))
    return await _call_and_settle(run)


async def _one_row(run: _Run, work: Awaitable[OperationResult]) -> OperationResult:
    """`work`'s result; however it fails, the operation still ends with its one row: an
    exception becomes a failed result (`_expected_error`), a cancellation is recorded
    before it goes on (`_abandon`). A failure of the finish itself is not finished twice."""
    try:
        return await work
    except Exception as exc:
        if run.finishing:  # the finish itself failed (the journal too): nothing more to do
            raise
        return await _finish_failed(run, _expected_error(run, exc))
    except BaseException as exc:
        await _abandon(run, exc)
        raise


def _expected_error(run: _Run, exc: Exception) -> errors.AuraError:
    """The error an exception means for the operation's result: ours as raised, a
    database that cannot be reached as 503; anything else is a bug (internal_error)."""
    if isinstance(exc, errors.AuraError):
        return exc
    if isinstance(exc, DATABASE_UNAVAILABLE):
        run.database_down = True
        return unavailable(exc)
    logger.error("operation %s failed unexpectedly", run.operation_id, exc_info=exc)
    return errors.InternalError()


async def _lead(run: _Run, flight_key: str) -> OperationResult:
    """The leader within this process. With a shared cache (Redis) it also takes a lease
    across processes: if another worker holds it, wait for that worker's cache entry."""
    if not CacheLease.shared():
        return await _call_and_settle(run)
    preset = run.plan.preset
    lease = CacheLease(
        flight_key, ttl_seconds=preset.timeout_seconds * (preset.max_retries + 1) + 5
    )
    if await lease.acquire():
        try:
            return await _call_and_settle(run)
        finally:
            await lease.release()
    answer = await _await_other_worker(run, lease)
    if answer is not None:
        return await _finish_cached(run, answer)
    return await _call_and_settle(run)


async def _await_other_worker(run: _Run, lease: CacheLease) -> CachedAnswer | None:
    """Poll for the entry the lease holder will store; None once its lease is gone."""
    delay = 0.02
    deadline = time.monotonic() + lease.ttl
    while time.monotonic() < deadline:
        await asyncio.sleep(delay)
        answer = await get_store().cache_lookup(
            project_id=run.principal.project_id, key_hash=run.plan.cache_key
        )
        if answer is not None:
            return answer
        if not await lease.held_by_other():
            return None
        delay = min(delay * 2, 0.2)
    return None


async def _call_and_settle(run: _Run) -> OperationResult:
    return await _one_row(run, _call(run))


async def _call(run: _Run) -> OperationResult:
    await _reserve(run)
    completion = await _call_chain(run, list(run.request.messages))
    content = completion.content
    if run.request.response_schema is not None:
        content = await _validated_content(run, completion)
    return await _finish_success(run, content)


async def _abandon(run: _Run, exc: BaseException) -> None:
    """Cancelled (the client gone, the server stopping): the operation still gets its row
    (its reservation handed back, what was consumed charged) before the cancellation goes
    on. The finish is shielded, so a second cancellation cannot interrupt it."""
    if run.finishing:  # the finish had begun: it writes the row
        return
    error: errors.AuraError = errors.ClientDisconnected(
        "The client disconnected before the operation ended."
    )
    if not isinstance(exc, asyncio.CancelledError):
        error = _expected_error(run, exc)  # KeyboardInterrupt, SystemExit
    try:
        await _finish_failed(run, error)
    except asyncio.CancelledError:
        pass  # the shielded finish goes on; the original exception is what matters
    except Exception:
        logger.exception("the row of abandoned operation %s could not be written", run.operation_id)


# --- Step 1: preset, chain, session, cache lookup ------------------------------------------


async def _prepare(*, request: OperationRequest, principal: Principal) -> _Plan:
    """The configuration from the memo on the loop (a thread when something must be
    loaded: no query ever runs on the event loop), then the store's prepare step: the
    session's ledger and the cache lookup. A request without cache, without caps of its
    own and with every route priced skips that step: its reservation reads the session's
    caps on the locked row (`_reserve`), one round trip instead of two."""
    try:
        with memo_only():
            plan = _plan_of(request=request)
    except MemoMiss:
        plan = await db(_plan_of, request=request)
    if (
        plan.cache_key is None
        and plan.caps is None
        and plan.chain
        and all(r.priced for r in plan.chain)
    ):
        return plan  # plan.session is None until _reserve
    await _prepare_session(plan, principal=principal, request=request)
    return plan


async def _prepare_session(plan: _Plan, *, principal: Principal, request: OperationRequest) -> None:
    plan.session, plan.cached = await get_store().prepare(
        project_id=principal.project_id,
        session_id=request.session_id,
        caps=plan.caps,
        cache_key=plan.cache_key,
    )


def _plan_of(*, request: OperationRequest) -> _Plan:
    ov = request.overrides
    preset = preset_get(operation_type=request.operation_type).with_overrides(
        temperature=ov.temperature,
        top_p=ov.top_p,
        max_tokens=ov.max_tokens,
        timeout_seconds=ov.timeout_seconds,
        max_retries=ov.max_retries,
    )
    caps = Caps.named(name=request.budget_name) if request.budget_name else request.caps
    chain = route_chain_resolve(
        provider_names=list(request.providers) if request.providers else None,
        model=request.model,
    )
    messages = [(m.role, m.content) for m in request.messages]
    prompt_tokens = max(
        count_message_tokens(messages, model=m) for m in {r.model_name for r in chain}
    )
    use_cache = preset.cache_enabled if request.enable_cache is None else request.enable_cache
    key = None
    if use_cache:
        key = cache_key(
            chain=[f"{r.provider_name}/{r.model_name}" for r in chain],
            operation_type=request.operation_type.value,
            messages=messages,
            temperature=preset.temperature,
            top_p=preset.top_p,
            max_tokens=preset.max_tokens,
            response_schema=request.response_schema,
            extra={"stop": request.stop, "response_format": request.response_format},
        )
    return _Plan(
        preset=preset,
        chain=chain,
        caps=caps,
        cache_key=key,
        cache_ttl=request.cache_ttl_seconds or preset.cache_ttl_seconds,
        prompt_tokens=prompt_tokens,
    )


# --- Step 2: reserve the worst case ------------------------------------------------------


def _cost_of(route: Route, *, tokens_in: int, tokens_out: int) -> int | None:
    """Micro-dollars at the route's prices (of a worst case or of actual usage); None
    when the model has no price."""
    if not route.priced:
        return None
    return cost_micros(
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        input_price=route.input_price,
        output_price=route.output_price,
    )


async def _reserve(run: _Run, *, extra_prompt_tokens: int = 0) -> None:
    """Reserve prompt + max_tokens at the dearest price in the chain. Under a hard cost
    cap, unpriced routes are dropped from the chain (they could not be held to it)."""
    plan = run.plan
    tokens_in = plan.prompt_tokens + extra_prompt_tokens
    tokens = tokens_in + plan.preset.max_tokens
    if run.deadline is None:
        run.deadline = asyncio.get_running_loop().time() + _operation_seconds(run)
    expires_in = reservation_seconds(remaining=run.time_left(), lifetimes=_lifetimes())
    reservation = None
    if plan.session is None:  # every route is priced (see _prepare)
        reservation = await _reserve_existing(
            run,
            tokens=tokens,
            cost_micros=max(_worst_costs(plan, tokens_in=tokens_in)),
            expires_in=expires_in,
        )
    if reservation is None:
        session = plan.session
        hard_cost_cap = session.enforce_hard_limits and (
            session.max_cost_per_operation_micros is not None
            or session.max_cost_per_session_micros is not None
        )
        if hard_cost_cap:
            priced = [r for r in plan.chain if r.priced]
            plan.chain = priced or plan.chain[:1]
        known = [c for c in _worst_costs(plan, tokens_in=tokens_in) if c is not None]
        reservation = await get_store().reserve(
            session=session,
            operation_id=run.operation_id,
            tokens=tokens,
            cost_micros=None if (not known and hard_cost_cap) else max(known, default=0),
            model_name=plan.chain[0].model_name,
            expires_in=expires_in,
        )
    run.reservation = reservation
    run.warnings.extend(w for w in reservation.warnings if w not in run.warnings)


def _worst_costs(plan: _Plan, *, tokens_in: int) -> list[int | None]:
    """Each route's price of the worst case (None: an unpriced route)."""
    return [_cost_of(r, tokens_in=tokens_in, tokens_out=plan.preset.max_tokens) for r in plan.chain]


def _lifetimes() -> Lifetimes:
    aura = settings.AURA
    return Lifetimes(
        reservation_ttl=aura["BUDGET_RESERVATION_TTL_SECONDS"],
        margin=aura["BUDGET_RESERVATION_MARGIN_SECONDS"],
        max_retry_after=aura["MAX_RETRY_AFTER_SECONDS"],
    )


def _operation_seconds(run: _Run) -> float:
    preset = run.plan.preset
    return operation_seconds(
        timeout_seconds=preset.timeout_seconds,
        max_retries=preset.max_retries,
        routes=len(run.plan.chain),
        schema_repair=run.request.response_schema is not None and not run.streamed,
        lifetimes=_lifetimes(),
    )


async def _reserve_existing(
    run: _Run, *, tokens: int, cost_micros: int, expires_in: float
) -> Reservation | None:
    """Reserve without having read the session (see `_prepare`). None for a new session,
    which then takes the two steps (created by prepare, then reserved)."""
    plan, request = run.plan, run.request
    try:
        reservation = await get_store().reserve_existing(
            project_id=run.principal.project_id,
            session_id=request.session_id,
            operation_id=run.operation_id,
            tokens=tokens,
            cost_micros=cost_micros,
            model_name=plan.chain[0].model_name,
            expires_in=expires_in,
        )
    except errors.BudgetExceeded:
        # Refused: the response still shows the session's budget.
        await _prepare_session(plan, principal=run.principal, request=request)
        raise
    if reservation is None:
        await _prepare_session(plan, principal=run.principal, request=request)
        return None
    plan.session = reservation.ledger
    return reservation


# --- Step 3: providers, with retries and fallback ----------------------------------------


def _provider_config(route: Route) -> ProviderConfig:
    # Secrets are read from the environment at call time; the database holds only the
    # variable's name.
    secret = os.environ.get(route.api_key_env) if route.api_key_env else None
    return ProviderConfig(
        name=route.provider_name, kind=route.kind, base_url=route.base_url, api_key=secret
    )


def _completion_request(run: _Run, route: Route, messages: list[ChatMessage]) -> CompletionRequest:
    preset = run.plan.preset
    request = run.request
    response_format = request.response_format
    if response_format is None and request.response_schema is not None and route.kind == "openai":
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": request.response_schema},
        }
    return CompletionRequest(
        model=route.model_name,
        messages=tuple(messages),
        temperature=preset.temperature,
        top_p=preset.top_p,
        max_tokens=preset.max_tokens,
        stop=request.stop,
        response_format=response_format,
        user=request.user,
        timeout_seconds=preset.timeout_seconds,
    )


def _record_attempt(run: _Run, route: Route, started: float, exc: ProviderError | None) -> None:
    run.attempts.append(
        {
            "provider": route.provider_name,
            "model": route.model_name,
            "latency_ms": round((time.perf_counter() - started) * 1000),
            "outcome": "ok" if exc is None else type(exc).__name__,
            "status": None if exc is None else exc.status,
            "error": None if exc is None else storable(str(exc)[:300]),
        }
    )


async def _within(run: _Run, awaitable: Awaitable[T], *, seconds: float, route: Route) -> T:
    """`awaitable`, cut at `seconds` from now or at the operation's deadline, whichever
    comes first: the timeout bounds the whole call (headers, body, every byte of a
    dripping upstream), not each read."""
    loop = asyncio.get_running_loop()
    at = min(loop.time() + seconds, run.deadline)
    try:
        async with asyncio.timeout_at(at):
            return await awaitable
    except TimeoutError:
        if at >= run.deadline:
            raise _deadline_passed(route) from None
        raise ProviderTimeout(
            f"{route.provider_name}: no answer within {seconds:g}s", provider=route.provider_name
        ) from None


async def _attempt_chain(
    run: _Run,
    messages: list[ChatMessage],
    attempt: Callable[[ProviderAdapter, ProviderConfig, CompletionRequest], Awaitable[T]],
) -> T:
    """Each route in turn, each with up to max_retries retries on retryable errors
    (backoff with jitter, Retry-After honoured); a non-retryable error moves on to the
    next route at once. The final error is classified by the last failure. Every attempt
    is recorded; `run.route` is the route that served."""
    max_retries = run.plan.preset.max_retries
    max_retry_after = settings.AURA["MAX_RETRY_AFTER_SECONDS"]
    last_error: ProviderError | None = None
    for route in run.plan.chain:
        adapter = get_adapter(route.kind)
        config = _provider_config(route)
        provider_request = _completion_request(run, route, messages)
        for n in range(max_retries + 1):
            if run.time_left() <= 0:
                raise _final_error(run, last_error or _deadline_passed(route))
            started = time.perf_counter()
            try:
                result = await _within(
                    run,
                    attempt(adapter, config, provider_request),
                    seconds=provider_request.timeout_seconds,
                    route=route,
                )
            except ProviderError as exc:
                _record_attempt(run, route, started, exc)
                last_error = exc
                if not exc.retryable or n == max_retries:
                    break
                delay = backoff_delay(
                    n, retry_after=exc.retry_after, max_retry_after=max_retry_after
                )
                if delay >= run.time_left():  # the retry could not happen in time
                    break
                await asyncio.sleep(delay)
            else:
                _record_attempt(run, route, started, None)
                run.route = route
                return result
    raise _final_error(run, last_error)


async def _call_chain(run: _Run, messages: list[ChatMessage]) -> CompletionResult:
    """One complete answer from the chain (see `_attempt_chain`), its usage counted."""

    def complete(adapter, config, request):
        return adapter.complete(get_transport(), config, request)

    result = await _attempt_chain(run, messages, complete)
    run.finish_reason = result.finish_reason
    run.usage.add(_usage_of(result, run.route, messages))
    return result


def _usage_of(result: CompletionResult, route: Route, messages: list[ChatMessage]) -> _Usage:
    """Bill from the provider's reported usage; count ourselves when it reports none."""
    if result.usage is not None:
        tokens_in, tokens_out = result.usage.tokens_in, result.usage.tokens_out
    else:
        tokens_in = count_message_tokens(
            [(m.role, m.content) for m in messages], model=route.model_name
        )
        tokens_out = count_tokens(result.content, model=route.model_name)
    cost = _cost_of(route, tokens_in=tokens_in, tokens_out=tokens_out) or 0
    return _Usage(tokens_in=tokens_in, tokens_out=tokens_out, cost_micros=cost)


def _deadline_passed(route: Route) -> ProviderTimeout:
    return ProviderTimeout(
        f"{route.provider_name}: the operation's deadline passed", provider=route.provider_name
    )


def _final_error(run: _Run, last: ProviderError | None) -> errors.AuraError:
    if last is None:
        return errors.ProviderFailed("No provider could be tried.")
    providers = ", ".join(dict.fromkeys(a["provider"] for a in run.attempts))
    message = f"{len(run.attempts)} attempt(s) on {providers} failed; last: {last}"
    if isinstance(last, ProviderRateLimited):
        return errors.RateLimited(message, retry_after=last.retry_after)
    if isinstance(last, ProviderTimeout):
        return errors.ProviderTimedOut(message)
    return errors.ProviderFailed(message)


# --- Step 4: JSON-schema validation, with one corrective retry ---------------------------


def _schema_error(content: str, schema: dict) -> str | None:
    text = content.strip()
    if text.startswith("```"):  # tolerate a fenced answer: ```json … ```
        text = text.split("\n", 1)[-1].rsplit("```", 1)[0]
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return f"the answer is not valid JSON ({exc})"
    # An empty registry: a schema's references never make us fetch anything (the edge
    # refuses non-local ones); a recursive schema over a deep answer fails, it never raises.
    validator = jsonschema.validators.validator_for(schema)(schema, registry=_NO_REMOTE_SCHEMAS)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    except (RecursionError, referencing.exceptions.Unresolvable) as exc:
        return f"the answer could not be checked against the schema ({type(exc).__name__})"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {where}: {error.message}"


async def _validated_content(run: _Run, first: CompletionResult) -> str:
    """The content if it validates; else ask once more with the error appended (charged
    to the same budget), then fail with schema_validation_failed."""
    schema = run.request.response_schema
    problem = _schema_error(first.content, schema)
    if problem is None:
        return first.content
    # Charge the first answer now, then hold the worst case of the corrective call.
    first_usage = run.unsettled
    await get_store().settle(
        reservation=run.reservation,
        tokens=first_usage.tokens,
        cost_micros=first_usage.cost_micros,
        count_operation=False,
    )
    run.reservation = None
    run.charged.add(first_usage)
    correction = (
        f"Your previous answer did not match the required JSON schema: {problem}. "
        "Reply again with only a JSON document that matches the schema."
    )
    messages = [
        *run.request.messages,
        ChatMessage(role="assistant", content=first.content),
        ChatMessage(role="user", content=correction),
    ]
    extra = count_tokens(first.content + correction, model=run.plan.chain[0].model_name) + 8
    await _reserve(run, extra_prompt_tokens=extra)
    second = await _call_chain(run, messages)
    problem = _schema_error(second.content, schema)
    if problem is not None:
        raise errors.SchemaValidationFailed(
            f"The answer does not match the response schema after one corrective retry: {problem}.",
            details={"content": second.content[:2000]},
        )
    return second.content


# --- Step 5: settle, cache, telemetry (one DB unit) ----------------------------------------


def _telemetry_fields(run: _Run, *, success: bool, cache_hit: bool, error=None) -> dict:
    plan = run.plan
    preset = plan.preset if plan else None
    completed_at = timezone.now()
    route = run.route or (plan.chain[0] if plan and plan.chain else None)
    return {
        "operation_id": run.operation_id,
        "project_id": run.principal.project_id,
        "api_key_id": run.principal.api_key_id,
        "session_id": run.request.session_id,
        "operation_type": run.request.operation_type.value,
        "provider_name": route.provider_name if route else "",
        "model_name": route.model_name if route else "",
        "tokens_in": run.usage.tokens_in,
        "tokens_out": run.usage.tokens_out,
        "retry_count": run.retry_count,
        "latency_ms": round((time.perf_counter() - run.t0) * 1000),
        "success": success,
        "cache_hit": cache_hit,
        "estimated_cost": micros_to_usd(run.usage.cost_micros),
        "started_at": run.started_at,
        "completed_at": completed_at,
        "temperature": preset.temperature if preset else None,
        "top_p": preset.top_p if preset else None,
        "max_tokens": preset.max_tokens if preset else None,
        "error_code": error.code if error else "",
        "error_message": storable(error.message[:2000]) if error else "",
        "attempts": run.attempts,
        "source": run.request.source,
        "time_to_first_token_ms": run.ttft_ms,
        "streamed": run.streamed,
    }


async def _finish(
    run: _Run,
    *,
    success: bool,
    cache_hit: bool,
    error: errors.AuraError | None,
    content: str | None,
    charge: _Usage | None,
) -> tuple[dict, dict]:
    """Settle or release, store in cache, record telemetry, read the ledger back: one
    step of the store, one commit; returns (telemetry, budget). Shielded: once begun it
    completes even if the caller is cancelled, and the run writes no other row."""
    run.finishing = True
    fields = _telemetry_fields(run, success=success, cache_hit=cache_hit, error=error)
    plan = run.plan
    reservation, run.reservation = run.reservation, None
    finish = Finish(
        reservation=reservation,
        charge=None if charge is None else (charge.tokens, charge.cost_micros),
        session_pk=plan.session.pk if plan and plan.session else None,
        cache=_cache_write(run, success=success, cache_hit=cache_hit, content=content),
        telemetry=fields,
        release_unknown=run.database_down,
    )
    write = _write_finish(finish, database_down=run.database_down)
    finished = await asyncio.shield(asyncio.ensure_future(write))
    if finished is None:  # journaled: the ledger shown is the one the reservation left
        run.warnings.append(
            "The database is unavailable: this operation's charge and record are kept and "
            "will be written when it is back; the budget shown does not include it yet."
        )
        finished = Finished(ledger=reservation.ledger if reservation else None)
    metrics.record_operation(fields | {"budget_overrun": finished.budget_overrun})
    return fields, _budget_body(run, finished.ledger)


# A finish the database refuses is tried again after these pauses, then journaled.
_FINISH_RETRY_DELAYS = (0.05, 0.25)


async def _write_finish(finish: Finish, *, database_down: bool) -> Finished | None:
    """The store's finish; on failure tried again (idempotently: the first try may have
    committed with its reply lost), then the journal, which keeps the charge and its row
    together until the database takes them (None). An operation that already failed for
    want of a database goes to the journal at once, not after the pool's timeouts."""
    operation_id = finish.telemetry["operation_id"]
    if not database_down:
        try:
            return await get_store().finish(finish)
        except Exception as exc:
            logger.warning("the finish of %s failed (%s); trying again", operation_id, exc)
        for delay in _FINISH_RETRY_DELAYS:
            await asyncio.sleep(delay)
            try:
                return await db(finish_once, finish)
            except DATABASE_UNAVAILABLE:
                continue
            except Exception:  # not an outage: a bug; the journal keeps it for an operator
                logger.exception("the finish of %s failed", operation_id)
                break
    await journal.append(finish)
    return None


def _cache_write(
    run: _Run, *, success: bool, cache_hit: bool, content: str | None
) -> CacheWrite | None:
    plan = run.plan
    if not (success and not cache_hit and plan and plan.cache_key and run.route):
        return None
    if content and not is_storable(content):  # kept as the provider sent it, or not at all
        return None
    return CacheWrite(
        project_id=run.principal.project_id,
        key_hash=plan.cache_key,
        operation_type=run.request.operation_type.value,
        answer=CachedAnswer(
            content=content or "",
            provider_name=run.route.provider_name,
            model_name=run.route.model_name,
            tokens_in=run.usage.tokens_in,
            tokens_out=run.usage.tokens_out,
        ),
        ttl_seconds=plan.cache_ttl,
    )


def _budget_body(run: _Run, session: LlmSession | None) -> dict:
    """The session's budget for the response, from the ledger the store read back."""
    if session is None:
        return {
            "session_id": run.request.session_id,
            "total_tokens_used": 0,
            "total_cost_accrued": Decimal("0.000000"),
            "operation_count": 0,
            "warnings": run.warnings,
        }
    status = budget_status(session)
    return {
        "session_id": status.session_id,
        "total_tokens_used": status.total_tokens_used,
        "total_cost_accrued": status.total_cost_accrued,
        "operation_count": status.operation_count,
        "tokens_reserved": status.tokens_reserved,
        "cost_reserved": status.cost_reserved,
        "remaining_tokens": status.remaining_tokens,
        "remaining_cost": status.remaining_cost,
        "warnings": run.warnings,
    }


def _result(run: _Run, fields: dict, budget: dict, **kwargs) -> OperationResult:
    telemetry = {
        k: v for k, v in fields.items() if k not in ("project_id", "api_key_id", "attempts")
    }
    telemetry["total_tokens"] = fields["tokens_in"] + fields["tokens_out"]
    telemetry["attempts"] = fields["attempts"]
    return OperationResult(
        operation_id=run.operation_id, telemetry=telemetry, budget=budget, **kwargs
    )


async def _finish_success(run: _Run, content: str) -> OperationResult:
    charge = run.unsettled
    fields, budget = await _finish(
        run, success=True, cache_hit=False, error=None, content=content, charge=charge
    )
    return _result(
        run,
        fields,
        budget,
        success=True,
        content=content,
        was_cached=False,
        error=None,
        finish_reason=run.finish_reason,
    )


async def _finish_cached(run: _Run, answer: CachedAnswer) -> OperationResult:
    """A cache hit: no provider call, no budget charge; telemetry says where it came from."""
    run.route = next(
        (
            r
            for r in run.plan.chain
            if r.provider_name == answer.provider_name and r.model_name == answer.model_name
        ),
        Route(answer.provider_name, "", "", "", answer.model_name, None, None, None),
    )
    fields, budget = await _finish(
        run, success=True, cache_hit=True, error=None, content=answer.content, charge=None
    )
    return _result(
        run,
        fields,
        budget,
        success=True,
        content=answer.content,
        was_cached=True,
        error=None,
        finish_reason="stop",
    )


async def _finish_failed(run: _Run, error: errors.AuraError) -> OperationResult:
    # Tokens a provider already produced (a failed schema retry) are charged.
    charge = run.unsettled if run.unsettled.tokens else None
    fields, budget = await _finish(
        run, success=False, cache_hit=False, error=error, content=None, charge=charge
    )
    return _result(run, fields, budget, success=False, content=None, was_cached=False, error=error)


def _answer_of(result: OperationResult) -> CachedAnswer:
    t = result.telemetry
    return CachedAnswer(
        content=result.content or "",
        provider_name=t["provider_name"],
        model_name=t["model_name"],
        tokens_in=t["tokens_in"],
        tokens_out=t["tokens_out"],
    )


# --- Streaming (the gateway's `stream: true`) ----------------------------------------------

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
    budget: dict  # the session's ledger once the worst case is reserved
    chunks: AsyncIterator[StreamChunk] | None = None
    error: errors.AuraError | None = None
    result: OperationResult | None = None


async def execute_stream(request: OperationRequest, *, principal: Principal) -> OperationStream:
    """Start one streaming operation: preset, cache lookup, reserve, then the chain with
    retries and fallback until a provider sends its first chunk. Never raises for an
    expected failure. Streams skip single-flight: each one has its own consumer."""
    run = _Run(request=request, principal=principal, streamed=True)
    try:
        run.plan = await _prepare(request=request, principal=principal)
        if run.plan.cached is not None:
            run.ttft_ms = round((time.perf_counter() - run.t0) * 1000)
            result = await _finish_cached(run, run.plan.cached)
            return OperationStream(
                operation_id=run.operation_id,
                was_cached=True,
                provider_name=run.route.provider_name,
                model_name=run.route.model_name,
                budget=result.budget,
                chunks=_replay(result.content or ""),
                result=result,
            )
        await _reserve(run)
        ledger = run.reservation.ledger
        budget = _budget_body(run, ledger) if ledger is not None and ledger.has_caps else {}
        first, upstream = await _open_stream(run)
    except Exception as exc:
        if run.finishing:  # a cache hit's finish failed (the journal too): as `_one_row`
            raise
        error = _expected_error(run, exc)
        result = await _finish_failed(run, error)
        return OperationStream(
            operation_id=run.operation_id,
            was_cached=False,
            provider_name=result.telemetry["provider_name"],
            model_name=result.telemetry["model_name"],
            budget=result.budget,
            error=error,
            result=result,
        )
    except BaseException as exc:
        await _abandon(run, exc)
        raise
    stream = OperationStream(
        operation_id=run.operation_id,
        was_cached=False,
        provider_name=run.route.provider_name,
        model_name=run.route.model_name,
        budget=budget,
    )
    relay = _relay(run, weakref.ref(stream), first, upstream)
    # Prime it (no await inside, so no cancellation here): from now on, closing the
    # stream, or dropping it unread (a client gone before the first byte), settles it.
    await anext(relay)
    stream.chunks = relay
    return stream


async def _replay(content: str) -> AsyncIterator[StreamChunk]:
    for start in range(0, len(content), _REPLAY_CHUNK_CHARS):
        yield StreamChunk(content[start : start + _REPLAY_CHUNK_CHARS])
    yield StreamChunk("", finish_reason="stop")


async def _open_stream(run: _Run) -> tuple[StreamChunk, AsyncIterator[StreamChunk]]:
    """Like `_call_chain`, but an attempt succeeds when its first chunk arrives: retries
    and fallback are only possible before anything was sent to the client."""

    async def first_chunk(adapter, config, request):
        upstream = adapter.stream(get_transport(), config, request)
        try:
            return await anext(upstream), upstream
        except StopAsyncIteration:
            raise ProviderBadResponse(
                f"{config.name}: the stream ended before its first chunk", provider=config.name
            ) from None

    return await _attempt_chain(run, list(run.request.messages), first_chunk)


async def _relay(
    run: _Run,
    stream_ref: "weakref.ref[OperationStream]",
    first: StreamChunk,
    upstream: AsyncIterator[StreamChunk],
) -> AsyncIterator[StreamChunk | None]:
    """Hand each chunk on as it arrives, then settle, however the iteration ends. The
    first step only primes it (yields None); the stream is held by weak reference so that
    an unread stream is collected, and its generator finalized, without waiting for the
    cycle collector."""
    parts: list[str] = []
    reported: Usage | None = None
    error: errors.AuraError | None = None
    completed = False
    chunk = first
    try:
        yield None
        while True:
            reported = chunk.usage or reported
            run.finish_reason = chunk.finish_reason or run.finish_reason
            if chunk.delta:
                if run.ttft_ms is None:
                    run.ttft_ms = round((time.perf_counter() - run.t0) * 1000)
                parts.append(chunk.delta)
            yield chunk
            try:
                # Each chunk within the preset's timeout (idle), all of them within the
                # operation's deadline (total).
                chunk = await _within(
                    run, anext(upstream), seconds=run.plan.preset.timeout_seconds, route=run.route
                )
            except StopAsyncIteration:
                completed = True
                break
    except ProviderError as exc:  # after the first chunk: no retry, the stream ends in error
        attempt = run.attempts[-1]
        attempt.update(outcome=type(exc).__name__, status=exc.status, error=str(exc)[:300])
        error = _final_error(run, exc)
    finally:
        if not completed and error is None:
            error = errors.ClientDisconnected()
        # The consumer may be cancelled (client gone): settle in a task of its own, which a
        # second cancellation cannot interrupt.
        end = asyncio.ensure_future(
            _end_stream(run, stream_ref, upstream, "".join(parts), reported, error)
        )
        await asyncio.shield(end)


async def _end_stream(
    run: _Run,
    stream_ref: "weakref.ref[OperationStream]",
    upstream: AsyncIterator[StreamChunk],
    content: str,
    reported: Usage | None,
    error: errors.AuraError | None,
) -> None:
    """Close the upstream, charge what was consumed (the provider's usage, else counted),
    validate the schema, store in cache when complete, write telemetry."""
    try:
        await upstream.aclose()  # stop the provider generating what nobody will read
    except Exception:  # cleanup of a broken upstream must never prevent settlement
        logger.debug("closing the upstream stream of %s failed", run.operation_id, exc_info=True)
    route = run.route
    consumed = CompletionResult(
        content=content,
        usage=reported,
        model=route.model_name,
        finish_reason=run.finish_reason,
        raw={},
    )
    run.usage.add(_usage_of(consumed, route, list(run.request.messages)))
    if error is None and run.request.response_schema is not None:
        problem = _schema_error(content, run.request.response_schema)
        if problem is not None:
            error = errors.SchemaValidationFailed(
                f"The streamed answer does not match the response schema: {problem}.",
                details={"content": content[:2000]},
            )
    success = error is None
    fields, budget = await _finish(
        run,
        success=success,
        cache_hit=False,
        error=error,
        content=content,
        charge=run.unsettled,
    )
    result = _result(
        run,
        fields,
        budget,
        success=success,
        content=content,
        was_cached=False,
        error=error,
        finish_reason=run.finish_reason,
    )
    stream = stream_ref()
    if stream is not None:  # gone when nobody read it
        stream.result = result
