"""What the dashboard pages show: KPIs with their change, charts' data, breakdowns,
budget usage highlighting, paginated operations and every field of one operation."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from aura_orchestrator.tenancy.services import project_get_or_create
from telemetry.dashboard_selectors import session_row
from tests.dashboard.conftest import make_operation, make_session

pytestmark = pytest.mark.django_db


def _chart_data(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="chart-data" type="application/json">') + len(
        '<script id="chart-data" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_overview_shows_kpis_with_change_against_the_previous_period(staff_client, project):
    """Four operations now (one failed, one cached) against two in the 24 hours before:
    operations +100%, and the error rate and cache hit rate in percentage points."""
    now = timezone.now()
    for minutes in (10, 20):
        make_operation(project, started_at=now - timedelta(hours=30, minutes=minutes))
    make_operation(project, started_at=now - timedelta(hours=2))
    make_operation(project, started_at=now - timedelta(hours=2), cache_hit=True)
    make_operation(project, started_at=now - timedelta(hours=1), provider_name="backup")
    make_operation(
        project,
        started_at=now - timedelta(minutes=30),
        success=False,
        error_code="budget_exceeded",
        error_message="Budget exceeded: session cost cap",
        estimated_cost=Decimal(0),
        operation_type="scripting",
    )

    response = staff_client.get("/dashboard/")

    assert response.status_code == 200
    kpis = {k.key: k for k in response.context["overview"].kpis}
    assert kpis["operations"].value == 4 and kpis["operations"].previous == 2
    assert kpis["operations"].change == pytest.approx(1.0)
    assert kpis["error_rate"].value == pytest.approx(0.25)
    assert kpis["error_rate"].change == pytest.approx(25.0)  # points: 0% -> 25%
    assert kpis["error_rate"].trend == "bad"
    assert kpis["cache_hit_rate"].change == pytest.approx(25.0)
    assert kpis["cache_hit_rate"].trend == "good"
    assert kpis["cost"].value == Decimal("0.002640")
    html = response.content.decode()
    assert "+100.0%" in html and "+25.0 pp" in html


def test_overview_shows_what_prompt_caching_saved(staff_client, project):
    make_operation(project, cache_read_tokens=900, cache_savings=Decimal("0.002430"))
    make_operation(project, cache_write_tokens=300, cache_savings=Decimal("-0.000225"))

    response = staff_client.get("/dashboard/")

    assert response.context["overview"].current.total_cache_savings == Decimal("0.002205")
    assert "Saved by prompt caching: $0.0022" in response.content.decode()


def test_overview_charts_get_one_point_per_hour_and_the_breakdowns(staff_client, project):
    """The chart data holds 24 hourly points for the last 24 hours, with the operations
    in the right buckets, and the breakdowns list every provider, model and type."""
    now = timezone.now()
    make_operation(project, started_at=now - timedelta(hours=3))
    make_operation(project, started_at=now - timedelta(hours=3), operation_type="creative")
    make_operation(
        project, started_at=now - timedelta(minutes=5), provider_name="backup", model_name="mini"
    )

    response = staff_client.get("/dashboard/")

    data = _chart_data(response)
    assert data["bucket"] == "hour"
    assert len(data["labels"]) in (24, 25)  # the current, partial hour may be included
    assert sum(data["succeeded"]) == 3 and sum(data["failed"]) == 0
    recent_hour = (now - timedelta(minutes=5)).replace(minute=0, second=0, microsecond=0)
    assert data["succeeded"][data["labels"].index(recent_hour.isoformat())] == 1
    assert set(data["types"]["labels"]) == {"planning", "creative"}
    overview = response.context["overview"]
    assert [r["key"] for r in overview.by_provider] == ["primary", "backup"]
    assert {r["key"] for r in overview.by_model} == {"sim-gpt", "mini"}
    html = response.content.decode()
    assert 'id="chart-operations"' in html and 'id="chart-types"' in html
    assert "/static/vendor/chartjs/chart.umd.min.js" in html


def test_overview_for_thirty_days_is_charted_per_day(staff_client, project):
    """Long ranges use daily buckets: 30 or 31 points."""
    make_operation(project, started_at=timezone.now() - timedelta(days=12))
    data = _chart_data(staff_client.get("/dashboard/?range=30d"))
    assert data["bucket"] == "day"
    assert len(data["labels"]) in (30, 31)
    assert sum(data["succeeded"]) == 1


def test_overview_project_filter_shows_one_project(staff_client, project):
    """With `project`, only that project's operations count; without, staff see all."""
    other = project_get_or_create(name="other-team")
    make_operation(project)
    make_operation(other)
    make_operation(other)

    everyone = staff_client.get("/dashboard/").context["overview"].current
    only_other = staff_client.get(f"/dashboard/?project={other.pk}").context["overview"].current

    assert everyone.total_operations == 3
    assert only_other.total_operations == 2


