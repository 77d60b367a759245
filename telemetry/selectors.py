"""Reads: statistics over operations, time series and breakdowns for the dashboards.

Ranges are half-open, `since <= started_at < until`, in UTC hours for bucketing.

Two sources answer the same questions:

- **raw** rows (`OperationTelemetry`): every total exact, and exact percentiles with
  PostgreSQL's `percentile_cont` (on SQLite the same definition, computed from the two
  closest ranks);
- **rollups** (`TelemetryRollup`, one row per hour, project, provider, model and type) for
  the whole hours before the rollup watermark, plus the raw rows of the partial hours at
  the edges. Totals stay exact; percentiles are interpolated inside the latency
  histogram's buckets, so they are approximate.

`statistics` reads raw rows unless the range is long (more than
`AURA["STATISTICS_RAW_MAX_DAYS"]` days), holds many rows (more than
`AURA["STATISTICS_RAW_MAX_ROWS"]`, judged from the rollups), or reaches back past the raw
retention; `Statistics.source` says which. Session statistics are always raw.
"""

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Aggregate,
    BigIntegerField,
    Case,
    Count,
    DateTimeField,
    FloatField,
    IntegerField,
    Max,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, TruncDay, TruncHour
from django.utils import timezone

from aura_orchestrator.money import MICROS
from telemetry.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_BUCKETS,
    OperationTelemetry,
    RollupWatermark,
    TelemetryRollup,
)

HOUR = timedelta(hours=1)
WATERMARK = "hourly"
BREAKDOWN_FIELDS = ("provider_name", "model_name", "operation_type")
UNNAMED = "unknown"  # provider/model of an operation refused before any route was chosen


# --- Results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statistics:
    """The contract's statistics, plus where they came from and the range they cover."""

    total_operations: int
    successful_operations: int
    failed_operations: int
    cache_hits: int
    cache_hit_rate: float
    total_tokens_in: int
    total_tokens_out: int
    total_retries: int
    total_estimated_cost: Decimal
    average_latency_ms: float
    p50_latency_ms: float
    p95_latency_ms: float
    p99_latency_ms: float
    operations_by_provider: dict[str, int]
    operations_by_type: dict[str, int]
    cost_by_provider: dict[str, Decimal]
    source: str  # "raw": exact percentiles; "rollup": percentiles from the histogram
    since: datetime | None
    until: datetime | None


@dataclass(slots=True)
class _Acc:
    """Sums of one group of operations, from raw rows or rollups (merge with `add`)."""

    operations: int = 0
    successes: int = 0
    cache_hits: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    retries: int = 0
    cost: Decimal = Decimal(0)
    latency_sum_ms: int = 0
    latency_max_ms: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)

    @classmethod
    def of_row(cls, row: dict) -> "_Acc":
        return cls(
            operations=row["operations"] or 0,
            successes=row["successes"] or 0,
            cache_hits=row["cache_hits"] or 0,
            tokens_in=row["tokens_in"] or 0,
            tokens_out=row["tokens_out"] or 0,
            retries=row["retries"] or 0,
            cost=row["cost"] or Decimal(0),
            latency_sum_ms=row["latency_sum_ms"] or 0,
            latency_max_ms=row["latency_max_ms"] or 0,
            histogram=[row[f"h{i}"] or 0 for i in range(LATENCY_BUCKETS)],
        )

    def add(self, other: "_Acc") -> None:
        self.operations += other.operations
        self.successes += other.successes
        self.cache_hits += other.cache_hits
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.retries += other.retries
        self.cost += other.cost
        self.latency_sum_ms += other.latency_sum_ms
        self.latency_max_ms = max(self.latency_max_ms, other.latency_max_ms)
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]

    @property
    def failures(self) -> int:
        return self.operations - self.successes

    @property
    def average_latency_ms(self) -> float:
        return self.latency_sum_ms / self.operations if self.operations else 0.0

    def percentile(self, fraction: float) -> float:
        return histogram_percentile(self.histogram, fraction, max_ms=self.latency_max_ms)

    def as_dict(self) -> dict:
        return {
            "operations": self.operations,
            "successes": self.successes,
            "failures": self.failures,
            "cache_hits": self.cache_hits,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "retries": self.retries,
            "cost": self.cost.quantize(MICROS),
            "error_rate": self.failures / self.operations if self.operations else 0.0,
            "cache_hit_rate": self.cache_hits / self.operations if self.operations else 0.0,
            "average_latency_ms": round(self.average_latency_ms, 3),
            "p95_latency_ms": round(self.percentile(0.95), 3),
        }


