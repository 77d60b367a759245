"""Every constraint applied to a draft, each change named with its reason.

Order: safe ranges → max_tokens cap → cost (max_tokens lowered until a typical prompt's
worst case fits `max_cost` on every route of the chain, as the budget would reserve it)
→ latency (timeout and retries fitted so that the worst case of the whole fallback chain,
backoff included, stays within `max_latency_seconds`). Constraints always win over the
source; when no parameters can meet them, `ConstraintsUnsatisfiable` (422) says why.
"""

import math
from dataclasses import dataclass
from decimal import Decimal

from aura_orchestrator.catalog.selectors import Route
from aura_orchestrator.money import cost_micros, micros_to_usd, usd_to_micros
from aura_orchestrator.optimization.types import (
    SAFE_MAX_RETRIES,
    SAFE_MAX_TOKENS,
    SAFE_TEMPERATURE,
    SAFE_TIMEOUT_SECONDS,
    SAFE_TOP_P,
    Constraints,
    ConstraintsUnsatisfiable,
    Draft,
    Suggestion,
)
from aura_orchestrator.providers.retry import backoff_delay
from presets.selectors import EffectivePreset

# Each constraint that forces a change makes the suggestion a little less sure.
CONSTRAINED_CONFIDENCE_FACTOR = 0.9


@dataclass(frozen=True, slots=True)
class Context:
    """What the fitting needs to know besides the draft."""

    operation_type: str
    preset: EffectivePreset
    routes: tuple[Route, ...]  # the chain a request would use, first choice first
    typical_prompt_tokens: int
    typical_from_history: bool = False

    @property
    def model(self) -> str | None:
        return self.routes[0].model_name if self.routes else None


class _Ceiling:
    """An rng whose uniform() is its upper bound: the longest backoff the pipeline waits."""

    def uniform(self, low: float, high: float) -> float:
        return high


def backoff_ceiling(retries: int) -> float:
    """Longest total backoff of `retries` retries (the pipeline's own delay function)."""
    ceiling = _Ceiling()  # backoff_delay only calls the rng's uniform()
    return sum(backoff_delay(attempt, rng=ceiling) for attempt in range(retries))


def worst_case_latency(*, timeout_seconds: float, max_retries: int, routes: int) -> float:
    """Every route of the chain times out on every attempt, with the longest backoff."""
    per_route = (max_retries + 1) * timeout_seconds + backoff_ceiling(max_retries)
    return max(1, routes) * per_route


def _floor_tenth(x: float) -> float:
    return math.floor(x * 10 + 1e-9) / 10


def _clamp(value, bounds):
    low, high = bounds
    return min(max(value, low), high)


def _safe(draft: Draft) -> tuple[dict, list[str]]:
    values = {
        "temperature": round(_clamp(float(draft.temperature), SAFE_TEMPERATURE), 2),
        "top_p": round(_clamp(float(draft.top_p), SAFE_TOP_P), 2),
        "max_tokens": int(_clamp(int(draft.max_tokens), SAFE_MAX_TOKENS)),
        "timeout_seconds": _floor_tenth(_clamp(float(draft.timeout_seconds), SAFE_TIMEOUT_SECONDS)),
        "max_retries": int(_clamp(int(draft.max_retries), SAFE_MAX_RETRIES)),
    }
    bounds = {
        "temperature": SAFE_TEMPERATURE,
        "top_p": SAFE_TOP_P,
        "max_tokens": SAFE_MAX_TOKENS,
        "timeout_seconds": SAFE_TIMEOUT_SECONDS,
        "max_retries": SAFE_MAX_RETRIES,
    }
    notes = [
        f"{name} {getattr(draft, name)} → {values[name]}: outside the safe range "
        f"{bounds[name][0]} to {bounds[name][1]}."
        for name in values
        if not bounds[name][0] <= getattr(draft, name) <= bounds[name][1]
    ]
    return values, notes


def _prices(route: Route) -> tuple[Decimal, Decimal]:
    """A priced route's worst-case input and output prices, as the budget reserves them
    (callers check `route.priced` first)."""
    input_price = route.worst_input_price
    if input_price is None or route.output_price is None:
        raise ValueError(f"{route.model_name} has no price")
    return input_price, route.output_price


