"""Step 1 (prepare) and step 4 (reserve): what an operation is, may cost and may take,
and holding that on the session's budget.

    prepare   preset (+ overrides), route chain, named budget, prompt size, cache key:
              from the memo on the loop (a db() thread only when something must load);
              then the store's prepare step (session ledger + cache lookup), skipped when
              the reservation can read the caps itself
    reserve   the operation's deadline, then the worst case (prompt + n x max_tokens at
              the dearest price of the chain) with a reservation that lives until the
              deadline + margin
"""

import asyncio
from dataclasses import replace
from decimal import Decimal
from typing import Any, cast

from django.conf import settings

from aura_orchestrator import errors
from aura_orchestrator.caching.config_cache import memo_or_db
from aura_orchestrator.caching.keys import cache_key, embedding_key, request_material
from aura_orchestrator.catalog.selectors import Route, route_chain_resolve
from aura_orchestrator.catalog.tokens import (
    count_chat_tokens,
    count_input_tokens,
    count_message_tokens,
)
from aura_orchestrator.deadline import Lifetimes, operation_seconds, reservation_seconds
from aura_orchestrator.money import cache_adjustment, cost_micros
from aura_orchestrator.pipeline import limits
from aura_orchestrator.pipeline.types import (
    EmbeddingInput,
    OperationRequest,
    Plan,
    Principal,
    Run,
)
from aura_orchestrator.pipeline.wire import capable_routes, embedding_routes
from aura_orchestrator.providers.base import Refusal
from aura_orchestrator.store import get_store
from budgets.caps import has_money_caps
from budgets.limits import access_rules_for
from budgets.reserving import Reservation
from budgets.selectors import unpriced_model_message
from budgets.services import Caps
from budgets.spending import Level, SpendAsk, SpendState, levels_for
from presets.selectors import EffectivePreset, preset_get

ZERO = Decimal(0)

# --- Step 1: preset, chain, session, cache lookup ------------------------------------------


async def prepare(*, request: OperationRequest, principal: Principal) -> Plan:
    """Step 1. The configuration from the memo on the loop (a thread when something must
    be loaded: no query ever runs on the event loop), then the store's prepare step: the
    session's ledger and the cache lookup. A request without cache, without caps of its
    own and with every route priced skips that step: its reservation reads the session's
    caps on the locked row (`reserve`), one round trip instead of two."""
    plan = await memo_or_db(plan_of, request=request, principal=principal)
    if (
        plan.cache_key is None
        and plan.caps is None
        and plan.chain
        and all(r.priced for r in plan.chain)
    ):
        return plan  # plan.session is None until reserve
    await prepare_session(plan, principal=principal, request=request)
    return plan


async def prepare_session(plan: Plan, *, principal: Principal, request: OperationRequest) -> None:
    plan.session, plan.cached = await get_store().prepare(
        project_id=principal.project_id,
        session_id=request.session_id,
        caps=plan.caps,
        cache_key=plan.cache_key,
    )