# --- Percentiles ----------------------------------------------------------------------------


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate `percentile_cont(f) WITHIN GROUP (ORDER BY x)`."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, *, fraction: float, **extra):
        if not 0 <= fraction <= 1:
            raise ValueError("fraction must be within 0..1")
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def continuous_percentile(sorted_values: list[float], fraction: float) -> float:
    """percentile_cont's definition: linear interpolation between the two closest ranks
    of position fraction·(n-1) in the sorted values."""
    if not sorted_values:
        return 0.0
    position = fraction * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low))


def _percentiles_by_rank(qs: QuerySet, *, count: int, fractions: tuple[float, ...]) -> list[float]:
    """Exact percentiles without percentile_cont (SQLite): fetch only the two values
    around each rank, ordered by latency."""
    if count == 0:
        return [0.0 for _ in fractions]
    ordered = qs.order_by("latency_ms").values_list("latency_ms", flat=True)
    result = []
    for fraction in fractions:
        position = fraction * (count - 1)
        low = math.floor(position)
        pair = list(ordered[low : low + 2])
        result.append(continuous_percentile(pair, position - low) if len(pair) > 1 else pair[0])
    return [float(v) for v in result]


def histogram_percentile(histogram: list[int], fraction: float, *, max_ms: int) -> float:
    """Approximate percentile from bucket counts: find the bucket holding rank
    fraction·(n-1) and interpolate linearly inside it (the last bucket ends at max_ms)."""
    total = sum(histogram)
    if total == 0:
        return 0.0
    rank = fraction * (total - 1)
    seen = 0
    for i, count in enumerate(histogram):
        if count and rank < seen + count:
            low = LATENCY_BOUNDS_MS[i - 1] if i > 0 else 0
            high = LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else max(max_ms, low)
            high = min(high, max(max_ms, low))
            within = min(1.0, (rank - seen + 0.5) / count)
            return float(low + (high - low) * within)
        seen += count
    return float(max_ms)


# --- Aggregation shapes shared by raw rows and rollups -------------------------------------


def raw_sums() -> dict:
    """Aggregates of raw rows in the rollup's shape (histogram as h0…hN counts)."""
    sums = {
        "operations": Count("id"),
        "successes": Count("id", filter=Q(success=True)),
        "cache_hits": Count("id", filter=Q(cache_hit=True)),
        "tokens_in": Sum("tokens_in"),
        "tokens_out": Sum("tokens_out"),
        "retries": Sum("retry_count"),
        "cost": Sum("estimated_cost"),
        "latency_sum_ms": Sum("latency_ms"),
        "latency_max_ms": Max("latency_ms"),
    }
    low = None
    for i in range(LATENCY_BUCKETS):
        high = LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else None
        condition = Q()
        if low is not None:
            condition &= Q(latency_ms__gt=low)
        if high is not None:
            condition &= Q(latency_ms__lte=high)
        sums[f"h{i}"] = Count("id", filter=condition)
        low = high
    return sums


# The rollup columns that add up across rows (latency_max_ms and the histogram aside).
_ADDITIVE = (
    "operations",
    "successes",
    "cache_hits",
    "tokens_in",
    "tokens_out",
    "retries",
    "cost",
    "latency_sum_ms",
)


def _rollup_sums() -> dict:
    sums = {name: Sum(name) for name in _ADDITIVE}
    sums["latency_max_ms"] = Max("latency_max_ms")
    for i in range(LATENCY_BUCKETS):
        sums[f"h{i}"] = Sum(
            Coalesce(Cast(KT(f"latency_histogram__{i}"), BigIntegerField()), 0),
            output_field=BigIntegerField(),
        )
    return sums


# --- Ranges and filters -------------------------------------------------------------------


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + HOUR


def rollup_watermark() -> datetime | None:
    """Hours before this are rolled up and final; None until the rollup job first ran."""
    return (
        RollupWatermark.objects.filter(name=WATERMARK)
        .values_list("complete_until", flat=True)
        .first()
    )


def retention_cutoff(now: datetime) -> datetime:
    """Raw rows before this hour may be pruned; their rollups are final."""
    return floor_hour(now - timedelta(days=settings.AURA["TELEMETRY_RETENTION_DAYS"]))


