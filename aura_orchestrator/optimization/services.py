"""Writes: apply the telemetry suggestion to a preset, recorded in the admin's audit log."""

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction

from aura_orchestrator.errors import InvalidRequest
from aura_orchestrator.optimization.selectors import suggestion_for_preset
from aura_orchestrator.optimization.types import Suggestion
from presets.models import OperationPreset
from presets.operation_types import OperationType
from presets.services import seed_values


def preset_apply_suggestion(*, operation_type: OperationType | str, user) -> Suggestion:
    """Write the current suggestion's parameters into the preset (created from the seed
    if missing) and log the change with what changed and why. InvalidRequest while
    telemetry holds too little history to suggest anything."""
    op = OperationType(operation_type)
    suggestion = suggestion_for_preset(operation_type=op)
    if suggestion is None:
        raise InvalidRequest(f"Not enough telemetry yet to suggest parameters for {op.label}.")
    values = suggestion.parameters()
    with transaction.atomic():
        preset, _ = OperationPreset.objects.select_for_update().get_or_create(
            operation_type=op, defaults=seed_values(op)
        )
        changed = [name for name, value in values.items() if getattr(preset, name) != value]
        before = {name: getattr(preset, name) for name in changed}
        for name, value in values.items():
            setattr(preset, name, value)
        preset.updated_by = user
        preset.save()
        summary = ", ".join(f"{n}: {before[n]} → {values[n]}" for n in changed) or "no change"
        LogEntry.objects.log_actions(
            user_id=user.pk,
            queryset=[preset],
            action_flag=CHANGE,
            change_message=(
                f"Applied the telemetry suggestion ({suggestion.sample_size} operations, "
                f"confidence {suggestion.confidence}): {summary}."
            ),
            single_object=True,
        )
    return suggestion
