"""The overview's two-pass aggregation (`telemetry.selectors.overview`): rollups for the
rolled-up hours of both periods, raw rows for the rest, grouped four ways at once. It must
give what the per-widget selectors give (statistics, timeseries, breakdowns) and, for every
total, what raw rows alone give."""

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from aura_orchestrator.tenancy.services import project_get_or_create
from telemetry.dashboard_selectors import _overview_raw, overview_get
from telemetry.models import RollupWatermark, TelemetryRollup
from telemetry.selectors import floor_hour, overview, overview_intervals, raw_sums
from telemetry.selectors.overview_passes import _period_groups, _sets
from telemetry.selectors.sums import Acc
from telemetry.services import telemetry_rollup_backfill
from tests.dashboard.conftest import make_operation

pytestmark = pytest.mark.django_db

RANGES = [(timedelta(hours=24), "hour"), (timedelta(days=7), "hour"), (timedelta(days=30), "day")]
TOTALS = (
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
)


def _spread(project, other, now: datetime) -> None:
    """Operations around every boundary of the 24 h, 7 d and 30 d ranges ending at `now`
    and of their previous periods: the partial hours at both starts, whole hours, the hour
    that holds `since` (split between the periods) and the hours after the watermark."""
    offsets = [timedelta(minutes=m) for m in (-11, -1, 1, 11)]
    moments = [now - timedelta(minutes=m) for m in (2, 9, 40, 70, 130)]
    for length, _ in RANGES:
        for edge in (now - length, now - 2 * length):
            moments += [edge + offset for offset in offsets]
        moments += [now - length + timedelta(hours=h, minutes=17) for h in (1, 5)]
        moments += [now - 2 * length + timedelta(hours=h, minutes=29) for h in (2, 7)]
    for i, started_at in enumerate(moments):
        make_operation(
            project if i % 3 else other,
            started_at=started_at,
            provider_name=("primary", "backup", "")[i % 3],
            model_name=("sim-gpt", "mini")[i % 2],
            operation_type=("planning", "scripting", "creative", "completion")[i % 4],
            latency_ms=(7, 40, 90, 300, 1200, 4000, 45000)[i % 7],
            success=i % 5 != 0,
            cache_hit=i % 4 == 1,
            retry_count=i % 2,
            tokens_in=100 + i,
            estimated_cost=Decimal("0.000123") * (i % 6),
            cache_savings=Decimal("0.000041") * (i % 5 - 1),  # negative too: writes dearer
        )


@pytest.fixture
def spread(project):
    other = project_get_or_create(name="other")
    now = timezone.now()
    _spread(project, other, now)
    telemetry_rollup_backfill(since=now - timedelta(days=61), now=now)
    assert TelemetryRollup.objects.exists()
    return now, project, other


@pytest.mark.parametrize(("length", "bucket"), RANGES)
@pytest.mark.parametrize("scope", ["all", "project"])
def test_overview_equals_the_per_widget_selectors(spread, length, bucket, scope):
    """Same statistics (percentiles included: the same histograms), series and breakdowns
    as two `statistics` calls, one `timeseries` and three `breakdown`s."""
    now, project, _ = spread
    project_id = project.pk if scope == "project" else None
    since = now - length
    merged = overview(project_id=project_id, since=since, until=now, bucket=bucket)
    assert merged is not None
    assert merged.current.total_operations > 0 and merged.previous.total_operations > 0
    separate = _overview_raw(project_id=project_id, since=since, until=now, bucket=bucket)
    for field in fields(merged):
        assert getattr(merged, field.name) == getattr(separate, field.name), field.name


@pytest.mark.parametrize(("length", "bucket"), RANGES)
def test_overview_totals_equal_raw_rows_alone(spread, length, bucket):
    """Without rollups (no watermark) raw rows answer everything; every total agrees."""
    now, _, _ = spread
    since = now - length
    merged = overview(project_id=None, since=since, until=now, bucket=bucket)
    RollupWatermark.objects.all().delete()
    assert overview(project_id=None, since=since, until=now, bucket=bucket) is None
    raw = _overview_raw(project_id=None, since=since, until=now, bucket=bucket)
    assert (raw.current.source, merged.current.source) == ("raw", "rollup")
    for name in TOTALS:
        assert getattr(merged.current, name) == getattr(raw.current, name), name
        assert getattr(merged.previous, name) == getattr(raw.previous, name), name
    assert [p["operations"] for p in merged.series] == [p["operations"] for p in raw.series]
    assert [p["cost"] for p in merged.series] == [p["cost"] for p in raw.series]
    for name in ("by_provider", "by_model", "by_type"):
        assert [(r["key"], r["operations"], r["cost"]) for r in getattr(merged, name)] == [
            (r["key"], r["operations"], r["cost"]) for r in getattr(raw, name)
        ], name


