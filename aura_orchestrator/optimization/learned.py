"""A draft learned from the history of the operation type: how long answers really are,
how long calls really take, how often attempts really fail."""

import math

from aura_orchestrator.optimization.history import History, setting
from aura_orchestrator.optimization.rules import COST_TEMPERATURE_STEP
from aura_orchestrator.optimization.types import SAFE_MAX_RETRIES, Constraints, Draft
from presets.selectors import EffectivePreset

# (output-token percentile, headroom) per priority: quality leaves the most room.
TOKENS_PERCENTILE = {"quality": (99, 1.25), "balanced": (95, 1.25), "cost": (95, 1.1)}
LATENCY_HEADROOM = 1.5  # timeout = observed p99 latency times this
TRUNCATION_ALARM = 0.05  # above this share of answers cut at max_tokens, do not lower it
# Retries: the fewest that bring the chance of every attempt failing under this target.
TARGET_FAILURE = 0.001
MIN_RETRIES = 1  # one retry costs nothing while calls succeed, and covers a rare blip


def retries_for(failure_rate: float) -> int:
    for retries in range(MIN_RETRIES, SAFE_MAX_RETRIES[1] + 1):
        if failure_rate ** (retries + 1) <= TARGET_FAILURE:
            return retries
    return SAFE_MAX_RETRIES[1]


def confidence_for(sample: int, minimum: int) -> float:
    """0.5 at the minimum sample, growing towards 0.95 with more history."""
    return round(0.95 - 0.45 * math.sqrt(minimum / max(sample, minimum)), 2)


def _change(name: str, old, new) -> str:
    return f"{name} {old} → {new}" if old != new else f"{name} stays at {new}"


def _ceil_tenth(x: float) -> float:
    return math.ceil(x * 10 - 1e-9) / 10


def learned_draft(
    *, preset: EffectivePreset, history: History, constraints: Constraints
) -> Draft | None:
    """None when the history is smaller than OPTIMIZER_MIN_SAMPLE successful operations."""
    minimum = setting("OPTIMIZER_MIN_SAMPLE", 30)
    if (
        history.successes < minimum
        or history.tokens_out_p95 is None
        or history.tokens_out_p99 is None
        or history.latency_ms_p99 is None
    ):  # the percentiles are None together, when there is no success
        return None
    priority = constraints.priority
    q, headroom = TOKENS_PERCENTILE[priority]
    observed = history.tokens_out_p99 if q == 99 else history.tokens_out_p95
    max_tokens = max(1, math.ceil(observed * headroom))
    scope = f" on {history.model_name}" if history.model_name else " across models"
    notes = [
        f"Learned from {history.successes} successful {history.operation_type} operations"
        f"{scope} in the last {setting('OPTIMIZER_WINDOW_DAYS', 30)} days.",
        f"{_change('max_tokens', preset.max_tokens, max_tokens)}: p{q} of output tokens is "
        f"{observed}, "
        f"plus {round((headroom - 1) * 100)}% headroom.",
    ]
    if history.truncated_share > TRUNCATION_ALARM and max_tokens < preset.max_tokens:
        max_tokens = preset.max_tokens
        notes.append(
            f"{history.truncated_share:.0%} of answers reached their max_tokens, so the "
            f"observed lengths are cut short: max_tokens stays at {preset.max_tokens}."
        )
    p99_seconds = history.latency_ms_p99 / 1000
    timeout = max(1.0, _ceil_tenth(p99_seconds * LATENCY_HEADROOM))
    notes.append(
        f"{_change('timeout_seconds', preset.timeout_seconds, timeout)}: p99 latency is "
        f"{p99_seconds:.2f} s, plus {round((LATENCY_HEADROOM - 1) * 100)}% headroom."
    )
    rate = history.attempt_failure_rate
    retries = retries_for(rate)
    notes.append(
        f"{_change('max_retries', preset.max_retries, retries)}: {rate:.1%} of {history.attempts} "
        f"provider attempts failed; {retries} retries leave a {rate ** (retries + 1):.4%} "
        "chance that every attempt fails."
    )
    temperature = preset.temperature
    if priority == "cost":
        temperature = round(max(0.0, preset.temperature - COST_TEMPERATURE_STEP), 2)
        notes.append(f"Cost priority: temperature {preset.temperature} → {temperature}.")
    return Draft(
        temperature=temperature,
        top_p=preset.top_p,
        max_tokens=max_tokens,
        timeout_seconds=timeout,
        max_retries=retries,
        source="telemetry",
        confidence=confidence_for(history.successes, minimum),
        min_useful_timeout=max(1.0, _ceil_tenth(p99_seconds)),
        notes=tuple(notes),
        sample_size=history.successes,
    )
