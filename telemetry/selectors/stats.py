"""`statistics`: the contract's statistics of a range, from raw rows (exact percentiles)
or, for long, large or old ranges, from rollups plus the raw edges (percentiles from the
latency histogram)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from aura_orchestrator.money import MICROS
from telemetry.models import OperationTelemetry, TelemetryRollup
from telemetry.selectors.hours import retention_cutoff, split_range, time_filter
from telemetry.selectors.sums import UNNAMED, Acc, dimension_filter, grouped, raw_sums, rollup_sums
from telemetry.selectors.vendor import aggregate_with_percentiles

FRACTIONS = (0.5, 0.95, 0.99)


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
    total_cache_savings: Decimal  # USD prompt caching saved (negative: writes cost more)
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


def _by_provider_and_type(groups: dict[tuple, Acc]) -> tuple[dict, dict, dict]:
    by_provider: dict[str, int] = {}
    by_type: dict[str, int] = {}
    cost_by_provider: dict[str, Decimal] = {}
    for (provider, operation_type), acc in sorted(groups.items()):
        provider = provider or UNNAMED
        by_provider[provider] = by_provider.get(provider, 0) + acc.operations
        by_type[operation_type] = by_type.get(operation_type, 0) + acc.operations
        cost_by_provider[provider] = cost_by_provider.get(provider, Decimal(0)) + acc.cost
    return by_provider, by_type, {k: v.quantize(MICROS) for k, v in cost_by_provider.items()}


def statistics_of(
    total: Acc,
    groups: dict[tuple, Acc],
    *,
    percentiles: tuple[float, ...],
    source: str,
    since: datetime | None,
    until: datetime | None,
) -> Statistics:
    """`Statistics` of the sums `total`, with the counts and costs of `groups` keyed by
    (provider, operation type)."""
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
        total_cache_savings=total.cache_savings.quantize(MICROS),
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


def _raw_statistics(qs: QuerySet, *, since, until) -> Statistics:
    """Exact statistics over raw rows: one aggregate (with the percentiles where the
    database computes them) and one GROUP BY provider, type."""
    row, percentiles = aggregate_with_percentiles(
        qs, sums=raw_sums(), count="operations", field="latency_ms", fractions=FRACTIONS
    )
    total = Acc.of_row(row)
    groups: dict[tuple, Acc] = {}
    grouped(
        qs,
        group_by={},
        sums=raw_sums(),
        accs=groups,
        key_names=("provider_name", "operation_type"),
    )
    return statistics_of(
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
    dimensions = dimension_filter(
        project_id=project_id, provider=provider, model=model, operation_type=operation_type
    )
    if session_id is not None:
        dimensions &= Q(session_id=session_id)
        in_range = dimensions & time_filter("started_at", since, until)
        qs = OperationTelemetry.objects.filter(in_range)
        return _raw_statistics(qs, since=since, until=until)

    split = split_range(since, until)
    if split is not None:
        rolled: dict[tuple, Acc] = {}
        grouped(
            TelemetryRollup.objects.filter(dimensions & split.rollup_range()),
            group_by={},
            sums=rollup_sums(),
            accs=rolled,
            key_names=("provider_name", "operation_type"),
        )
        rolled_rows = sum(acc.operations for acc in rolled.values())
        if prefer_rollups or _wants_rollups(since=since, until=until, rolled_rows=rolled_rows):
            groups = rolled
            grouped(
                OperationTelemetry.objects.filter(dimensions & split.raw_edges(since, until)),
                group_by={},
                sums=raw_sums(),
                accs=groups,
                key_names=("provider_name", "operation_type"),
            )
            total = Acc()
            for acc in groups.values():
                total.add(acc)
            percentiles = tuple(total.percentile(f) for f in FRACTIONS)
            return statistics_of(
                total, groups, percentiles=percentiles, source="rollup", since=since, until=until
            )
    qs = OperationTelemetry.objects.filter(dimensions & time_filter("started_at", since, until))
    return _raw_statistics(qs, since=since, until=until)


def telemetry_session_exists(*, project_id: int, session_id: str) -> bool:
    """Whether the project has any operation of this session (the session index)."""
    return OperationTelemetry.objects.filter(project_id=project_id, session_id=session_id).exists()
