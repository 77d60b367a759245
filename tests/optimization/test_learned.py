"""Telemetry-learned suggestions on generated histories with known percentiles."""

import math
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aura_orchestrator.optimization.fitting import worst_case_latency
from aura_orchestrator.optimization.suggest import OptimizeRequest, suggest_offline
from aura_orchestrator.optimization.types import Constraints, ConstraintsUnsatisfiable
from aura_orchestrator.tenancy.services import project_get_or_create
from presets.operation_types import OperationType
from tests.optimization.helpers import make_history

pytestmark = pytest.mark.django_db


def suggest(project, op="planning", **constraints):
    request = OptimizeRequest(
        operation_type=OperationType(op), constraints=Constraints(**constraints)
    )
    return suggest_offline(request=request, project_id=project.pk).suggestion


def test_history_of_200_operations_gives_percentile_based_parameters(provider, project):
    """tokens_out 1..200 → p95 190, +25% → 238; latency p99 1.98 s, +50% → 3.0 s;
    20 of 220 attempts failed (9.1%) → 2 retries bring all-fail under 0.1%."""
    make_history(project=project, count=200, retried=20)
    s = suggest(project)
    assert s.source == "telemetry"
    assert s.max_tokens == math.ceil(190 * 1.25) == 238
    assert s.timeout_seconds == 3.0
    assert s.max_retries == 2
    assert s.sample_size == 200
    assert "Learned from 200 successful planning operations on sim-gpt" in s.rationale
    assert "p95 of output tokens is 190" in s.rationale
    assert s.typical_prompt_tokens == 300
    assert s.temperature == 0.7  # telemetry says nothing about sampling quality


def test_quality_priority_learns_from_p99(provider, project):
    """Quality first: p99 (198) with 25% headroom → 248 tokens."""
    make_history(project=project, count=200)
    assert suggest(project, prioritize_quality=True).max_tokens == 248


def test_failures_raise_the_retries(provider, project):
    """100 successes, 30 of them retried once, 20 operations failed after 3 attempts:
    90 failed of 190 attempts (47%) → the maximum of 5 retries."""
    make_history(project=project, count=100, retried=30, failed=20)
    s = suggest(project)
    assert s.max_retries == 5
    assert "190 provider attempts" in s.rationale


def test_confidence_grows_with_the_sample(provider, project):
    """30 operations (the minimum) → 0.5; 300 → higher."""
    make_history(project=project, count=30)
    small = suggest(project)
    make_history(project=project, count=270, seed=3)
    large = suggest(project)
    assert small.confidence == 0.5
    assert large.confidence > small.confidence
    assert large.sample_size == 300


def test_too_little_history_falls_back_to_rules(provider, project):
    """29 successful operations are one short of the minimum: rules, and it says so."""
    make_history(project=project, count=29)
    s = suggest(project)
    assert s.source == "rules"
    assert "Telemetry holds 29 successful operations" in s.rationale


def test_history_is_scoped_to_the_callers_project(provider, project):
    """Another project's history is not learned from."""
    make_history(project=project_get_or_create(name="elsewhere"), count=200)
    assert suggest(project).source == "rules"


def test_another_models_history_is_used_only_without_own(provider, project):
    """No history of sim-gpt: the type's history across models, said so."""
    make_history(project=project, count=100, model_name="other-model")
    s = suggest(project)
    assert s.source == "telemetry" and "across models" in s.rationale


def test_truncated_answers_keep_the_presets_max_tokens(provider, project):
    """When answers hit their max_tokens, observed lengths are cut short: do not lower."""
    make_history(project=project, count=100, max_tokens=50)  # 51% reached their cap
    s = suggest(project)
    assert s.max_tokens == 2000
    assert "reached their max_tokens" in s.rationale


def test_constraints_still_win_over_telemetry(provider, project):
    """Median prompt 300 tokens; $0.0005 leaves (500-300)/2 = 100 output tokens."""
    make_history(project=project, count=200)
    s = suggest(project, max_cost=Decimal("0.0005"), max_latency_seconds=4)
    assert s.source == "telemetry"
    assert s.max_tokens == 100
    assert (
        worst_case_latency(timeout_seconds=s.timeout_seconds, max_retries=s.max_retries, routes=1)
        <= 4
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    max_tokens=st.none() | st.integers(min_value=1, max_value=5000),
    max_cost=st.none() | st.decimals(min_value=Decimal("0.000302"), max_value=1, places=6),
    latency=st.none() | st.floats(min_value=1.0, max_value=300.0),
)
def test_any_constraints_bound_a_learned_suggestion(
    provider, project, max_tokens, max_cost, latency
):
    """With history (prompt 300 tokens, one route), every feasible constraint holds."""
    if not project.sessions.exists():  # one history per test, not per example
        make_history(project=project, count=60)
        project.sessions.create(session_id="marker")
    try:
        s = suggest(project, max_tokens=max_tokens, max_cost=max_cost, max_latency_seconds=latency)
    except ConstraintsUnsatisfiable:
        pytest.fail("feasible constraints were refused")
    assert s.source == "telemetry"
    if max_tokens is not None:
        assert s.max_tokens <= max_tokens
    if max_cost is not None:
        assert 300 + 2 * s.max_tokens <= max_cost * 10**6
    if latency is not None:
        worst = worst_case_latency(
            timeout_seconds=s.timeout_seconds, max_retries=s.max_retries, routes=1
        )
        assert worst <= latency + 1e-9