def _dimension_filter(
    *,
    project_id: int | None,
    provider: str | None,
    model: str | None,
    operation_type: str | None,
) -> Q:
    q = Q()
    if project_id is not None:
        q &= Q(project_id=project_id)
    if provider:
        q &= Q(provider_name=provider)
    if model:
        q &= Q(model_name=model)
    if operation_type:
        q &= Q(operation_type=operation_type)
    return q


def _time_filter(name: str, since: datetime | None, until: datetime | None) -> Q:
    q = Q()
    if since is not None:
        q &= Q(**{f"{name}__gte": since})
    if until is not None:
        q &= Q(**{f"{name}__lt": until})
    return q


@dataclass(frozen=True, slots=True)
class _Split:
    """A range cut into whole rolled-up hours [rollup_from, rollup_to) and raw edges."""

    rollup_from: datetime | None
    rollup_to: datetime

    def raw_edges(self, since: datetime | None, until: datetime | None) -> Q:
        before = (
            _time_filter("started_at", since, self.rollup_from)
            if self.rollup_from is not None
            else None
        )
        after = _time_filter("started_at", self.rollup_to, until)
        return after if before is None else before | after

    def rollup_range(self) -> Q:
        return _time_filter("bucket_start", self.rollup_from, self.rollup_to)


def _split(since: datetime | None, until: datetime | None) -> _Split | None:
    """Which whole hours of the range rollups can answer; None when none can."""
    watermark = rollup_watermark()
    if watermark is None:
        return None
    rollup_from = ceil_hour(since) if since is not None else None
    rollup_to = min(floor_hour(until), watermark) if until is not None else watermark
    if rollup_from is not None and rollup_from >= rollup_to:
        return None
    return _Split(rollup_from=rollup_from, rollup_to=rollup_to)


def _grouped(
    qs: QuerySet, *, group_by: dict, sums: dict, accs: dict[tuple, _Acc], key_names: tuple
) -> None:
    """Run one GROUP BY query and merge its rows into `accs` keyed by `key_names`."""
    for row in qs.annotate(**group_by).values(*key_names).annotate(**sums).order_by():
        key = tuple(row[name] for name in key_names)
        acc = _Acc.of_row(row)
        if key in accs:
            accs[key].add(acc)
        else:
            accs[key] = acc


def _combined(
    *,
    dimensions: Q,
    since: datetime | None,
    until: datetime | None,
    split: _Split | None,
    keys: tuple[str, ...],
    time_bucket: str | None = None,
) -> dict[tuple, _Acc]:
    """Sums grouped by `keys` (and optionally a time bucket "hour"/"day" named `bucket`):
    rollups for the split's whole hours, raw rows for the rest (two queries)."""
    accs: dict[tuple, _Acc] = {}
    raw_group = {}
    rollup_group = {}
    key_names = keys
    if time_bucket is not None:
        trunc = TruncHour if time_bucket == "hour" else TruncDay
        raw_group["bucket"] = trunc("started_at", tzinfo=UTC)
        rollup_group["bucket"] = trunc("bucket_start", tzinfo=UTC)
        key_names = ("bucket", *keys)
    raw = OperationTelemetry.objects.filter(dimensions)
    if split is not None:
        rollups = TelemetryRollup.objects.filter(dimensions & split.rollup_range())
        _grouped(
            rollups, group_by=rollup_group, sums=_rollup_sums(), accs=accs, key_names=key_names
        )
        raw = raw.filter(split.raw_edges(since, until))
    else:
        raw = raw.filter(_time_filter("started_at", since, until))
    _grouped(raw, group_by=raw_group, sums=raw_sums(), accs=accs, key_names=key_names)
    return accs


# --- Statistics ----------------------------------------------------------------------------


def _by_provider_and_type(groups: dict[tuple, _Acc]) -> tuple[dict, dict, dict]:
    by_provider: dict[str, int] = {}
    by_type: dict[str, int] = {}
    cost_by_provider: dict[str, Decimal] = {}
    for (provider, operation_type), acc in sorted(groups.items()):
        provider = provider or UNNAMED
        by_provider[provider] = by_provider.get(provider, 0) + acc.operations
        by_type[operation_type] = by_type.get(operation_type, 0) + acc.operations
        cost_by_provider[provider] = cost_by_provider.get(provider, Decimal(0)) + acc.cost
    return by_provider, by_type, {k: v.quantize(MICROS) for k, v in cost_by_provider.items()}


