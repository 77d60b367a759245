"""Dashboard pages run a fixed number of queries, whatever the amount of telemetry: the
overview reads aggregates (rollups for rolled-up hours) and lists read one LIMITed page."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from telemetry.models import OperationTelemetry, TelemetryRollup
from telemetry.services import telemetry_rollup_backfill
from tests.dashboard.conftest import make_operation, make_session

pytestmark = pytest.mark.django_db


def _add_data(project, *, sessions: int, operations_per_session: int) -> None:
    now = timezone.now()
    for s in range(sessions):
        session_id = f"video-{s}-{now.timestamp()}"
        make_session(project, session_id=session_id, cost_micros=s * 1000, cap_micros=10_000)
        for i in range(operations_per_session):
            make_operation(
                project,
                session_id=session_id,
                started_at=now - timedelta(hours=(s * 13 + i * 5) % 47, minutes=i),
                provider_name=("primary", "backup")[i % 2],
                operation_type=("planning", "scripting", "creative")[i % 3],
                cache_hit=i % 4 == 0,
            )


def _count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize("range_", ["24h", "30d"])
def test_overview_query_count_does_not_grow_with_the_data(
    staff_client, project, django_assert_num_queries, range_
):
    """Ten times more rows, sessions and operation types: the same number of queries."""
    _add_data(project, sessions=2, operations_per_session=6)
    url = f"/dashboard/?range={range_}"
    baseline = _count(staff_client, url)
    _add_data(project, sessions=20, operations_per_session=6)
    with django_assert_num_queries(baseline):
        staff_client.get(url)
    assert baseline <= 30


@pytest.mark.parametrize("range_", ["24h", "7d", "30d"])
def test_rolled_up_overview_query_count_is_small_and_fixed(
    staff_client, project, django_assert_num_queries, range_
):
    """Once rolled up, the overview's aggregates are three statements (watermark, one
    pass over the rollups of both periods, one over the raw rows of the rest), whatever
    the range and the data."""
    _add_data(project, sessions=2, operations_per_session=6)
    telemetry_rollup_backfill(since=timezone.now() - timedelta(days=61))
    url = f"/dashboard/?range={range_}"
    baseline = _count(staff_client, url)
    _add_data(project, sessions=20, operations_per_session=6)
    telemetry_rollup_backfill(since=timezone.now() - timedelta(days=61))
    with django_assert_num_queries(baseline):
        response = staff_client.get(url)
    assert response.context["overview"].current.source == "rollup"
    # session + user, projects, the overview (watermark, BEGIN, SET LOCAL on PostgreSQL,
    # two passes, COMMIT), recent operations, sessions near their caps.
    assert baseline <= 12


def test_list_and_detail_pages_query_counts_are_fixed(
    staff_client, project, django_assert_num_queries
):
    """Sessions list, session detail and operation detail: same queries for 1 or 40
    sessions and for 3 or 60 operations in a session."""
    _add_data(project, sessions=1, operations_per_session=3)
    session = project.sessions.first()
    operation = OperationTelemetry.objects.filter(session_id=session.session_id).first()
    urls = [
        "/dashboard/sessions/",
        "/dashboard/sessions/?status=near&q=video",
        f"/dashboard/sessions/{session.pk}/",
        f"/dashboard/operations/{operation.operation_id}/",
    ]
    baselines = [_count(staff_client, url) for url in urls]
    _add_data(project, sessions=40, operations_per_session=1)
    for _ in range(57):
        make_operation(project, session_id=session.session_id)
    for url, baseline in zip(urls, baselines, strict=True):
        with django_assert_num_queries(baseline):
            staff_client.get(url)
        assert baseline <= 12, url


def test_overview_reads_rolled_up_hours_from_the_rollups(staff_client, project):
    """After the rollup, raw rows of old hours can be pruned and the 30-day overview
    still counts them: the rolled-up hours come from TelemetryRollup."""
    now = timezone.now()
    for days in (5, 6, 9):
        make_operation(project, started_at=now - timedelta(days=days))
    telemetry_rollup_backfill(since=now - timedelta(days=31))
    assert TelemetryRollup.objects.exists()
    OperationTelemetry.objects.filter(started_at__lt=now - timedelta(days=2)).delete()

    response = staff_client.get("/dashboard/?range=30d")

    assert response.context["overview"].current.total_operations == 3
    assert sum(p["operations"] for p in response.context["overview"].series) == 3
