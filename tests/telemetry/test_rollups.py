"""Hourly rollups: idempotent, equal to the raw rows, and what long ranges read."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from aura_orchestrator.tenancy.services import project_get_or_create
from telemetry.models import OperationTelemetry, RollupWatermark, TelemetryRollup
from telemetry.selectors import breakdown, floor_hour, rollup_watermark, statistics, timeseries
from telemetry.services import (
    telemetry_prune,
    telemetry_rollup_backfill,
    telemetry_rollup_hours,
    telemetry_rollup_recent,
)
from tests.telemetry import dataset
from tests.telemetry.dataset import make_dataset, row

pytestmark = pytest.mark.django_db

ROLLUP_FIELDS = (
    "bucket_start",
    "project_id",
    "provider_name",
    "model_name",
    "operation_type",
    "operations",
    "successes",
    "failures",
    "cache_hits",
    "tokens_in",
    "tokens_out",
    "retries",
    "cost",
    "latency_sum_ms",
    "latency_max_ms",
    "latency_histogram",
)


def _snapshot():
    return sorted(
        TelemetryRollup.objects.values_list(*ROLLUP_FIELDS),
        key=lambda r: (r[0], r[1] or 0, r[2], r[3], r[4]),
    )


@pytest.fixture
def rows(project):
    created = make_dataset(project)
    # The next hour too, so that rollups span several buckets.
    make_dataset(project, start=dataset.base_hour() + timedelta(hours=1))
    return created


def test_rollup_is_idempotent(project, rows):
    """Rolling the same hours up twice leaves exactly the same rollup rows."""
    start, end = dataset.base_hour(), dataset.base_hour() + timedelta(hours=2)
    first_written = telemetry_rollup_hours(start=start, end=end)
    first = _snapshot()
    assert telemetry_rollup_hours(start=start, end=end) == first_written
    assert _snapshot() == first
    # One row per (hour, provider/type) pair: 2 hours x 2 pairs.
    assert len(first) == 4


def test_rollup_sums_equal_the_raw_rows(project, rows):
    """Counts, tokens, cost, latency sum/max and the histogram add up to the raw rows."""
    telemetry_rollup_hours(start=dataset.base_hour(), end=dataset.base_hour() + timedelta(hours=2))
    primary = TelemetryRollup.objects.get(bucket_start=dataset.base_hour(), provider_name="primary")
    # Rows 0-5: latencies 70 10 1000 40 20 90; row 3 failed; rows 0-2 cache hits.
    assert primary.operations == 6
    assert primary.successes == 5
    assert primary.failures == 1
    assert primary.cache_hits == 3
    assert primary.tokens_in == 600
    assert primary.retries == 1
    assert primary.cost == dataset.PRIMARY_COST
    assert primary.latency_sum_ms == 1230
    assert primary.latency_max_ms == 1000
    # Buckets: <=5, <=10, <=25, <=50, <=100, <=250, <=500, <=1000, ...
    assert primary.latency_histogram == [0, 1, 1, 1, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert sum(r.operations for r in TelemetryRollup.objects.all()) == 20


def test_rollup_recomputes_an_hour_after_late_rows(project, rows):
    """A row that lands after its hour was rolled up is counted on the next run."""
    start, end = dataset.base_hour(), dataset.base_hour() + timedelta(hours=1)
    telemetry_rollup_hours(start=start, end=end)
    row(project, started_at=start + timedelta(minutes=59), latency_ms=3).save()
    telemetry_rollup_hours(start=start, end=end)
    assert sum(TelemetryRollup.objects.values_list("operations", flat=True)) == 11


def test_statistics_from_rollups_equal_raw_totals(project, rows):
    """With a watermark, a long range is served from rollups plus the raw edges; every
    total equals the exact raw answer, percentiles are close."""
    other = project_get_or_create(name="other")
    row(other, started_at=dataset.base_hour(), latency_ms=9000).save()
    raw = statistics(project_id=project.pk)
    assert raw.source == "raw"  # no watermark yet: the rollups cannot be trusted
    telemetry_rollup_recent(hours=4)
    since = timezone.now() - timedelta(days=30)
    rolled = statistics(project_id=project.pk, since=since)
    assert rolled.source == "rollup"
    for name in (
        "total_operations",
        "successful_operations",
        "failed_operations",
        "cache_hits",
        "total_tokens_in",
        "total_tokens_out",
        "total_retries",
        "total_estimated_cost",
        "total_cache_savings",
        "average_latency_ms",
        "operations_by_provider",
        "operations_by_type",
        "cost_by_provider",
    ):
        assert getattr(rolled, name) == getattr(raw, name), name
    assert 50 <= rolled.p50_latency_ms <= 100  # exact: 55, in bucket (50, 100]
    # A short range stays exact.
    short = statistics(project_id=project.pk, since=dataset.base_hour())
    assert short.source == "raw"
    assert short.p95_latency_ms == raw.p95_latency_ms


def test_rollup_statistics_add_raw_rows_newer_than_the_watermark(project, rows):
    """Hours after the watermark (not rolled up yet) are read from raw rows."""
    telemetry_rollup_recent(hours=4)
    RollupWatermark.objects.update(complete_until=dataset.base_hour() + timedelta(hours=1))
    TelemetryRollup.objects.filter(
        bucket_start__gte=dataset.base_hour() + timedelta(hours=1)
    ).delete()
    stats = statistics(project_id=project.pk, since=timezone.now() - timedelta(days=30))
    assert stats.source == "rollup"
    assert stats.total_operations == 20


@override_settings(
    AURA={**__import__("django.conf").conf.settings.AURA, "STATISTICS_RAW_MAX_ROWS": 5}
)
def test_many_rows_switch_a_short_range_to_rollups(project, rows):
    """A short range with more rolled-up operations than the raw limit uses rollups."""
    telemetry_rollup_recent(hours=4)
    stats = statistics(project_id=project.pk, since=dataset.base_hour())
    assert stats.source == "rollup"
    assert stats.total_operations == 20


def test_dashboards_may_prefer_rollups_for_a_short_range(project, rows):
    """`prefer_rollups` serves a short range from rollups (what the overview asks for);
    the same range stays exact without it, and the totals agree."""
    telemetry_rollup_recent(hours=4)
    since = dataset.base_hour()
    exact = statistics(project_id=project.pk, since=since)
    fast = statistics(project_id=project.pk, since=since, prefer_rollups=True)
    assert (exact.source, fast.source) == ("raw", "rollup")
    assert fast.total_operations == exact.total_operations == 20
    assert fast.total_estimated_cost == exact.total_estimated_cost


def test_timeseries_and_breakdown_add_up(project, rows):
    """The dashboards' series and breakdowns count every operation once."""
    telemetry_rollup_recent(hours=4)
    since = dataset.base_hour() - timedelta(hours=1)
    until = floor_hour(timezone.now()) + timedelta(hours=1)
    points = timeseries(project_id=project.pk, since=since, until=until, bucket="hour")
    assert [p["bucket_start"] for p in points][:2] == [since, dataset.base_hour()]
    assert [p["operations"] for p in points] == [0, 10, 10, 0]
    assert points[1]["cost"] == dataset.TOTAL_COST
    assert points[1]["failures"] == 2
    days = timeseries(project_id=project.pk, since=since, until=until, bucket="day")
    assert sum(p["operations"] for p in days) == 20
    by_provider = breakdown(project_id=project.pk, since=since, until=until, by="provider_name")
    assert [(r["key"], r["operations"]) for r in by_provider] == [("primary", 12), ("backup", 8)]
    by_type = breakdown(project_id=project.pk, since=since, until=until, by="operation_type")
    assert {r["key"]: r["cost"] for r in by_type} == {
        "planning": dataset.PRIMARY_COST * 2,
        "scripting": dataset.BACKUP_COST * 2,
    }