def plan_of(*, request: OperationRequest, principal: Principal) -> Plan:
    ov = request.overrides
    preset = preset_get(operation_type=request.operation_type).with_overrides(
        temperature=ov.temperature,
        top_p=ov.top_p,
        max_tokens=ov.max_tokens,
        timeout_seconds=ov.timeout_seconds,
        max_retries=ov.max_retries,
    )
    caps = Caps.named(name=request.budget_name) if request.budget_name else request.caps
    chain = allowed_routes(
        route_chain_resolve(
            provider_names=list(request.providers) if request.providers else None,
            model=request.model,
        ),
        request=request,
        principal=principal,
    )
    if request.embedding is not None:
        return embedding_plan(request, request.embedding, preset=preset, caps=caps, chain=chain)
    chain, skipped = capable_routes(request, preset, chain)
    messages = [(m.role, m.content) for m in request.messages]
    if request.plain:
        prompt_tokens = max(
            count_message_tokens(messages, model=m) for m in {r.model_name for r in chain}
        )
    else:
        prompt_tokens = max(
            count_chat_tokens(request.messages, tools=request.tools, model=m, kind=k)
            for m, k in {(r.model_name, r.kind) for r in chain}
        )
    key = None
    if uses_cache(request, preset):
        extra: dict[str, Any] = {"stop": request.stop, "response_format": request.response_format}
        if request.provider_headers:  # a beta may change the answer
            extra["headers"] = list(request.provider_headers)
        if not request.plain:
            extra |= request_material(
                messages=request.messages,
                tools=request.tools,
                tool_choice=request.tool_choice,
                parallel_tool_calls=request.parallel_tool_calls,
                n=request.n,
                extra=request.extra,
            )
        key = cache_key(
            chain=[f"{r.provider_name}/{r.model_name}" for r in chain],
            operation_type=request.operation_type.value,
            messages=messages,
            temperature=preset.temperature,
            top_p=preset.top_p,
            max_tokens=preset.max_tokens,
            response_schema=request.response_schema,
            extra=extra,
        )
    return Plan(
        preset=preset,
        chain=chain,
        caps=caps,
        cache_key=key,
        cache_ttl=request.cache_ttl_seconds or preset.cache_ttl_seconds,
        prompt_tokens=prompt_tokens,
        max_output_tokens=preset.max_tokens * request.choices,
        skipped=skipped,
    )


def uses_cache(request: OperationRequest, preset: EffectivePreset) -> bool:
    return preset.cache_enabled if request.enable_cache is None else request.enable_cache


def allowed_routes(
    chain: list[Route], *, request: OperationRequest, principal: Principal
) -> list[Route]:
    """The routes the caller may use (the allow-lists of its limit sets, budgets/limits.py):
    an operation type refused is a 403 `forbidden`; a model or provider asked for by name
    and refused, or a chain left empty, a 403 `model_not_allowed`; all before anything is
    reserved or called."""
    rules = access_rules_for(
        project_id=principal.project_id,
        api_key_id=principal.api_key_id,
        end_user=request.end_user,
    )
    if not rules.lists:
        return chain
    refused = rules.refusal("operation types", request.operation_type.value)
    if refused is not None:
        raise errors.Forbidden(refused)
    named = request.model.rpartition("/")[2] if request.model else None
    refused = rules.refusal("models", named) if named is not None else None
    for provider in request.providers or ():
        refused = refused or rules.refusal("providers", provider)
    if refused is not None:
        raise errors.ModelNotAllowed(refused)
    allowed = [r for r in chain if rules.allows_route(r.provider_name, r.model_name)]
    if not allowed:
        first = chain[0] if chain else None
        why = first and (
            rules.refusal("providers", first.provider_name)
            or rules.refusal("models", first.model_name)
        )
        raise errors.ModelNotAllowed(why or "No route of the chain is allowed for this key.")
    return allowed


def embedding_plan(
    request: OperationRequest,
    embedding: EmbeddingInput,
    *,
    preset: EffectivePreset,
    caps: Caps | None,
    chain: list[Route],
) -> Plan:
    """An embeddings operation: the routes whose kind embeds, its input counted as the
    prompt, nothing produced (a worst case of no output tokens). An embedding model has
    no output price (the catalogue says 0; an operator may leave it empty): it is priced
    by its input price alone."""
    chain, skipped = embedding_routes(chain)
    chain = [r if r.output_price is not None else replace(r, output_price=ZERO) for r in chain]
    items = embedding.items
    key = None
    if uses_cache(request, preset):
        key = embedding_key(
            chain=[f"{r.provider_name}/{r.model_name}" for r in chain],
            items=items,
            dimensions=embedding.dimensions,
            encoding_format=embedding.encoding_format,
            extra=request.extra,
        )
    return Plan(
        preset=preset,
        chain=chain,
        caps=caps,
        cache_key=key,
        cache_ttl=request.cache_ttl_seconds or preset.cache_ttl_seconds,
        prompt_tokens=max(
            count_input_tokens(items, model=m) for m in {r.model_name for r in chain}
        ),
        max_output_tokens=0,
        skipped=skipped,
    )


# --- Costs, deadline, lifetimes ------------------------------------------------------------


