"""Statistics over raw rows: exact values, filters and tenant scoping."""

from datetime import timedelta
from decimal import Decimal

import pytest

from aura_orchestrator.tenancy.services import project_get_or_create
from telemetry.selectors import (
    continuous_percentile,
    histogram_percentile,
    statistics,
)
from tests.telemetry import dataset
from tests.telemetry.dataset import make_dataset, row

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_project(db):
    return project_get_or_create(name="other")


@pytest.fixture
def rows(project, other_project):
    created = make_dataset(project)
    # Another project's slow operations must never show up in `studio`'s numbers.
    row(other_project, started_at=dataset.base_hour(), latency_ms=5000).save()
    row(other_project, started_at=dataset.base_hour(), latency_ms=7000, success=False).save()
    return created


def test_statistics_match_hand_computed_values(project, rows):
    """Every contract field equals the value computed by hand for the known data set,
    percentiles with percentile_cont's definition (on PostgreSQL and SQLite alike)."""
    stats = statistics(project_id=project.pk)
    assert stats.source == "raw"
    assert stats.total_operations == 10
    assert stats.successful_operations == 8
    assert stats.failed_operations == 2
    assert stats.cache_hits == 3
    assert stats.cache_hit_rate == pytest.approx(0.3)
    assert stats.total_tokens_in == 1000
    assert stats.total_tokens_out == 500
    assert stats.total_retries == 2
    assert stats.total_estimated_cost == dataset.TOTAL_COST
    assert stats.average_latency_ms == pytest.approx(dataset.AVERAGE)
    assert stats.p50_latency_ms == pytest.approx(dataset.P50)
    assert stats.p95_latency_ms == pytest.approx(dataset.P95)
    assert stats.p99_latency_ms == pytest.approx(dataset.P99)
    assert stats.operations_by_provider == {"backup": 4, "primary": 6}
    assert stats.operations_by_type == {"planning": 6, "scripting": 4}
    assert stats.cost_by_provider == {
        "backup": dataset.BACKUP_COST,
        "primary": dataset.PRIMARY_COST,
    }


def test_statistics_of_every_project_include_the_other_projects_rows(project, rows):
    """project_id=None (staff) counts every project's operations."""
    stats = statistics(project_id=None)
    assert stats.total_operations == 12
    assert stats.failed_operations == 3


def test_statistics_of_an_empty_range_are_zero(project, rows):
    """No operation in range: zero counts and zero latencies, no division by zero."""
    since = dataset.base_hour() + timedelta(days=1)
    stats = statistics(project_id=project.pk, since=since, until=since + timedelta(hours=1))
    assert stats.total_operations == 0
    assert stats.cache_hit_rate == 0.0
    assert stats.p99_latency_ms == 0.0
    assert stats.total_estimated_cost == Decimal("0.000000")
    assert stats.operations_by_provider == {}


def test_statistics_filters_narrow_the_rows(project, rows):
    """provider, model, operation_type and the half-open [since, until) range filter."""
    primary = statistics(project_id=project.pk, provider="primary")
    assert primary.total_operations == 6
    assert primary.total_estimated_cost == dataset.PRIMARY_COST
    # Sorted primary latencies 10 20 40 70 90 1000: p50 at position 2.5 → 40 + 30·0.5.
    assert primary.p50_latency_ms == pytest.approx(55.0)
    assert statistics(project_id=project.pk, operation_type="scripting").total_operations == 4
    assert statistics(project_id=project.pk, model="sim-gpt").total_operations == 10
    assert statistics(project_id=project.pk, model="other-model").total_operations == 0
    start = dataset.base_hour()
    # Rows start every 5 minutes: [start+10min, start+25min) holds rows 2, 3 and 4.
    window = statistics(
        project_id=project.pk,
        since=start + timedelta(minutes=10),
        until=start + timedelta(minutes=25),
    )
    assert window.total_operations == 3
    assert window.since == start + timedelta(minutes=10)


def test_session_statistics_are_exact_and_scoped_to_the_session(project, rows):
    """session_id narrows to one session; always from raw rows."""
    stats = statistics(project_id=project.pk, session_id="video-1")
    assert stats.source == "raw"
    assert stats.total_operations == 5
    # Session video-1 latencies 70 10 1000 40 20 → sorted 10 20 40 70 1000.
    assert stats.p50_latency_ms == pytest.approx(40.0)
    assert stats.p95_latency_ms == pytest.approx(70 + 930 * 0.8)


def test_continuous_percentile_follows_percentile_cont():
    """Linear interpolation between the closest ranks, like PostgreSQL's percentile_cont."""
    values = sorted(dataset.LATENCIES)
    assert continuous_percentile(values, 0.5) == pytest.approx(dataset.P50)
    assert continuous_percentile(values, 0.99) == pytest.approx(dataset.P99)
    assert continuous_percentile([7], 0.95) == 7.0
    assert continuous_percentile([], 0.5) == 0.0


def test_histogram_percentile_lands_in_the_right_bucket():
    """An approximate percentile stays inside the bucket that holds its rank."""
    histogram = [0] * 14
    histogram[4] = 90  # (50, 100] ms
    histogram[7] = 10  # (500, 1000] ms
    assert 50 <= histogram_percentile(histogram, 0.5, max_ms=900) <= 100
    assert 500 <= histogram_percentile(histogram, 0.95, max_ms=900) <= 900
    assert histogram_percentile([0] * 14, 0.5, max_ms=0) == 0.0
