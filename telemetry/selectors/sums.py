"""Sums of operations in the rollup's shape, from raw rows or rollups alike: the
aggregates, the accumulator that merges them, and the two-query read of a range (rollups
for its whole rolled-up hours, raw rows for the rest)."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Aggregate, BigIntegerField, Count, Max, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, TruncDay, TruncHour

from aura_orchestrator.money import MICROS
from telemetry.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_BUCKETS,
    OperationTelemetry,
    TelemetryRollup,
)
from telemetry.selectors.hours import Split, time_filter
from telemetry.selectors.percentiles import histogram_percentile

UNNAMED = "unknown"  # provider/model of an operation refused before any route was chosen

# The rollup columns that add up across rows (latency_max_ms and the histogram aside).
ADDITIVE = (
    "operations",
    "successes",
    "cache_hits",
    "tokens_in",
    "tokens_out",
    "retries",
    "cost",
    "cache_savings",
    "latency_sum_ms",
)


@dataclass(slots=True)
class Acc:
    """Sums of one group of operations, from raw rows or rollups (merge with `add`)."""

    operations: int = 0
    successes: int = 0
    cache_hits: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    retries: int = 0
    cost: Decimal = Decimal(0)
    cache_savings: Decimal = Decimal(0)  # USD prompt caching saved (OperationTelemetry's)
    latency_sum_ms: int = 0
    latency_max_ms: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)

    @classmethod
    def of_row(cls, row: dict) -> "Acc":
        return cls(
            operations=row["operations"] or 0,
            successes=row["successes"] or 0,
            cache_hits=row["cache_hits"] or 0,
            tokens_in=row["tokens_in"] or 0,
            tokens_out=row["tokens_out"] or 0,
            retries=row["retries"] or 0,
            cost=row["cost"] or Decimal(0),
            cache_savings=row["cache_savings"] or Decimal(0),
            latency_sum_ms=row["latency_sum_ms"] or 0,
            latency_max_ms=row["latency_max_ms"] or 0,
            histogram=[row[f"h{i}"] or 0 for i in range(LATENCY_BUCKETS)],
        )

    def add(self, other: "Acc") -> None:
        self.operations += other.operations
        self.successes += other.successes
        self.cache_hits += other.cache_hits
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.retries += other.retries
        self.cost += other.cost
        self.cache_savings += other.cache_savings
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


def merge(accs: dict[tuple, Acc], key: tuple, acc: Acc) -> None:
    """Add `acc` to the group `key` of `accs`."""
    if key in accs:
        accs[key].add(acc)
    else:
        accs[key] = acc


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
        "cache_savings": Sum("cache_savings"),
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


def rollup_sums() -> dict:
    """The same aggregates over rollup rows."""
    sums: dict[str, Aggregate] = {name: Sum(name) for name in ADDITIVE}
    sums["latency_max_ms"] = Max("latency_max_ms")
    for i in range(LATENCY_BUCKETS):
        sums[f"h{i}"] = Sum(
            Coalesce(Cast(KT(f"latency_histogram__{i}"), BigIntegerField()), 0),
            output_field=BigIntegerField(),
        )
    return sums


def dimension_filter(
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


def grouped(
    qs: QuerySet, *, group_by: dict, sums: dict, accs: dict[tuple, Acc], key_names: tuple
) -> None:
    """Run one GROUP BY query and merge its rows into `accs` keyed by `key_names`."""
    for row in qs.annotate(**group_by).values(*key_names).annotate(**sums).order_by():
        merge(accs, tuple(row[name] for name in key_names), Acc.of_row(row))


def combined(
    *,
    dimensions: Q,
    since: datetime | None,
    until: datetime | None,
    split: Split | None,
    keys: tuple[str, ...],
    time_bucket: str | None = None,
) -> dict[tuple, Acc]:
    """Sums grouped by `keys` (and optionally a time bucket "hour"/"day" named `bucket`):
    rollups for the split's whole hours, raw rows for the rest (two queries)."""
    accs: dict[tuple, Acc] = {}
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
        grouped(rollups, group_by=rollup_group, sums=rollup_sums(), accs=accs, key_names=key_names)
        raw = raw.filter(split.raw_edges(since, until))
    else:
        raw = raw.filter(time_filter("started_at", since, until))
    grouped(raw, group_by=raw_group, sums=raw_sums(), accs=accs, key_names=key_names)
    return accs