def cost_of(
    route: Route, *, tokens_in: int, tokens_out: int, cached_in: int = 0, cache_written: int = 0
) -> int | None:
    """Micro-dollars of actual usage at the route's prices, its cache reads and writes at
    the model's cache prices; None when the model has no price."""
    input_price, output_price = route.input_price, route.output_price
    if input_price is None or output_price is None:  # not route.priced
        return None
    return cost_micros(
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        input_price=input_price,
        output_price=output_price,
        cached_in=cached_in,
        cached_input_price=route.cached_input_price,
        cache_written=cache_written,
        cache_write_price=route.cache_write_price,
    )


def cache_savings_of(route: Route, *, tokens_in: int, read: int, written: int) -> Decimal:
    """Micro-dollars prompt caching saved on this usage (negative: its writes cost more
    than its reads saved); 0 when the model has no input price."""
    if route.input_price is None:
        return Decimal(0)
    return cache_adjustment(
        tokens_in=tokens_in,
        input_price=route.input_price,
        cached_in=read,
        cached_input_price=route.cached_input_price,
        cache_written=written,
        cache_write_price=route.cache_write_price,
    )


def worst_cost(route: Route, *, tokens_in: int, tokens_out: int) -> int | None:
    """Micro-dollars of a worst case: the prompt at `Route.worst_input_price` (no cache
    read, every token possibly a cache write); None when the model has no price."""
    input_price, output_price = route.worst_input_price, route.output_price
    if input_price is None or output_price is None:  # not route.priced
        return None
    return cost_micros(
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        input_price=input_price,
        output_price=output_price,
    )


def worst_costs(plan: Plan, *, tokens_in: int) -> list[int | None]:
    """Each route's price of the worst case (None: an unpriced route)."""
    return [
        worst_cost(r, tokens_in=tokens_in, tokens_out=plan.max_output_tokens) for r in plan.chain
    ]


def lifetimes() -> Lifetimes:
    aura = settings.AURA
    return Lifetimes(
        reservation_ttl=aura["BUDGET_RESERVATION_TTL_SECONDS"],
        margin=aura["BUDGET_RESERVATION_MARGIN_SECONDS"],
        max_retry_after=aura["MAX_RETRY_AFTER_SECONDS"],
    )


def deadline_seconds(run: Run, plan: Plan) -> float:
    """The operation's whole time (deadline.py): every route, attempt and retry, twice
    with a schema repair."""
    preset = plan.preset
    return operation_seconds(
        timeout_seconds=preset.timeout_seconds,
        max_retries=preset.max_retries,
        routes=len(plan.chain),
        schema_repair=run.request.response_schema is not None and not run.streamed,
        lifetimes=lifetimes(),
    )


# --- Step 4: reserve the worst case --------------------------------------------------------


async def reserve(run: Run, *, extra_prompt_tokens: int = 0) -> None:
    """Step 4. Reserve prompt + max_tokens at the dearest price in the chain. Under a hard
    cost cap, unpriced routes are dropped from the chain (they could not be held to it).
    The first reservation fixes the operation's deadline."""
    plan = run.plan
    assert plan is not None  # set by prepare (step 1)
    tokens_in = plan.prompt_tokens + extra_prompt_tokens
    tokens = tokens_in + plan.max_output_tokens
    first = run.deadline is None
    if first:
        run.deadline = asyncio.get_running_loop().time() + deadline_seconds(run, plan)
        run.attempts.extend(skipped_attempt(route, refusal) for route, refusal in plan.skipped)
    expires_in = reservation_seconds(remaining=run.time_left(), lifetimes=lifetimes())
    if first:  # the rate limits, before anything is held (a refusal holds nothing)
        await limits.admit(run, plan, tokens=tokens, in_flight_seconds=expires_in)
    levels = await spend_levels(run, plan)
    if any(level.rule.hard and level.rule.max_cost_micros is not None for level in levels):
        _priced_only(plan, levels[0])
    spend = None
    if levels:  # held with the session's reservation, all or nothing
        known = [c for c in worst_costs(plan, tokens_in=tokens_in) if c is not None]
        spend = SpendAsk(levels=levels, cost_micros=max(known, default=0))
    reservation = None
    if plan.session is None:  # every route is priced (see prepare): no None among the costs
        costs = cast("list[int]", worst_costs(plan, tokens_in=tokens_in))
        reservation = await reserve_existing(
            run,
            plan,
            tokens=tokens,
            cost_micros=max(costs),
            expires_in=expires_in,
            spend=spend,
        )
    if reservation is None:
        session = plan.session
        assert session is not None  # read by prepare, or by reserve_existing for a new one
        hard_cost_cap = session.enforce_hard_limits and has_money_caps(session)
        if hard_cost_cap:
            priced = [r for r in plan.chain if r.priced]
            plan.chain = priced or plan.chain[:1]
        known = [c for c in worst_costs(plan, tokens_in=tokens_in) if c is not None]
        reservation = await get_store().reserve(
            session=session,
            operation_id=run.operation_id,
            tokens=tokens,
            cost_micros=None if (not known and hard_cost_cap) else max(known, default=0),
            model_name=plan.chain[0].model_name,
            expires_in=expires_in,
            spend=spend,
        )
    run.reservation = reservation
    run.warnings.extend(w for w in reservation.warnings if w not in run.warnings)
    if spend is not None and spend.written is not None:
        reservation.spend = spend.written.hold
        run.spend = SpendState(levels=levels, totals=spend.written.totals)
        run.warnings.extend(w for w in run.spend.soft_warnings() if w not in run.warnings)