def _statistics_of(
    total: _Acc,
    groups: dict[tuple, _Acc],
    *,
    percentiles: tuple[float, float, float],
    source: str,
    since: datetime | None,
    until: datetime | None,
) -> Statistics:
    by_provider, by_type, cost_by_provider = _by_provider_and_type(groups)
    n = total.operations
    return Statistics(
        total_operations=n,
        successful_operations=total.successes,
        failed_operations=total.failures,
        cache_hits=total.cache_hits,
        cache_hit_rate=total.cache_hits / n if n else 0.0,
        total_tokens_in=total.tokens_in,
        total_tokens_out=total.tokens_out,
        total_retries=total.retries,
        total_estimated_cost=total.cost.quantize(MICROS),
        average_latency_ms=round(total.average_latency_ms, 3),
        p50_latency_ms=round(percentiles[0], 3),
        p95_latency_ms=round(percentiles[1], 3),
        p99_latency_ms=round(percentiles[2], 3),
        operations_by_provider=by_provider,
        operations_by_type=by_type,
        cost_by_provider=cost_by_provider,
        source=source,
        since=since,
        until=until,
    )


FRACTIONS = (0.5, 0.95, 0.99)


def _raw_statistics(qs: QuerySet, *, since, until) -> Statistics:
    """Exact statistics over raw rows: one aggregate (with percentile_cont on PostgreSQL)
    and one GROUP BY provider, type."""
    sums = raw_sums()
    if connection.vendor == "postgresql":
        sums.update(
            {f"p{i}": PercentileCont("latency_ms", fraction=f) for i, f in enumerate(FRACTIONS)}
        )
    row = qs.aggregate(**sums)
    total = _Acc.of_row(row)
    if connection.vendor == "postgresql":
        percentiles = tuple(float(row[f"p{i}"] or 0.0) for i in range(len(FRACTIONS)))
    else:
        percentiles = tuple(_percentiles_by_rank(qs, count=total.operations, fractions=FRACTIONS))
    groups: dict[tuple, _Acc] = {}
    _grouped(
        qs,
        group_by={},
        sums=raw_sums(),
        accs=groups,
        key_names=("provider_name", "operation_type"),
    )
    return _statistics_of(
        total, groups, percentiles=percentiles, source="raw", since=since, until=until
    )


def _wants_rollups(*, since: datetime | None, until: datetime | None, rolled_rows: int) -> bool:
    now = timezone.now()
    max_days = settings.AURA.get("STATISTICS_RAW_MAX_DAYS", 7)
    max_rows = settings.AURA.get("STATISTICS_RAW_MAX_ROWS", 500_000)
    if since is None or since < retention_cutoff(now):
        return True  # all time, or raw rows may already be pruned
    if (until or now) - since > timedelta(days=max_days):
        return True
    return rolled_rows > max_rows


def statistics(
    *,
    project_id: int | None,
    since: datetime | None = None,
    until: datetime | None = None,
    provider: str | None = None,
    model: str | None = None,
    operation_type: str | None = None,
    session_id: str | None = None,
    prefer_rollups: bool = False,
) -> Statistics:
    """Statistics of the operations in [since, until) matching the filters.

    `project_id=None` means every project (staff). With `session_id`, always exact from
    raw rows (indexed by project, session, start). `prefer_rollups` serves every rolled-up
    hour from rollups whatever the range (approximate percentiles, fast): for dashboards,
    where a glance matters more than the last millisecond of p95."""
    dimensions = _dimension_filter(
        project_id=project_id, provider=provider, model=model, operation_type=operation_type
    )
    if session_id is not None:
        dimensions &= Q(session_id=session_id)
        in_range = dimensions & _time_filter("started_at", since, until)
        qs = OperationTelemetry.objects.filter(in_range)
        return _raw_statistics(qs, since=since, until=until)

    split = _split(since, until)
    if split is not None:
        rolled: dict[tuple, _Acc] = {}
        _grouped(
            TelemetryRollup.objects.filter(dimensions & split.rollup_range()),
            group_by={},
            sums=_rollup_sums(),
            accs=rolled,
            key_names=("provider_name", "operation_type"),
        )
        rolled_rows = sum(acc.operations for acc in rolled.values())
        if prefer_rollups or _wants_rollups(since=since, until=until, rolled_rows=rolled_rows):
            groups = rolled
            _grouped(
                OperationTelemetry.objects.filter(dimensions & split.raw_edges(since, until)),
                group_by={},
                sums=raw_sums(),
                accs=groups,
                key_names=("provider_name", "operation_type"),
            )
            total = _Acc()
            for acc in groups.values():
                total.add(acc)
            percentiles = tuple(total.percentile(f) for f in FRACTIONS)
            return _statistics_of(
                total, groups, percentiles=percentiles, source="rollup", since=since, until=until
            )
    qs = OperationTelemetry.objects.filter(dimensions & _time_filter("started_at", since, until))
    return _raw_statistics(qs, since=since, until=until)