def max_tokens_within_cost(*, route: Route, prompt_tokens: int, cap_micros: int) -> int:
    """The most output tokens whose worst case, with the prompt, costs at most the cap;
    -1 when the prompt alone costs more."""
    input_price, output_price = _prices(route)
    prompt_cost = Decimal(prompt_tokens) * input_price
    if prompt_cost > cap_micros:
        return -1
    if output_price == 0:
        return SAFE_MAX_TOKENS[1]
    n = int((Decimal(cap_micros) - prompt_cost) // output_price)
    n = min(n, SAFE_MAX_TOKENS[1])
    while n > 0 and _cost(route, prompt_tokens, n) > cap_micros:  # guard against rounding
        n -= 1
    return n


def _cost(route: Route, prompt_tokens: int, tokens_out: int) -> int:
    input_price, output_price = _prices(route)
    return cost_micros(
        tokens_in=prompt_tokens,
        tokens_out=tokens_out,
        input_price=input_price,
        output_price=output_price,
    )


def worst_case_cost(*, routes, prompt_tokens: int, max_tokens: int) -> Decimal | None:
    """The dearest priced route's cost of a prompt plus max_tokens out (None: no price)."""
    costs = [_cost(r, prompt_tokens, max_tokens) for r in routes if r.priced]
    return micros_to_usd(max(costs)) if costs else None


def _fit_cost(values: dict, constraints: Constraints, ctx: Context) -> str | None:
    if constraints.max_cost is None:
        return None
    if not ctx.routes:
        raise ConstraintsUnsatisfiable(
            "max_cost cannot be checked: no provider is configured, so no price is known.",
            details={"field": "constraints.max_cost"},
        )
    unpriced = [r.model_name for r in ctx.routes if not r.priced]
    if unpriced:
        raise ConstraintsUnsatisfiable(
            f"max_cost cannot be checked: model(s) {', '.join(unpriced)} have no known price; "
            "set their prices in the admin.",
            details={"field": "constraints.max_cost", "models": unpriced},
        )
    cap = usd_to_micros(constraints.max_cost)
    prompt = ctx.typical_prompt_tokens
    limits = {
        r: max_tokens_within_cost(route=r, prompt_tokens=prompt, cap_micros=cap) for r in ctx.routes
    }
    route, limit = min(limits.items(), key=lambda item: item[1])
    if limit < 1:
        prompt_cost = micros_to_usd(_cost(route, prompt, 1))
        raise ConstraintsUnsatisfiable(
            f"max_cost ${constraints.max_cost} is below the cost of a typical {prompt}-token "
            f"prompt with a single output token on {route.model_name} (${prompt_cost}).",
            details={"field": "constraints.max_cost", "minimum_cost": str(prompt_cost)},
        )
    if values["max_tokens"] <= limit:
        return None
    before = values["max_tokens"]
    values["max_tokens"] = limit
    cost = micros_to_usd(_cost(route, prompt, limit))
    return (
        f"max_tokens {before} → {limit}: the worst case of a typical {prompt}-token prompt on "
        f"{route.model_name} (${route.input_price}/M in, ${route.output_price}/M out) is "
        f"${cost}, within max_cost ${constraints.max_cost}."
    )


def _fit_latency(values: dict, constraints: Constraints, ctx: Context, draft: Draft) -> str | None:
    budget = constraints.max_latency_seconds
    if budget is None:
        return None
    routes = max(1, len(ctx.routes))
    timeout, retries = values["timeout_seconds"], values["max_retries"]
    if worst_case_latency(timeout_seconds=timeout, max_retries=retries, routes=routes) <= budget:
        return None
    per_route = budget / routes
    floor = max(SAFE_TIMEOUT_SECONDS[0], min(timeout, draft.min_useful_timeout))
    chosen = None
    # Drop retries before cutting the timeout below what calls need to finish.
    for r in range(retries, -1, -1):
        fitted = min(timeout, _floor_tenth((per_route - backoff_ceiling(r)) / (r + 1)))
        if fitted >= floor:
            chosen = (fitted, r)
            break
    if chosen is None:
        fitted = min(timeout, _floor_tenth(per_route))
        if fitted < SAFE_TIMEOUT_SECONDS[0]:
            raise ConstraintsUnsatisfiable(
                f"max_latency_seconds {budget} cannot hold one attempt of at least "
                f"{SAFE_TIMEOUT_SECONDS[0]} s on each of the {routes} route(s) of the chain.",
                details={"field": "constraints.max_latency_seconds", "routes": routes},
            )
        chosen = (fitted, 0)
    values["timeout_seconds"], values["max_retries"] = chosen
    changed = [f"timeout_seconds {timeout} → {chosen[0]}"] if chosen[0] != timeout else []
    if chosen[1] != retries:
        changed.append(f"max_retries {retries} → {chosen[1]}")
    attempts = "one attempt" if chosen[1] == 0 else f"{chosen[1] + 1} attempts with backoff"
    chain = f" on each of {routes} routes" if routes > 1 else ""
    worst = worst_case_latency(timeout_seconds=chosen[0], max_retries=chosen[1], routes=routes)
    return (
        f"{', '.join(changed)}: {attempts} of {chosen[0]} s{chain}, worst case "
        f"{worst:.2f} s, within max_latency_seconds {budget}."
    )


def fit(draft: Draft, *, constraints: Constraints, ctx: Context) -> Suggestion:
    values, notes = _safe(draft)
    confidence = draft.confidence
    changes: list[str | None] = []
    cap = constraints.max_tokens
    if cap is not None and values["max_tokens"] > cap:
        changes.append(f"max_tokens {values['max_tokens']} → {cap}: the max_tokens constraint.")
        values["max_tokens"] = cap
    changes.append(_fit_cost(values, constraints, ctx))
    changes.append(_fit_latency(values, constraints, ctx, draft))
    forced = [f for f in changes if f]
    confidence *= CONSTRAINED_CONFIDENCE_FACTOR ** len(forced)
    if not forced and constraints != Constraints(prioritize_quality=constraints.prioritize_quality):
        forced.append("Every constraint is met without further changes.")
    return Suggestion(
        operation_type=ctx.operation_type,
        confidence=round(max(0.05, min(confidence, 0.99)), 2),
        source=draft.source,
        adjustments=(*draft.notes, *notes, *forced),
        model=ctx.model,
        sample_size=draft.sample_size,
        worst_case_cost=worst_case_cost(
            routes=ctx.routes,
            prompt_tokens=ctx.typical_prompt_tokens,
            max_tokens=values["max_tokens"],
        ),
        worst_case_latency_seconds=round(
            worst_case_latency(
                timeout_seconds=values["timeout_seconds"],
                max_retries=values["max_retries"],
                routes=len(ctx.routes),
            ),
            3,
        ),
        typical_prompt_tokens=ctx.typical_prompt_tokens,
        **values,
    )
