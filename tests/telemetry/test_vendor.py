"""`telemetry.selectors.vendor`, the one seam between telemetry's reads and the database:
PostgreSQL's own SQL and the portable equivalents give the same answers."""

import pytest
from django.db import connection

from telemetry.admin import EstimatedCountPaginator
from telemetry.models import OperationTelemetry
from telemetry.selectors.percentiles import continuous_percentile
from telemetry.selectors.sums import raw_sums
from telemetry.selectors.vendor import aggregate_with_percentiles, estimated_rows
from tests.telemetry import dataset
from tests.telemetry.dataset import make_dataset

pytestmark = pytest.mark.django_db


def test_percentiles_come_with_the_sums_and_follow_percentile_cont(project):
    """The aggregate's row holds the sums; the percentiles are percentile_cont's, from
    SQL on PostgreSQL and from the two closest ranks elsewhere."""
    make_dataset(project)
    qs = OperationTelemetry.objects.filter(project=project)
    row, percentiles = aggregate_with_percentiles(
        qs, sums=raw_sums(), count="operations", field="latency_ms", fractions=(0.5, 0.95, 0.99)
    )
    assert row["operations"] == len(dataset.LATENCIES)
    latencies = sorted(dataset.LATENCIES)
    expected = [continuous_percentile(latencies, f) for f in (0.5, 0.95, 0.99)]
    assert percentiles == pytest.approx(expected)
    assert percentiles == pytest.approx((dataset.P50, dataset.P95, dataset.P99))


def test_no_rows_no_percentiles():
    """An empty range: zero operations, percentiles 0 (no rank to read)."""
    row, percentiles = aggregate_with_percentiles(
        OperationTelemetry.objects.all(),
        sums=raw_sums(),
        count="operations",
        field="latency_ms",
        fractions=(0.5,),
    )
    assert row["operations"] == 0 and percentiles == (0.0,)


def test_row_estimate_only_where_the_database_keeps_one(project):
    """PostgreSQL's planner estimate is a number (no scan); elsewhere there is none, and
    the admin's paginator counts exactly (a small table is always counted exactly)."""
    make_dataset(project)
    estimate = estimated_rows(OperationTelemetry.objects.all())
    if connection.vendor == "postgresql":
        assert isinstance(estimate, int)
    else:
        assert estimate is None
    paginator = EstimatedCountPaginator(OperationTelemetry.objects.order_by("pk"), 5)
    assert paginator.count == len(dataset.LATENCIES)