async def spend_levels(run: Run, plan: Plan) -> list[Level]:
    """The spend budgets that apply (budgets/spending.py): from the memo on the loop, a
    db() thread when the project's budgets must be loaded. None for most projects."""
    return await memo_or_db(
        levels_for,
        project_id=run.principal.project_id,
        api_key_id=run.principal.api_key_id,
        end_user=run.request.end_user,
        routes=[(route.provider_name, route.model_name) for route in plan.chain],
    )


def _priced_only(plan: Plan, level: Level) -> None:
    """A hard cost cap of a spend budget holds only priced routes (as the session's)."""
    priced = [route for route in plan.chain if route.priced]
    if not priced:
        problem = unpriced_model_message(plan.chain[0].model_name)
        raise errors.BudgetExceeded(
            f"Budget exceeded: {problem}.", details={**level.details(), "caps": [problem]}
        )
    plan.chain = priced


def skipped_attempt(route: Route, refusal: Refusal) -> dict[str, Any]:
    """A route of the chain that cannot take the request, as telemetry's attempts show it."""
    return {
        "provider": route.provider_name,
        "model": route.model_name,
        "latency_ms": 0,
        "outcome": "skipped",
        "status": None,
        "error": f"{refusal.param}: {refusal.reason}"[:300],
    }


async def reserve_existing(
    run: Run,
    plan: Plan,
    *,
    tokens: int,
    cost_micros: int,
    expires_in: float,
    spend: SpendAsk | None,
) -> Reservation | None:
    """Reserve without having read the session (see `prepare`). None for a new session,
    which then takes the two steps (created by prepare, then reserved)."""
    request = run.request
    try:
        reservation = await get_store().reserve_existing(
            project_id=run.principal.project_id,
            session_id=request.session_id,
            operation_id=run.operation_id,
            tokens=tokens,
            cost_micros=cost_micros,
            model_name=plan.chain[0].model_name,
            expires_in=expires_in,
            spend=spend,
        )
    except errors.BudgetExceeded:
        # Refused: the response still shows the session's budget.
        await prepare_session(plan, principal=run.principal, request=request)
        raise
    if reservation is None:
        await prepare_session(plan, principal=run.principal, request=request)
        return None
    plan.session = reservation.ledger
    return reservation


async def settle_so_far(run: Run) -> None:
    """Charge what the providers produced until now and drop the reservation (a schema
    repair, step 6, then reserves its own worst case)."""
    usage = run.unsettled
    reservation = run.reservation
    assert reservation is not None  # held since reserve (step 4)
    route = run.route
    await get_store().settle(
        reservation=reservation,
        tokens=usage.tokens,
        cost_micros=usage.cost_micros,
        count_operation=False,
        served=(route.provider_name, route.model_name) if route else None,
    )
    run.reservation = None
    run.charged.add(usage)
