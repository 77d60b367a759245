"""A small known data set whose statistics are computed by hand below."""

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from telemetry.models import OperationTelemetry
from telemetry.selectors import floor_hour

# Ten operations of project `studio` (latencies deliberately out of order).
LATENCIES = [70, 10, 1000, 40, 20, 90, 30, 60, 50, 80]
# Sorted: 10 20 30 40 50 60 70 80 90 1000. percentile_cont: position f·(n-1), linear
# between the two closest ranks.
P50 = 55.0  # position 4.5: 50 + (60-50)·0.5
P95 = 590.5  # position 8.55: 90 + (1000-90)·0.55
P99 = 918.1  # position 8.91: 90 + (1000-90)·0.91
AVERAGE = 145.0  # (450 + 1000) / 10
# Rows 0-5 on `primary`/planning at 0.000200 each, rows 6-9 on `backup`/scripting at
# 0.000150 each; rows 3 and 7 failed; rows 0, 1, 2 were cache hits; rows 4 and 8 retried.
TOTAL_COST = Decimal("0.001800")
PRIMARY_COST = Decimal("0.001200")
BACKUP_COST = Decimal("0.000600")


def base_hour() -> datetime:
    """The data set's hour: two hours ago, well inside any retention."""
    return floor_hour(timezone.now()) - timedelta(hours=2)


def row(project, *, started_at: datetime, **fields) -> OperationTelemetry:
    values = {
        "operation_id": uuid.uuid4(),
        "project": project,
        "session_id": "video-1",
        "operation_type": "planning",
        "provider_name": "primary",
        "model_name": "sim-gpt",
        "tokens_in": 100,
        "tokens_out": 50,
        "latency_ms": 100,
        "success": True,
        "estimated_cost": Decimal("0.000200"),
        "started_at": started_at,
        "completed_at": started_at + timedelta(milliseconds=fields.get("latency_ms", 100)),
        **fields,
    }
    return OperationTelemetry(**values)


def make_dataset(project, *, start: datetime | None = None) -> list[OperationTelemetry]:
    """The ten rows, one every 5 minutes from `start` (default: `base_hour()`)."""
    start = start or base_hour()
    rows = []
    for i, latency in enumerate(LATENCIES):
        backup = i >= 6
        rows.append(
            row(
                project,
                started_at=start + timedelta(minutes=5 * i),
                latency_ms=latency,
                provider_name="backup" if backup else "primary",
                operation_type="scripting" if backup else "planning",
                estimated_cost=Decimal("0.000150") if backup else Decimal("0.000200"),
                success=i not in (3, 7),
                error_code="provider_error" if i in (3, 7) else "",
                cache_hit=i in (0, 1, 2),
                retry_count=1 if i in (4, 8) else 0,
                session_id="video-1" if i < 5 else "video-2",
            )
        )
    return OperationTelemetry.objects.bulk_create(rows)
