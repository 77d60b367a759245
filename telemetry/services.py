"""Writes: record one operation."""

from telemetry.models import OperationTelemetry


def telemetry_record(**fields) -> OperationTelemetry:
    """Insert the operation's row (durably, before the response is returned)."""
    return OperationTelemetry.objects.create(**fields)
