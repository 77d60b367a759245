"""Rule-based suggestions: start from the preset, then every constraint wins."""

import math
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aura_orchestrator.optimization.fitting import backoff_ceiling, worst_case_latency
from aura_orchestrator.optimization.rules import DEFAULT_PROMPT_TOKENS
from aura_orchestrator.optimization.suggest import OptimizeRequest, suggest_offline
from aura_orchestrator.optimization.types import (
    SAFE_MAX_RETRIES,
    SAFE_TEMPERATURE,
    SAFE_TOP_P,
    Constraints,
    ConstraintsUnsatisfiable,
)
from presets.operation_types import SEED_PRESETS, OperationType

pytestmark = pytest.mark.django_db


def suggest(op="planning", project_id=None, provider=None, **constraints):
    request = OptimizeRequest(
        operation_type=OperationType(op), constraints=Constraints(**constraints), provider=provider
    )
    return suggest_offline(request=request, project_id=project_id).suggestion


def test_without_constraints_the_suggestion_is_the_preset(provider):
    """No constraint, no history: the preset's values, source `rules`, with a rationale."""
    s = suggest("scene_analysis")
    seed = SEED_PRESETS[OperationType.SCENE_ANALYSIS]
    assert (s.temperature, s.top_p, s.max_tokens) == (seed.temperature, seed.top_p, 800)
    assert (s.timeout_seconds, s.max_retries) == (seed.timeout_seconds, seed.max_retries)
    assert s.source == "rules"
    assert "scene_analysis preset" in s.rationale
    assert s.typical_prompt_tokens == DEFAULT_PROMPT_TOKENS


def test_max_tokens_is_capped_and_the_rationale_says_so(provider):
    """max_tokens never exceeds the cap, and the change is named with its reason."""
    s = suggest("planning", max_tokens=1500)
    assert s.max_tokens == 1500
    assert "max_tokens 2000 → 1500: the max_tokens constraint" in s.rationale


def test_max_tokens_is_lowered_until_a_typical_prompt_fits_max_cost(provider):
    """$1/M in, $2/M out, a 1000-token typical prompt: $0.002 leaves (2000-1000)/2 = 500
    output tokens; the rationale shows the worst case and the prices."""
    s = suggest("planning", max_cost=Decimal("0.002"))
    assert s.max_tokens == 500
    assert s.worst_case_cost == Decimal("0.002000")
    assert "within max_cost $0.002" in s.rationale
    assert "$1.000000/M in" in s.rationale


def test_timeout_and_retries_fit_max_latency_dropping_retries_first(provider):
    """Planning (60 s, 2 retries) under 70 s: two retries would need a timeout below half
    the preset's, so one retry is dropped and the timeout fills the rest."""
    s = suggest("planning", max_latency_seconds=70)
    worst = worst_case_latency(
        timeout_seconds=s.timeout_seconds, max_retries=s.max_retries, routes=1
    )
    assert worst <= 70
    assert s.max_retries == 1
    assert s.timeout_seconds == math.floor((70 - backoff_ceiling(1)) / 2 * 10) / 10
    assert "max_latency_seconds 70" in s.rationale


def test_latency_counts_every_route_of_the_fallback_chain(provider, backup_provider):
    """Two routes each take their own attempts: the worst case covers both."""
    s = suggest("scene_analysis", max_latency_seconds=40)
    assert (
        worst_case_latency(timeout_seconds=s.timeout_seconds, max_retries=s.max_retries, routes=2)
        <= 40
    )
    assert "on each of 2 routes" in s.rationale


def test_cost_priority_trims_and_quality_priority_keeps_the_preset(provider):
    """Cost first: max_tokens -25% and a cooler temperature; quality first: the preset."""
    cost = suggest("creative", prioritize_quality=False)
    quality = suggest("creative", prioritize_quality=True)
    assert (cost.max_tokens, cost.temperature) == (2250, 0.8)
    assert (quality.max_tokens, quality.temperature) == (3000, 0.9)
    assert "Cost priority" in cost.rationale and "Quality priority" in quality.rationale


def test_quality_keeps_a_longer_timeout_than_cost_under_the_same_latency(provider):
    """Planning (60 s, 2 retries) in 100 s: quality keeps >= 75% of the timeout with one
    retry (2 x 49.8 s + 0.25 s backoff); balanced/cost accept half (3 x 33.0 s + 0.75 s)."""
    quality = suggest("planning", max_latency_seconds=100, prioritize_quality=True)
    cost = suggest("planning", max_latency_seconds=100, prioritize_quality=False)
    assert (quality.timeout_seconds, quality.max_retries) == (49.8, 1)
    assert (cost.timeout_seconds, cost.max_retries) == (33.0, 2)


def test_a_cost_below_the_prompt_alone_is_unsatisfiable(provider):
    """$0.0005 cannot pay for a 1000-token prompt at $1/M: 422 with the minimum cost."""
    with pytest.raises(ConstraintsUnsatisfiable) as caught:
        suggest("planning", max_cost=Decimal("0.0005"))
    assert caught.value.status == 422
    assert caught.value.details["minimum_cost"] == "0.001002"


def test_max_cost_without_any_provider_is_unsatisfiable(db):
    """No provider configured: rules still answer, but a cost cannot be checked."""
    assert suggest("planning").max_tokens == 2000
    with pytest.raises(ConstraintsUnsatisfiable):
        suggest("planning", max_cost=Decimal("1"))


OP_TYPES = st.sampled_from(list(OperationType))
CONSTRAINTS = st.fixed_dictionaries(
    {},
    optional={
        "max_tokens": st.integers(min_value=1, max_value=10_000),
        "max_cost": st.decimals(
            min_value=Decimal("0"), max_value=Decimal("0.5"), places=6, allow_nan=False
        ),
        "max_latency_seconds": st.floats(min_value=1.0, max_value=600.0),
        "prioritize_quality": st.none() | st.booleans(),
    },
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(op=OP_TYPES, constraints=CONSTRAINTS)
def test_any_constraints_in_range_give_a_suggestion_inside_them(provider, op, constraints):
    """For all 13 types: within every constraint and the safe ranges, or 422 only when no
    parameters could meet them ($1/M in, $2/M out, 1000-token prompt, 1 route)."""
    try:
        s = suggest(op.value, **constraints)
    except ConstraintsUnsatisfiable:
        cap = constraints.get("max_cost")
        assert cap is not None and cap * 1_000_000 < DEFAULT_PROMPT_TOKENS * 1 + 1 * 2
        return
    assert 1 <= s.max_tokens <= constraints.get("max_tokens", 10**9)
    if constraints.get("max_cost") is not None:
        assert DEFAULT_PROMPT_TOKENS * 1 + s.max_tokens * 2 <= constraints["max_cost"] * 10**6
        assert s.worst_case_cost <= constraints["max_cost"]
    if constraints.get("max_latency_seconds") is not None:
        worst = worst_case_latency(
            timeout_seconds=s.timeout_seconds, max_retries=s.max_retries, routes=1
        )
        assert worst <= constraints["max_latency_seconds"] + 1e-9
    assert SAFE_TEMPERATURE[0] <= s.temperature <= SAFE_TEMPERATURE[1]
    assert SAFE_TOP_P[0] <= s.top_p <= SAFE_TOP_P[1]
    assert SAFE_MAX_RETRIES[0] <= s.max_retries <= SAFE_MAX_RETRIES[1]
    assert s.timeout_seconds >= 1.0
    preset = SEED_PRESETS[op]
    assert s.max_tokens <= preset.max_tokens  # rules never grow the answer
    assert 0 < s.confidence < 1 and s.source == "rules" and s.rationale
