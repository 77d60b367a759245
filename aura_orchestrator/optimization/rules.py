"""A draft from the operation type's preset and the caller's priority."""

import math

from aura_orchestrator.optimization.types import Constraints, Draft
from presets.selectors import EffectivePreset

# Prompt size assumed for cost fitting when telemetry has too few operations of the type.
DEFAULT_PROMPT_TOKENS = 1000
# Cost priority trims the answer length and makes sampling a little more focused.
COST_TOKENS_FACTOR = 0.75
COST_TEMPERATURE_STEP = 0.1
# Below this share of the preset's timeout, dropping a retry beats cutting the timeout.
MIN_USEFUL_TIMEOUT_SHARE = {"quality": 0.75, "balanced": 0.5, "cost": 0.5}
RULES_CONFIDENCE = 0.6


def describe(preset: EffectivePreset) -> str:
    return (
        f"temperature {preset.temperature}, top_p {preset.top_p}, max_tokens "
        f"{preset.max_tokens}, timeout {preset.timeout_seconds} s, {preset.max_retries} retries"
    )


def rules_draft(*, preset: EffectivePreset, constraints: Constraints) -> Draft:
    priority = constraints.priority
    notes = [f"Started from the {preset.operation_type.value} preset ({describe(preset)})."]
    temperature, max_tokens = preset.temperature, preset.max_tokens
    if priority == "cost":
        max_tokens = max(1, math.ceil(preset.max_tokens * COST_TOKENS_FACTOR))
        temperature = round(max(0.0, preset.temperature - COST_TEMPERATURE_STEP), 2)
        notes.append(
            f"Cost priority: max_tokens {preset.max_tokens} → {max_tokens} (-25%) and "
            f"temperature {preset.temperature} → {temperature}, for shorter, more focused "
            "answers."
        )
    elif priority == "quality":
        notes.append(
            "Quality priority: temperature, top_p and max_tokens stay at the preset's values; "
            "a latency limit drops retries before it shortens the timeout."
        )
    return Draft(
        temperature=temperature,
        top_p=preset.top_p,
        max_tokens=max_tokens,
        timeout_seconds=preset.timeout_seconds,
        max_retries=preset.max_retries,
        source="rules",
        confidence=RULES_CONFIDENCE,
        min_useful_timeout=preset.timeout_seconds * MIN_USEFUL_TIMEOUT_SHARE[priority],
        notes=tuple(notes),
    )