def test_rollup_recent_starts_at_the_oldest_row_and_sets_the_watermark(project, rows):
    """The first run backfills from the oldest raw row; the watermark trails now by the
    settle margin."""
    old = timezone.now() - timedelta(days=3)
    row(project, started_at=old).save()
    telemetry_rollup_recent(hours=1)
    assert TelemetryRollup.objects.filter(bucket_start=floor_hour(old)).exists()
    assert rollup_watermark() == floor_hour(timezone.now() - timedelta(minutes=15))


def test_prune_deletes_old_raw_rows_only_after_rollup(project, rows):
    """Raw rows past the retention go, in batches, once rolled up; rollups stay."""
    old = floor_hour(timezone.now() - timedelta(days=100)) + timedelta(minutes=10)
    for minutes in range(5):
        row(project, started_at=old + timedelta(minutes=minutes)).save()
    assert telemetry_prune() == 0  # nothing rolled up yet
    telemetry_rollup_backfill(since=old, now=timezone.now())
    # The backfill leaves hours past the retention alone: they are rolled up here by
    # an explicit call with `now` in their past, as the periodic job would have done.
    telemetry_rollup_hours(start=old, end=old + timedelta(hours=1), now=old)
    assert telemetry_prune(batch_size=2) == 5
    assert OperationTelemetry.objects.count() == 20
    assert TelemetryRollup.objects.filter(bucket_start=floor_hour(old)).get().operations == 5
    # The pruned hour is still counted by all-time statistics (from its rollup).
    assert statistics(project_id=project.pk).total_operations == 25