# --- Dashboards -----------------------------------------------------------------------------


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
    dimensions = _dimension_filter(
        project_id=project_id, provider=provider, model=model, operation_type=operation_type
    )
    accs = _combined(
        dimensions=dimensions,
        since=since,
        until=until,
        split=_split(since, until),
        keys=(),
        time_bucket=bucket,
    )
    by_start = {key[0].astimezone(UTC): acc for key, acc in accs.items()}
    return _points(by_start, since=since, until=until, bucket=bucket)


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
    dimensions = _dimension_filter(
        project_id=project_id, provider=provider, model=model, operation_type=operation_type
    )
    accs = _combined(
        dimensions=dimensions, since=since, until=until, split=_split(since, until), keys=(by,)
    )
    rows = [{"key": key[0] or UNNAMED, **acc.as_dict()} for key, acc in accs.items()]
    return sorted(rows, key=lambda r: (-r["operations"], r["key"]))


def telemetry_session_exists(*, project_id: int, session_id: str) -> bool:
    """Whether the project has any operation of this session (the session index)."""
    return OperationTelemetry.objects.filter(project_id=project_id, session_id=session_id).exists()


# --- Dashboard overview: every aggregate of a range and its previous period in two passes ----

OVERVIEW_SETS = ("bucket", "provider_name", "model_name", "operation_type")
_SUMMED = (*_ADDITIVE, *(f"h{i}" for i in range(LATENCY_BUCKETS)))
OVERVIEW_WORK_MEM = "32MB"
# PostgreSQL's GROUPING() bitmask over OVERVIEW_SETS: a bit is set for each column that is
# not grouped in the row's set.
_GROUPING_BITS = {
    0b0111: "bucket",
    0b1011: "provider_name",
    0b1101: "model_name",
    0b1110: "operation_type",
}


@dataclass(frozen=True, slots=True)
class OverviewData:
    """What the overview shows for [since, until) and the period of equal length before."""

    current: Statistics
    previous: Statistics
    series: list[dict]
    by_provider: list[dict]
    by_model: list[dict]
    by_type: list[dict]


def _intervals_q(name: str, intervals: list[tuple[datetime, datetime]]) -> Q:
    """`name` within any of the (non-empty) half-open intervals."""
    q = _time_filter(name, *intervals[0])
    for start, end in intervals[1:]:
        q |= _time_filter(name, start, end)
    return q


def overview_intervals(
    *, previous_since: datetime, since: datetime, until: datetime, watermark: datetime | None
) -> tuple[list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]] | None:
    """[previous_since, until) cut into whole rolled-up hours and raw intervals: the hours
    before the watermark except the partial ones at previous_since and since (each period
    must be summed on its own) and until. None when the current period [since, until)
    holds no rolled-up hour."""
    if watermark is None:
        return None
    end = min(floor_hour(until), watermark)
    rolled = [
        (a, b)
        for a, b in (
            (ceil_hour(previous_since), min(floor_hour(since), end)),
            (ceil_hour(since), end),
        )
        if a < b
    ]
    if not rolled or rolled[-1][0] < since:
        return None
    raw, moment = [], previous_since
    for a, b in rolled:
        if moment < a:
            raw.append((moment, a))
        moment = b
    if moment < until:
        raw.append((moment, until))
    return rolled, raw


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


def _sets_in_python(rows, accs: dict[tuple, _Acc]) -> None:
    """Level two, portable: every level-one row counts once in each of the four sets."""
    for row in rows:
        acc = _Acc.of_row(row)
        for name in OVERVIEW_SETS:
            key = (name, row["period"], _utc(row[name]) if name == "bucket" else row[name])
            if key in accs:
                accs[key].add(acc)
            else:
                accs[key] = _Acc.of_row(row)