@pytest.mark.usefixtures("spread")
def test_the_page_uses_the_merged_pass_once_rolled_up(staff_client):
    """The overview view reads the merged pass when there are rollups, with the same
    numbers, and says that they come from rollups."""
    response = staff_client.get("/dashboard/?range=7d")
    page = response.context["overview"]
    assert page.current.source == "rollup"
    assert b"from hourly rollups" in response.content
    direct = overview_get(project_id=None, since=page.since, until=page.until)
    assert page.current == direct.current and page.series == direct.series


# GROUPING SETS is PostgreSQL's: on SQLite the Python fallback is the only path, so the
# comparison exists only there (not collected, rather than skipped, on SQLite).
if connection.vendor == "postgresql":

    def test_grouping_sets_in_sql_equal_the_python_fallback(spread):
        """PostgreSQL groups the level-one rows with GROUPING SETS; SQLite in Python. Both
        give the same sums for every set."""
        now, _, _ = spread
        from telemetry.models import OperationTelemetry

        for bucket in ("hour", "day"):
            qs = _period_groups(
                OperationTelemetry.objects.all(),
                time_field="started_at",
                since=now - timedelta(days=7),
                bucket=bucket,
                sums=raw_sums(),
            )
            in_sql: dict[tuple, Acc] = {}
            in_python: dict[tuple, Acc] = {}
            _sets(qs, in_sql, in_sql=True)
            _sets(qs, in_python, in_sql=False)
            assert in_sql == in_python
            assert {key[0] for key in in_sql} == {
                "bucket",
                "provider_name",
                "model_name",
                "operation_type",
            }


def _at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 10, hour, minute, tzinfo=UTC)


def test_intervals_cover_both_periods_once():
    """Rolled-up whole hours and raw intervals partition [previous_since, until): the
    hour holding `since` is raw (it belongs to both periods), and so is everything from
    the watermark on."""
    rolled, raw = overview_intervals(
        previous_since=_at(2, 20), since=_at(8, 20), until=_at(14, 20), watermark=_at(13)
    )
    assert rolled == [(_at(3), _at(8)), (_at(9), _at(13))]
    assert raw == [(_at(2, 20), _at(3)), (_at(8), _at(9)), (_at(13), _at(14, 20))]
    # Whole hours: no partial hour to read raw, except after the watermark.
    rolled, raw = overview_intervals(
        previous_since=_at(2), since=_at(8), until=_at(14), watermark=_at(14)
    )
    assert rolled == [(_at(2), _at(8)), (_at(8), _at(14))]
    assert raw == []


def test_intervals_none_without_a_rolled_up_hour_in_the_current_period():
    """No watermark, or a watermark before the current period's first whole hour: the
    caller reads raw rows (exact percentiles)."""
    kwargs = {"previous_since": _at(2, 20), "since": _at(8, 20), "until": _at(14, 20)}
    assert overview_intervals(**kwargs, watermark=None) is None
    assert overview_intervals(**kwargs, watermark=_at(9)) is None
    assert overview_intervals(**kwargs, watermark=_at(10)) is not None


def test_rows_after_the_watermark_are_counted_once(project):
    """A watermark that trails by several hours: the newest hours come from raw rows,
    and an hour both rolled up and after the watermark is not counted twice."""
    now = timezone.now()
    for hours in (1, 2, 3, 5, 20):
        make_operation(project, started_at=now - timedelta(hours=hours, minutes=3))
    telemetry_rollup_backfill(since=now - timedelta(days=2), now=now)
    RollupWatermark.objects.update(complete_until=floor_hour(now) - timedelta(hours=3))
    data = overview(project_id=None, since=now - timedelta(hours=24), until=now, bucket="hour")
    assert data.current.total_operations == 5
    assert sum(p["operations"] for p in data.series) == 5
