"""Writes: seed and reset presets."""

from presets.models import OperationPreset
from presets.operation_types import SEED_PRESETS, OperationType


def seed_values(operation_type: OperationType) -> dict:
    seed = SEED_PRESETS[operation_type]
    return {
        "description": seed.description,
        "temperature": seed.temperature,
        "top_p": seed.top_p,
        "max_tokens": seed.max_tokens,
        "timeout_seconds": seed.timeout_seconds,
        "max_retries": seed.max_retries,
        "cache_enabled": seed.cache_enabled,
        "cache_ttl_seconds": seed.cache_ttl_seconds,
    }


def preset_reset(*, operation_type: OperationType, user=None) -> OperationPreset:
    """Put an operation type's preset back to the seed defaults (creating it if missing)."""
    preset, _ = OperationPreset.objects.update_or_create(
        operation_type=operation_type, defaults={**seed_values(operation_type), "updated_by": user}
    )
    return preset
