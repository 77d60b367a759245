"""Writes: record one operation; roll raw rows up into hourly buckets; prune old rows."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.db import transaction
from django.db.models import Min, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from aura_orchestrator.store.locks import transaction_lock
from telemetry.models import (
    LATENCY_BUCKETS,
    OperationTelemetry,
    RollupWatermark,
    TelemetryRollup,
)
from telemetry.selectors import (
    HOUR,
    WATERMARK,
    ceil_hour,
    floor_hour,
    raw_sums,
    retention_cutoff,
    rollup_watermark,
)

# An hour is final (no more rows will land in it) this long after it ends: an operation
# is stamped with its start but written when it completes, after retries and fallbacks.
SETTLE = timedelta(minutes=15)
_ROLLUP_LOCK = 0x4155_5241  # one rollup writer at a time
_CHUNK = timedelta(days=1)


def telemetry_record(**fields) -> OperationTelemetry:
    """Insert the operation's row (durably, before the response is returned)."""
    return OperationTelemetry.objects.create(**fields)


def _rollup_chunk(start: datetime, end: datetime) -> int:
    """Replace the rollups of hours [start, end) with sums recomputed from raw rows."""
    with transaction.atomic():
        # Two runs over the same hours would otherwise both delete, then collide on the
        # unique bucket when inserting.
        transaction_lock(key=_ROLLUP_LOCK)
        TelemetryRollup.objects.filter(bucket_start__gte=start, bucket_start__lt=end).delete()
        # The sums' names come from `raw_sums()`: rows the type checker cannot spell.
        rows = cast(
            "QuerySet[OperationTelemetry, dict[str, Any]]",
            OperationTelemetry.objects.filter(started_at__gte=start, started_at__lt=end)
            .annotate(bucket=TruncHour("started_at", tzinfo=UTC))
            .values("bucket", "project_id", "provider_name", "model_name", "operation_type")
            .annotate(**raw_sums())
            .order_by(),
        )
        rollups = [
            TelemetryRollup(
                bucket_start=row["bucket"],
                project_id=row["project_id"],
                provider_name=row["provider_name"],
                model_name=row["model_name"],
                operation_type=row["operation_type"],
                operations=row["operations"],
                successes=row["successes"],
                failures=row["operations"] - row["successes"],
                cache_hits=row["cache_hits"],
                tokens_in=row["tokens_in"] or 0,
                tokens_out=row["tokens_out"] or 0,
                retries=row["retries"] or 0,
                cost=row["cost"] or 0,
                cache_savings=row["cache_savings"] or 0,
                latency_sum_ms=row["latency_sum_ms"] or 0,
                latency_max_ms=row["latency_max_ms"] or 0,
                latency_histogram=[row[f"h{i}"] for i in range(LATENCY_BUCKETS)],
            )
            for row in rows
        ]
        TelemetryRollup.objects.bulk_create(rollups, batch_size=1000)
    return len(rollups)


def telemetry_rollup_hours(*, start: datetime, end: datetime, now: datetime | None = None) -> int:
    """Recompute the rollups of every hour overlapping [start, end) from the raw rows, one
    day per transaction; safe to re-run. Hours past the raw retention are left alone:
    their raw rows may be gone and their rollups are final. Returns rollup rows written."""
    now = now or timezone.now()
    start = max(floor_hour(start), retention_cutoff(now))
    end = ceil_hour(end)
    written = 0
    while start < end:
        chunk_end = min(end, start + _CHUNK)
        written += _rollup_chunk(start, chunk_end)
        start = chunk_end
    return written


def _watermark_advance(moment: datetime) -> None:
    watermark, created = RollupWatermark.objects.get_or_create(
        name=WATERMARK, defaults={"complete_until": moment}
    )
    if not created and moment > watermark.complete_until:
        RollupWatermark.objects.filter(pk=watermark.pk).update(
            complete_until=moment, updated_at=timezone.now()
        )


def telemetry_rollup_recent(
    *, hours: int = 3, now: datetime | None = None, max_span: timedelta = timedelta(days=31)
) -> int:
    """The periodic rollup: recompute the last `hours` hours (the current, partial one
    included, so dashboards stay fresh) and any hours since the watermark that a stopped
    cluster missed, at most `max_span` per run (the next run continues). On the first run
    it starts at the oldest raw row. Then advances the watermark to the last final hour."""
    now = now or timezone.now()
    end = floor_hour(now) + HOUR
    final = floor_hour(now - SETTLE)
    watermark = rollup_watermark()
    recent = floor_hour(now) - HOUR * (max(hours, 1) - 1)
    if watermark is None:
        oldest = OperationTelemetry.objects.aggregate(t=Min("started_at"))["t"]
        start = min(floor_hour(oldest), recent) if oldest else recent
    else:
        start = min(watermark, recent)
    end = min(end, start + max_span)
    written = telemetry_rollup_hours(start=start, end=end, now=now)
    _watermark_advance(min(final, end))
    return written


def telemetry_rollup_backfill(
    *, since: datetime | None = None, until: datetime | None = None, now: datetime | None = None
) -> int:
    """Recompute every hour from `since` (default: the oldest raw row) to `until`
    (default: now), e.g. after importing rows or changing the histogram bounds."""
    now = now or timezone.now()
    if since is None:
        since = OperationTelemetry.objects.aggregate(t=Min("started_at"))["t"] or now
    until = until or now
    written = telemetry_rollup_hours(start=since, end=until, now=now)
    if until >= floor_hour(now - SETTLE):
        _watermark_advance(floor_hour(now - SETTLE))
    return written


def telemetry_prune(
    *, now: datetime | None = None, batch_size: int = 10_000, time_budget_s: float = 60.0
) -> int:
    """Delete raw rows older than AURA["TELEMETRY_RETENTION_DAYS"] in batches (short
    transactions, no long lock), but only rows whose hours are rolled up. Stops after
    `time_budget_s` (the next run continues). Returns rows deleted."""
    now = now or timezone.now()
    watermark = rollup_watermark()
    if watermark is None:
        return 0  # nothing is rolled up yet: deleting would lose it for good
    cutoff = min(retention_cutoff(now), watermark)
    deadline = time.monotonic() + time_budget_s
    deleted = 0
    old = OperationTelemetry.objects.filter(started_at__lt=cutoff).order_by()
    while time.monotonic() < deadline:
        batch = list(old.values_list("pk", flat=True)[:batch_size])
        if not batch:
            break
        count, _ = OperationTelemetry.objects.filter(pk__in=batch).delete()
        deleted += count
    return deleted
