"""The dashboard overview: every aggregate of a range and of its previous period in two
passes, one over the rollups of both periods' rolled-up hours and one over the raw rows of
the rest, each grouped four ways at once (bucket, provider, model, type)."""

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Case, DateTimeField, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import TruncDay, TruncHour

from aura_orchestrator.money import MICROS
from telemetry.models import LATENCY_BUCKETS, OperationTelemetry, TelemetryRollup
from telemetry.selectors.charts import points
from telemetry.selectors.hours import intervals_filter, overview_intervals, rollup_watermark
from telemetry.selectors.stats import FRACTIONS, Statistics, statistics_of
from telemetry.selectors.sums import (
    ADDITIVE,
    UNNAMED,
    Acc,
    dimension_filter,
    merge,
    raw_sums,
    rollup_sums,
)
from telemetry.selectors.vendor import grouping_sets, work_mem_for_transaction

OVERVIEW_SETS = ("bucket", "provider_name", "model_name", "operation_type")
_SUMMED = (*ADDITIVE, *(f"h{i}" for i in range(LATENCY_BUCKETS)))
# The level-one hash table of a 30-day range (both periods: ~60,000 rollup rows into
# ~1,000 groups of 23 sums) outgrows PostgreSQL's default 4 MB, which then sorts the rows
# on disk instead (105 vs 63 ms at 10 M telemetry rows). For the overview's transaction only.
OVERVIEW_WORK_MEM = "32MB"


@dataclass(frozen=True, slots=True)
class OverviewData:
    """What the overview shows for [since, until) and the period of equal length before."""

    current: Statistics
    previous: Statistics
    series: list[dict]
    by_provider: list[dict]
    by_model: list[dict]
    by_type: list[dict]


def _period_groups(
    qs: QuerySet, *, time_field: str, since: datetime, bucket: str, sums: dict
) -> QuerySet:
    """Level one: sums per (period, bucket, provider, model, type), where period is 1 for
    [since, …) and 0 before it, and the bucket is kept for the current period only."""
    trunc = TruncHour if bucket == "hour" else TruncDay
    current = Q(**{f"{time_field}__gte": since})
    return (
        qs.annotate(
            period=Case(
                When(current, then=Value(1)), default=Value(0), output_field=IntegerField()
            ),
            bucket=Case(
                When(current, then=trunc(time_field, tzinfo=UTC)),
                default=Value(None),
                output_field=DateTimeField(),
            ),
        )
        .values("period", "bucket", *OVERVIEW_SETS[1:])
        .annotate(**sums)
        .order_by()
    )


def _utc(moment: datetime | None) -> datetime | None:
    """A bucket as an aware UTC datetime (PostgreSQL's date_trunc of a UTC timestamp
    comes back naive from raw SQL)."""
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _sets(qs: QuerySet, accs: dict[tuple, Acc], *, in_sql: bool | None = None) -> None:
    """Level two: the level-one rows of `qs` summed into `accs` per (set, period, value)
    for each of the four sets (`in_sql` forces GROUPING SETS on or off, for tests)."""
    for name, row in grouping_sets(
        qs,
        within="period",
        sets=OVERVIEW_SETS,
        sums=_SUMMED,
        maxima=("latency_max_ms",),
        decimal=("cost", "cache_savings"),
        in_sql=in_sql,
    ):
        value = _utc(row[name]) if name == "bucket" else row[name]
        merge(accs, (name, row["period"], value), Acc.of_row(row))


def _rows_of(accs: dict[tuple, Acc], name: str, period: int) -> list[dict]:
    rows = [
        {"key": key or UNNAMED, **acc.as_dict()}
        for (set_name, p, key), acc in accs.items()
        if set_name == name and p == period
    ]
    return sorted(rows, key=lambda r: (-r["operations"], r["key"]))


def _period_statistics(accs: dict[tuple, Acc], period: int, *, since, until) -> Statistics:
    total = Acc()
    by_provider: dict[str, int] = {}
    cost_by_provider: dict[str, Decimal] = {}
    by_type: dict[str, int] = {}
    for (name, p, key), acc in sorted(accs.items(), key=lambda item: str(item[0])):
        if p != period:
            continue
        if name == "operation_type":
            total.add(acc)
            by_type[key] = by_type.get(key, 0) + acc.operations
        elif name == "provider_name":
            provider = key or UNNAMED
            by_provider[provider] = by_provider.get(provider, 0) + acc.operations
            cost_by_provider[provider] = cost_by_provider.get(provider, Decimal(0)) + acc.cost
    statistics = statistics_of(
        total,
        {},
        percentiles=tuple(total.percentile(f) for f in FRACTIONS),
        source="rollup",
        since=since,
        until=until,
    )
    return replace(
        statistics,
        operations_by_provider=by_provider,
        operations_by_type=by_type,
        cost_by_provider={k: v.quantize(MICROS) for k, v in cost_by_provider.items()},
    )


def overview(
    *, project_id: int | None, since: datetime, until: datetime, bucket: str
) -> OverviewData | None:
    """The dashboard overview of [since, until) and of the period of equal length before
    it: statistics of both, the current period's series per `bucket` and its breakdowns by
    provider, model and type, in three queries (the watermark, one pass over the rollups of
    both periods' rolled-up hours, one over the raw rows of the rest). Percentiles come
    from the latency histogram (approximate, like any rollup statistics); totals are exact.

    None when the current period holds no rolled-up hour (no rollup yet, or a range newer
    than the watermark): then raw rows answer, with exact percentiles (`statistics`)."""
    if bucket not in ("hour", "day"):
        raise ValueError("bucket must be 'hour' or 'day'")
    previous_since = since - (until - since)
    split = overview_intervals(
        previous_since=previous_since, since=since, until=until, watermark=rollup_watermark()
    )
    if split is None:
        return None
    rolled, raw = split
    dimensions = dimension_filter(
        project_id=project_id, provider=None, model=None, operation_type=None
    )
    accs: dict[tuple, Acc] = {}
    with transaction.atomic():
        work_mem_for_transaction(OVERVIEW_WORK_MEM)
        passes: list[
            tuple[
                type[TelemetryRollup | OperationTelemetry],
                str,
                list[tuple[datetime, datetime]],
                dict,
            ]
        ] = [(TelemetryRollup, "bucket_start", rolled, rollup_sums())]
        if raw:
            passes.append((OperationTelemetry, "started_at", raw, raw_sums()))
        for model, time_field, intervals, sums in passes:
            rows = model.objects.filter(dimensions & intervals_filter(time_field, intervals))
            _sets(
                _period_groups(rows, time_field=time_field, since=since, bucket=bucket, sums=sums),
                accs,
            )
    by_start = {key: acc for (name, p, key), acc in accs.items() if name == "bucket" and p == 1}
    return OverviewData(
        current=_period_statistics(accs, 1, since=since, until=until),
        previous=_period_statistics(accs, 0, since=previous_since, until=since),
        series=points(by_start, since=since, until=until, bucket=bucket),
        by_provider=_rows_of(accs, "provider_name", 1),
        by_model=_rows_of(accs, "model_name", 1),
        by_type=_rows_of(accs, "operation_type", 1),
    )
