"""Bad query strings never break a dashboard: the page renders the default view with a
message saying what was wrong."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.dashboard.conftest import make_operation

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=yesterday", "From: Enter a valid date/time."),
        ("since=2026-13-45", "From: Enter a valid date/time."),
        ("since=2026-03-01&until=2026-02-01", "must come after its start"),
        ("since=0001-01-01", "before the year 2000"),
        ("since=2001-01-01&until=2026-01-01", "at most 400 days"),
        ("since=2999-01-01&until=2999-02-01", "starts in the future"),
        ("range=custom", "needs a start date"),
        ("range=forever", "Range: Select a valid choice."),
        ("project=abc", "Project: Enter a whole number."),
        ("project=987654", "no project with this id"),
        ("project=-3", "Project: Ensure this value is greater than or equal to 1."),
        ("since=%00%ff", "From: Enter a valid date/time."),
    ],
)
def test_bad_overview_filters_show_a_message_and_the_default_range(staff_client, query, message):
    """Each malformed or impossible filter: 200, the message, and the last 24 hours."""
    response = staff_client.get(f"/dashboard/?{query}")
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    assert "Showing the default instead." in html
    filters = response.context["filters"]
    assert filters.range == "24h"
    assert filters.until - filters.since == timedelta(hours=24)


@pytest.mark.parametrize(
    "query",
    ["page=abc", "page=-1", "page=0", "project=x", "status=weird", "q=" + "x" * 300, "q=a%00b"],
)
def test_bad_session_list_filters_show_a_message(staff_client, query):
    """The sessions list answers odd input with a message and the first page."""
    response = staff_client.get(f"/dashboard/sessions/?{query}")
    assert response.status_code == 200
    assert "Showing the default instead." in response.content.decode()
    assert response.context["page"].number == 1


def test_huge_page_number_is_an_empty_page_not_an_error(staff_client):
    """Past the last page there is simply nothing to show."""
    response = staff_client.get("/dashboard/sessions/?page=99999")
    assert response.status_code == 200
    assert response.context["page"].rows == []


def test_custom_range_counts_only_the_operations_inside_it(staff_client, project):
    """since/until as dates: `until` includes its whole day; rows outside are left out."""
    now = timezone.now()
    inside = now - timedelta(days=3)
    make_operation(project, started_at=inside)
    make_operation(project, started_at=now - timedelta(days=10))
    since = (inside - timedelta(days=1)).date().isoformat()
    until = inside.date().isoformat()

    response = staff_client.get(f"/dashboard/?since={since}&until={until}")

    assert response.status_code == 200
    assert response.context["filters"].range == "custom"
    assert response.context["overview"].current.total_operations == 1
    assert response.context["overview"].bucket == "hour"  # two days: hourly points
