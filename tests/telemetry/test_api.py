"""GET /api/v1/statistics and /api/v1/sessions/{id}/statistics."""

from datetime import timedelta

import pytest

from aura_orchestrator.tenancy.services import project_get_or_create
from budgets.services import session_ensure
from tests.telemetry import dataset
from tests.telemetry.dataset import make_dataset, row

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(project):
    other = project_get_or_create(name="other")
    row(other, started_at=dataset.base_hour(), session_id="theirs", latency_ms=9000).save()
    return make_dataset(project)


def test_statistics_endpoint_returns_the_contract_fields(api_client, rows):
    """Every contract field, money as 6-decimal strings, scoped to the key's project."""
    response = api_client.get("/api/v1/statistics")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["total_operations"] == 10
    assert body["successful_operations"] == 8
    assert body["failed_operations"] == 2
    assert body["cache_hits"] == 3
    assert body["cache_hit_rate"] == pytest.approx(0.3)
    assert body["total_tokens_in"] == 1000
    assert body["total_tokens_out"] == 500
    assert body["total_retries"] == 2
    assert body["total_estimated_cost"] == "0.001800"
    assert body["total_cache_savings"] == "0.000000"  # the data set caches nothing
    assert body["average_latency_ms"] == pytest.approx(145.0)
    assert body["p50_latency_ms"] == pytest.approx(dataset.P50)
    assert body["p95_latency_ms"] == pytest.approx(dataset.P95)
    assert body["p99_latency_ms"] == pytest.approx(dataset.P99)
    assert body["operations_by_provider"] == {"backup": 4, "primary": 6}
    assert body["operations_by_type"] == {"planning": 6, "scripting": 4}
    assert body["cost_by_provider"] == {"backup": "0.000600", "primary": "0.001200"}
    assert body["source"] == "raw"


def test_statistics_endpoint_applies_filters(api_client, rows):
    """Filters: PascalCase operation type, ISO dates with an offset sent unencoded."""
    assert (
        api_client.get("/api/v1/statistics?operation_type=Scripting").json()["total_operations"]
        == 4
    )
    assert (
        api_client.get("/api/v1/statistics?provider=primary&model=sim-gpt").json()[
            "total_operations"
        ]
        == 6
    )
    since = (dataset.base_hour() + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    # A raw '+' in a query string arrives as a space; it is read as the offset's sign.
    body = api_client.get(f"/api/v1/statistics?since={since}").json()
    assert body["total_operations"] == 8
    assert body["since"].startswith(since[:19])
    day_after = (dataset.base_hour() + timedelta(days=1)).date().isoformat()
    assert api_client.get(f"/api/v1/statistics?since={day_after}").json()["total_operations"] == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("until=2025-13-01", "until"),
        ("since=2025-02-01&until=2025-01-01", "since"),
        ("operation_type=teleportation", "operation_type"),
        ("provider=" + "p" * 65, "provider"),
        ("provider=a%00b", "provider"),
        ("since=0001-01-01T00:00:00Z", "since"),
    ],
)
def test_bad_filters_are_a_400_with_a_clear_message(api_client, rows, query, field):
    """A bad filter answers 400 invalid_request naming the filter, never a 500."""
    response = api_client.get(f"/api/v1/statistics?{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error_code"] == "invalid_request"
    assert field in body["error_message"]


def test_statistics_need_an_api_key(client, rows):
    """No key: 401."""
    assert client.get("/api/v1/statistics").status_code == 401


def test_session_statistics_of_a_session_with_telemetry(api_client, rows):
    """A session's own operations only, exact."""
    response = api_client.get("/api/v1/sessions/video-1/statistics")
    assert response.status_code == 200
    body = response.json()
    assert body["total_operations"] == 5
    assert body["p50_latency_ms"] == pytest.approx(40.0)


def test_session_statistics_of_a_ledger_only_session_are_zero(api_client, project, rows):
    """A session with a budget ledger but no operation yet: 200 with zeros."""
    session_ensure(project_id=project.pk, session_id="fresh", caps=None)
    response = api_client.get("/api/v1/sessions/fresh/statistics")
    assert response.status_code == 200
    assert response.json()["total_operations"] == 0


@pytest.mark.parametrize("session_id", ["nobody", "theirs"])
def test_session_statistics_of_an_unknown_or_foreign_session_are_404(api_client, rows, session_id):
    """Unknown here (including another project's session): 404 not_found."""
    response = api_client.get(f"/api/v1/sessions/{session_id}/statistics")
    assert response.status_code == 404
    assert response.json()["error_code"] == "not_found"


def test_session_statistics_reject_a_nul_in_the_session_id(api_client, rows):
    """A NUL character (which PostgreSQL cannot store) is a 400, not a 500."""
    response = api_client.get("/api/v1/sessions/a%00b/statistics")
    assert response.status_code == 400


def test_statistics_endpoints_are_in_the_openapi_schema(client):
    """Both endpoints and their filters are documented."""
    schema = client.get("/api/schema/?format=json").json()
    assert "since" in str(schema["paths"]["/api/v1/statistics"]["get"]["parameters"])
    assert "/api/v1/sessions/{session_id}/statistics" in schema["paths"]
