"""Reads: the effective preset of an operation type, with a request's overrides."""

from dataclasses import dataclass, replace
from typing import Any

from aura_orchestrator.caching.config_cache import memoized
from presets.models import OperationPreset
from presets.operation_types import SEED_PRESETS, OperationType


@dataclass(frozen=True, slots=True)
class EffectivePreset:
    operation_type: OperationType
    temperature: float
    top_p: float
    max_tokens: int
    timeout_seconds: float
    max_retries: int
    cache_enabled: bool
    cache_ttl_seconds: int
    description: str = ""
    is_customized: bool = False  # differs from the seed defaults

    def with_overrides(self, **overrides) -> "EffectivePreset":
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self


def _from_row(row: OperationPreset) -> EffectivePreset:
    op = OperationType(row.operation_type)
    seed = SEED_PRESETS[op]
    values: dict[str, Any] = {
        "temperature": row.temperature,
        "top_p": row.top_p,
        "max_tokens": row.max_tokens,
        "timeout_seconds": row.timeout_seconds,
        "max_retries": row.max_retries,
        "cache_enabled": row.cache_enabled,
        "cache_ttl_seconds": row.cache_ttl_seconds,
    }
    customized = any(getattr(seed, k) != v for k, v in values.items())
    return EffectivePreset(
        operation_type=op, description=row.description, is_customized=customized, **values
    )


def _from_seed(op: OperationType) -> EffectivePreset:
    seed = SEED_PRESETS[op]
    return EffectivePreset(
        operation_type=op,
        temperature=seed.temperature,
        top_p=seed.top_p,
        max_tokens=seed.max_tokens,
        timeout_seconds=seed.timeout_seconds,
        max_retries=seed.max_retries,
        cache_enabled=seed.cache_enabled,
        cache_ttl_seconds=seed.cache_ttl_seconds,
        description=seed.description,
    )


def _preset_load(operation_type: OperationType) -> EffectivePreset:
    row = OperationPreset.objects.filter(operation_type=operation_type).first()
    return _from_row(row) if row is not None else _from_seed(operation_type)


def preset_get(*, operation_type: OperationType) -> EffectivePreset:
    """The stored preset, or the seed default if an operator deleted the row. Memoized
    per process and invalidated on save (see caching.config_cache): an admin edit
    applies within 0.25 s to every worker sharing the cache (config_cache)."""
    return memoized(("preset", operation_type), lambda: _preset_load(operation_type))


def preset_list() -> list[EffectivePreset]:
    rows = {r.operation_type: r for r in OperationPreset.objects.all()}
    return [
        _from_row(rows[op]) if op in rows else _from_seed(OperationType(op))
        for op in OperationType.values
    ]