def test_an_empty_install_says_no_calls_yet_and_draws_no_chart(staff_client, project):
    """No operation ever: an empty state with the first steps (the API, the demo), and
    no chart frame, chart data or empty recent-operations table."""
    response = staff_client.get("/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "No calls yet" in html and "manage.py demo" in html
    assert "<canvas" not in html and 'id="chart-data"' not in html
    assert "Recent operations" not in html


def test_overview_says_so_when_the_range_is_empty(staff_client, project):
    """Calls exist, none in the range: said so, no chart drawn, the latest calls listed."""
    make_operation(project, started_at=timezone.now() - timedelta(days=3))
    response = staff_client.get("/dashboard/?range=24h")
    assert response.status_code == 200
    html = response.content.decode()
    assert "No operations in this range" in html and "No calls yet" not in html
    assert "<canvas" not in html and 'id="chart-data"' not in html
    assert "Recent operations" in html


def test_session_usage_levels_from_the_ledger():
    """Accrued + reserved against the cap: under 80% ok, 80% near, 100% over."""
    from budgets.models import LlmSession

    def level(accrued, reserved, cap):
        session = LlmSession(
            session_id="s",
            cost_accrued_micros=accrued,
            cost_reserved_micros=reserved,
            max_cost_per_session_micros=cap,
        )
        return session_row(session)

    assert level(790_000, 0, 1_000_000).level == "ok"
    assert level(700_000, 100_000, 1_000_000).level == "near"
    assert level(1_000_000, 0, 1_000_000).level == "over"
    assert level(5, 0, None).level == "none"
    row = level(600_000, 300_000, 1_000_000)
    assert row.caps[0].percent == 90
    assert row.caps[0].used_percent == pytest.approx(60.0)
    assert row.caps[0].reserved_percent == pytest.approx(30.0)


def test_sessions_list_highlights_sessions_near_or_over_their_caps(staff_client, project):
    """Rows carry their level; the `near` filter keeps the sessions at 80% or more."""
    make_session(project, session_id="calm", cost_micros=100_000, cap_micros=1_000_000)
    make_session(
        project,
        session_id="busy",
        cost_micros=700_000,
        cap_micros=1_000_000,
        cost_reserved_micros=150_000,
    )
    make_session(project, session_id="spent", cost_micros=1_000_000, cap_micros=1_000_000)
    make_session(
        project, session_id="token-heavy", tokens_used=9_000, max_tokens_per_session=10_000
    )
    make_session(project, session_id="uncapped", cost_micros=5_000_000)

    html = staff_client.get("/dashboard/sessions/").content.decode()
    near = staff_client.get("/dashboard/sessions/?status=near").context["page"].rows
    over = staff_client.get("/dashboard/sessions/?status=over").context["page"].rows

    assert html.count('class="level-near"') == 2
    assert html.count('class="level-over"') == 1
    assert "no session cap" in html
    assert {r.session.session_id for r in near} == {"busy", "spent", "token-heavy"}
    assert {r.session.session_id for r in over} == {"spent"}


def test_sessions_search_and_next_page_pagination(staff_client, project):
    """Search matches part of the session id; 30 sessions make a page of 25 with a link
    to the next page, and page 2 holds the other 5 with no further link."""
    now = timezone.now()
    for i in range(30):
        make_session(
            project, session_id=f"video-{i:02d}", last_activity_at=now - timedelta(minutes=i)
        )
    make_session(project, session_id="podcast-7", last_activity_at=now - timedelta(days=3))

    first = staff_client.get("/dashboard/sessions/")
    second = staff_client.get("/dashboard/sessions/?page=2")
    found = staff_client.get("/dashboard/sessions/?q=podcast")

    assert len(first.context["page"].rows) == 25 and first.context["page"].has_next
    assert first.context["page"].rows[0].session.session_id == "video-00"
    assert b'rel="next"' in first.content
    assert len(second.context["page"].rows) == 6 and not second.context["page"].has_next
    assert [r.session.session_id for r in found.context["page"].rows] == ["podcast-7"]


def test_session_detail_shows_the_ledger_and_pages_its_operations(staff_client, project):
    """A session with 30 operations: budget bar, exact statistics, 25 operations on
    page 1 (newest first) and the rest on page 2; another session's rows stay out."""
    session = make_session(
        project, session_id="video-9", cost_micros=120_000, cap_micros=200_000, tokens_used=5000
    )
    now = timezone.now()
    for i in range(30):
        make_operation(project, session_id="video-9", started_at=now - timedelta(minutes=i))
    make_operation(project, session_id="video-10")

    first = staff_client.get(f"/dashboard/sessions/{session.pk}/")
    second = staff_client.get(f"/dashboard/sessions/{session.pk}/?page=2")

    assert first.status_code == 200
    assert first.context["stats"].total_operations == 30
    ops = first.context["page"].rows
    assert len(ops) == 25 and ops[0].started_at > ops[-1].started_at
    assert first.context["page"].has_next
    assert len(second.context["page"].rows) == 5
    html = first.content.decode()
    assert "$0.1200" in html and "$0.2000" in html and "60%" in html


def test_operation_detail_shows_every_field_the_attempts_and_the_error(staff_client, project):
    """A failed operation after a fallback: both attempts, the error code and message,
    tokens, parameters and a link back to its session."""
    session = make_session(project, session_id="video-err")
    operation = make_operation(
        project,
        session_id="video-err",
        success=False,
        retry_count=1,
        error_code="provider_error",
        error_message="Every provider failed: backup answered HTTP 500",
        tokens_in=77,
        tokens_out=0,
        time_to_first_token_ms=123,
        attempts=[
            {
                "provider": "primary",
                "model": "sim-gpt",
                "latency_ms": 30,
                "outcome": "ProviderRateLimited",
                "status": 429,
                "error": "primary: HTTP 429 from upstream",
            },
            {
                "provider": "backup",
                "model": "sim-gpt",
                "latency_ms": 41,
                "outcome": "ProviderUnavailable",
                "status": 500,
                "error": "backup: HTTP 500 from upstream",
            },
        ],
    )

    response = staff_client.get(f"/dashboard/operations/{operation.operation_id}/")

    html = response.content.decode()
    assert response.status_code == 200
    for text in (
        str(operation.operation_id),
        "provider_error",
        "Every provider failed: backup answered HTTP 500",
        "ProviderRateLimited",
        "ProviderUnavailable",
        "429",
        "HTTP 500 from upstream",
        "123 ms",
        "$0.000880",
        "0.7",
        "2000",
        f"/dashboard/sessions/{session.pk}/",
    ):
        assert text in html, text


def test_operation_detail_shows_tools_images_and_the_tool_calls_escaped(staff_client, project):
    """An operation that sent tools and images and was answered two tool calls: the
    counts, one table row per call, long arguments cut for display (the whole value kept
    in the title), and a hostile name or argument escaped, never rendered as HTML."""
    long_arguments = '{"query": "' + "q" * 480 + '"}'
    operation = make_operation(
        project,
        tools_sent=3,
        images_sent=2,
        choices=2,
        tool_calls=[
            {"name": "<b>search</b>", "arguments": '{"q": "<script>alert(1)</script>"}'},
            {"name": "fetch_source", "arguments": long_arguments},
        ],
    )

    response = staff_client.get(f"/dashboard/operations/{operation.operation_id}/")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="beyond-text"' in html
    for label, value in (("Tool definitions sent", 3), ("Images sent", 2), ("Choices (n)", 2)):
        assert f"<dt>{label}</dt><dd>{value}</dd>" in html
    assert html.count('<td class="mono nowrap">') == 2  # one row per call
    assert "&lt;b&gt;search&lt;/b&gt;" in html and "<b>search</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert f'title="{{&quot;query&quot;: &quot;{"q" * 480}&quot;}}"' in html
    # Shown cut to 200 characters: the 11 of '{"query": "', 188 q and the ellipsis.
    assert f">{{&quot;query&quot;: &quot;{'q' * 188}…</td>" in html


def test_operation_detail_hides_the_block_for_a_text_only_operation(staff_client, project):
    """No tools, no images, one choice, no tool calls: no block at all."""
    operation = make_operation(project)

    html = staff_client.get(f"/dashboard/operations/{operation.operation_id}/").content.decode()

    assert 'id="beyond-text"' not in html and "Tool definitions sent" not in html


def test_unknown_session_or_operation_is_a_friendly_404(staff_client):
    """Ids that do not exist (or were pruned) give a 404 page in the dashboard layout."""
    missing_session = staff_client.get("/dashboard/sessions/999999/")
    missing_op = staff_client.get("/dashboard/operations/00000000-0000-0000-0000-000000000000/")
    assert missing_session.status_code == 404 and b"No such session" in missing_session.content
    assert missing_op.status_code == 404 and b"No such operation" in missing_op.content
    assert staff_client.get("/dashboard/operations/not-a-uuid/").status_code == 404