def _sets_in_postgresql(qs: QuerySet, accs: dict[tuple, _Acc]) -> None:
    """Level two on PostgreSQL: GROUPING SETS over the level-one rows (a few thousand at
    most), so only the handful of result rows cross the wire."""
    inner, params = qs.query.sql_with_params()
    sums = ", ".join(
        f'SUM("{name}"){"" if name == "cost" else "::bigint"} AS "{name}"' for name in _SUMMED
    )
    sql = (
        f'SELECT GROUPING("bucket", "provider_name", "model_name", "operation_type") AS g, '
        f'"period", "bucket", "provider_name", "model_name", "operation_type", {sums}, '
        f'MAX("latency_max_ms") AS "latency_max_ms" FROM ({inner}) AS level_one '
        f'GROUP BY "period", GROUPING SETS (("bucket"), ("provider_name"), ("model_name"), '
        f'("operation_type"))'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [c.name for c in cursor.description]
        rows = cursor.fetchall()
    for values in rows:
        row = dict(zip(names, values, strict=True))
        name = _GROUPING_BITS[row["g"]]
        value = _utc(row[name]) if name == "bucket" else row[name]
        key = (name, row["period"], value)
        acc = _Acc.of_row(row)
        if key in accs:
            accs[key].add(acc)
        else:
            accs[key] = acc


def _sets(qs: QuerySet, accs: dict[tuple, _Acc], *, in_sql: bool | None = None) -> None:
    if in_sql if in_sql is not None else connection.vendor == "postgresql":
        _sets_in_postgresql(qs, accs)
    else:
        _sets_in_python(qs, accs)


def _rows_of(accs: dict[tuple, _Acc], name: str, period: int) -> list[dict]:
    rows = [
        {"key": key or UNNAMED, **acc.as_dict()}
        for (set_name, p, key), acc in accs.items()
        if set_name == name and p == period
    ]
    return sorted(rows, key=lambda r: (-r["operations"], r["key"]))


def _period_statistics(accs: dict[tuple, _Acc], period: int, *, since, until) -> Statistics:
    total = _Acc()
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
    statistics = _statistics_of(
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


def _points(by_start: dict[datetime, _Acc], *, since: datetime, until: datetime, bucket: str):
    """One dict per hour or day of [since, until), empty buckets included, oldest first."""
    step = HOUR if bucket == "hour" else timedelta(days=1)
    start = floor_hour(since)
    if bucket == "day":
        start = start.replace(hour=0)
    points = []
    moment = start
    while moment < until:
        points.append({"bucket_start": moment, **by_start.get(moment, _Acc()).as_dict()})
        moment += step
    return points


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
    dimensions = _dimension_filter(
        project_id=project_id, provider=None, model=None, operation_type=None
    )
    accs: dict[tuple, _Acc] = {}
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # The level-one hash table of a 30-day range (both periods: ~60,000 rollup rows
            # into ~1,000 groups of 23 sums) outgrows the default 4 MB, and PostgreSQL then
            # sorts the rows on disk instead (105 vs 63 ms at 10 M telemetry rows). For
            # this transaction only.
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL work_mem = '{OVERVIEW_WORK_MEM}'")
        passes = [(TelemetryRollup, "bucket_start", rolled, _rollup_sums())]
        if raw:
            passes.append((OperationTelemetry, "started_at", raw, raw_sums()))
        for model, time_field, intervals, sums in passes:
            rows = model.objects.filter(dimensions & _intervals_q(time_field, intervals))
            _sets(
                _period_groups(rows, time_field=time_field, since=since, bucket=bucket, sums=sums),
                accs,
            )
    by_start = {key: acc for (name, p, key), acc in accs.items() if name == "bucket" and p == 1}
    return OverviewData(
        current=_period_statistics(accs, 1, since=since, until=until),
        previous=_period_statistics(accs, 0, since=previous_since, until=since),
        series=_points(by_start, since=since, until=until, bucket=bucket),
        by_provider=_rows_of(accs, "provider_name", 1),
        by_model=_rows_of(accs, "model_name", 1),
        by_type=_rows_of(accs, "operation_type", 1),
    )
