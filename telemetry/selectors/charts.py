"""The dashboards' per-widget reads: a time series per hour or day, and a breakdown by
provider, model or type. Rolled-up hours come from rollups, the rest from raw rows."""

from datetime import UTC, datetime, timedelta

from telemetry.selectors.hours import HOUR, floor_hour, split_range
from telemetry.selectors.sums import UNNAMED, Acc, combined, dimension_filter

BREAKDOWN_FIELDS = ("provider_name", "model_name", "operation_type")


def points(by_start: dict[datetime, Acc], *, since: datetime, until: datetime, bucket: str):
    """One dict per hour or day of [since, until), empty buckets included, oldest first."""
    step = HOUR if bucket == "hour" else timedelta(days=1)
    start = floor_hour(since)
    if bucket == "day":
        start = start.replace(hour=0)
    result = []
    moment = start
    while moment < until:
        result.append({"bucket_start": moment, **by_start.get(moment, Acc()).as_dict()})
        moment += step
    return result


def timeseries(
    *,
    project_id: int | None,
    since: datetime,
    until: datetime,
    bucket: str = "hour",
    provider: str | None = None,
    model: str | None = None,
    operation_type: str | None = None,
) -> list[dict]:
    """One dict per hour or day in [since, until), empty buckets included, oldest first:
    `bucket_start`, operations, successes, failures, cache_hits, tokens_in, tokens_out,
    retries, cost (Decimal), error_rate, cache_hit_rate, average_latency_ms and
    p95_latency_ms (approximate, from the histogram). Rolled-up hours come from rollups,
    the rest from raw rows: two queries."""
    if bucket not in ("hour", "day"):
        raise ValueError("bucket must be 'hour' or 'day'")
    dimensions = dimension_filter(
        project_id=project_id, provider=provider, model=model, operation_type=operation_type
    )
    accs = combined(
        dimensions=dimensions,
        since=since,
        until=until,
        split=split_range(since, until),
        keys=(),
        time_bucket=bucket,
    )
    by_start = {key[0].astimezone(UTC): acc for key, acc in accs.items()}
    return points(by_start, since=since, until=until, bucket=bucket)


def breakdown(
    *,
    project_id: int | None,
    since: datetime,
    until: datetime,
    by: str,
    provider: str | None = None,
    model: str | None = None,
    operation_type: str | None = None,
) -> list[dict]:
    """Operations in [since, until) grouped by `by` ("provider_name", "model_name" or
    "operation_type"), most operations first: `key` plus the same sums as `timeseries`."""
    if by not in BREAKDOWN_FIELDS:
        raise ValueError(f"by must be one of {', '.join(BREAKDOWN_FIELDS)}")
    dimensions = dimension_filter(
        project_id=project_id, provider=provider, model=model, operation_type=operation_type
    )
    accs = combined(
        dimensions=dimensions, since=since, until=until, split=split_range(since, until), keys=(by,)
    )
    rows = [{"key": key[0] or UNNAMED, **acc.as_dict()} for key, acc in accs.items()]
    return sorted(rows, key=lambda r: (-r["operations"], r["key"]))
