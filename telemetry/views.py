"""Staff dashboards: overview, sessions, session detail, operation detail, spend limits.

Thin views: read the query string through a form, call the dashboard selectors, render.
Staff only (`staff_member_required`: anyone else is sent to the admin login page).
"""

import uuid
from decimal import Decimal

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from budgets import periods
from budgets.spend_selectors import spend_limits
from telemetry.dashboard_forms import (
    RANGES,
    SessionFilterForm,
    overview_filters,
    page_number,
)
from telemetry.dashboard_selectors import (
    SESSION_STATUSES,
    operation_beyond_text,
    operation_get,
    operations_recent,
    overview_get,
    projects_list,
    session_for_operation,
    session_get,
    session_operations_page,
    session_row,
    sessions_near_cap,
    sessions_page,
)
from telemetry.selectors import statistics


def _report(request: HttpRequest, problems: list[str]) -> None:
    for problem in problems:
        messages.warning(request, f"{problem} Showing the default instead.")


def _chart_data(overview) -> dict:
    """What the charts draw, as JSON-safe values (money as strings, exact to the micro)."""
    series = overview.series
    return {
        "bucket": overview.bucket,
        "labels": [p["bucket_start"].isoformat() for p in series],
        # Cache hits are successes; drawn apart, so they are taken out of "succeeded".
        "succeeded": [max(0, p["successes"] - p["cache_hits"]) for p in series],
        "cached": [p["cache_hits"] for p in series],
        "failed": [p["failures"] for p in series],
        "cost": [str(p["cost"]) for p in series],
        # An hour without operations has no latency: a gap, not a fall to zero.
        "p95": [p["p95_latency_ms"] if p["operations"] else None for p in series],
        "avg": [p["average_latency_ms"] if p["operations"] else None for p in series],
        "types": {
            "labels": [row["key"] for row in overview.by_type],
            "operations": [row["operations"] for row in overview.by_type],
            "cost": [str(row["cost"]) for row in overview.by_type],
        },
    }


@staff_member_required
def overview(request: HttpRequest) -> HttpResponse:
    projects = projects_list()
    filters = overview_filters(request.GET, project_ids={p.pk for p in projects})
    _report(request, filters.errors)
    data = overview_get(project_id=filters.project_id, since=filters.since, until=filters.until)
    return render(
        request,
        "dashboard/overview.html",
        {
            "nav": "overview",
            "filters": filters,
            "ranges": RANGES,
            "projects": projects,
            "project": next((p for p in projects if p.pk == filters.project_id), None),
            "overview": data,
            "chart_data": _chart_data(data),
            "recent": operations_recent(project_id=filters.project_id),
            "hot_sessions": sessions_near_cap(project_id=filters.project_id),
        },
    )


@staff_member_required
def session_list(request: HttpRequest) -> HttpResponse:
    projects = projects_list()
    form = SessionFilterForm(request.GET)
    form.is_valid()
    data = form.cleaned_data
    problems = [f"{field}: {' '.join(map(str, errors))}" for field, errors in form.errors.items()]
    project_id = data.get("project")
    if project_id is not None and project_id not in {p.pk for p in projects}:
        problems.append("project: There is no project with this id.")
        project_id = None
    _report(request, problems)
    page = sessions_page(
        project_id=project_id,
        search=data.get("q") or "",
        status=data.get("status") or "",
        page=data.get("page") or 1,
    )
    return render(
        request,
        "dashboard/sessions.html",
        {
            "nav": "sessions",
            "projects": projects,
            "project_id": project_id,
            "q": data.get("q") or "",
            "status": data.get("status") or "",
            "statuses": SESSION_STATUSES,
            "page": page,
        },
    )


def _not_found(request: HttpRequest, what: str) -> HttpResponse:
    return render(request, "dashboard/not_found.html", {"nav": "", "what": what}, status=404)


@staff_member_required
def session_detail(request: HttpRequest, pk: int) -> HttpResponse:
    session = session_get(pk=pk)
    if session is None:
        return _not_found(request, "session")
    stats = statistics(project_id=session.project_id, session_id=session.session_id)
    operations = session_operations_page(
        project_id=session.project_id,
        session_id=session.session_id,
        page=page_number(request.GET),
    )
    by_type = sorted(stats.operations_by_type.items(), key=lambda kv: (-kv[1], kv[0]))
    return render(
        request,
        "dashboard/session_detail.html",
        {
            "nav": "sessions",
            "row": session_row(session),
            "session": session,
            "stats": stats,
            "error_rate": stats.failed_operations / stats.total_operations
            if stats.total_operations
            else 0,
            "by_type": by_type,
            "max_type": by_type[0][1] if by_type else 1,
            "page": operations,
            "now": timezone.now(),
        },
    )


@staff_member_required
def operation_detail(request: HttpRequest, operation_id: uuid.UUID) -> HttpResponse:
    operation = operation_get(operation_id=operation_id)
    if operation is None:
        return _not_found(request, "operation")
    return render(
        request,
        "dashboard/operation_detail.html",
        {
            "nav": "sessions",
            "op": operation,
            "session": session_for_operation(operation=operation),
            "cost": Decimal(operation.estimated_cost),
            "beyond_text": operation_beyond_text(operation),
        },
    )


@staff_member_required
def spend_limit_list(request: HttpRequest) -> HttpResponse:
    """Project and API-key spend budgets this period: spend against the cap, the burn
    rate, and the day the cap is reached at that rate (from the ledger, not telemetry)."""
    projects = projects_list()
    filters = overview_filters(request.GET, project_ids={p.pk for p in projects})
    _report(request, filters.errors)
    now = periods.now()
    return render(
        request,
        "dashboard/spend_limits.html",
        {
            "nav": "spend",
            "projects": projects,
            "project_id": filters.project_id,
            "rows": spend_limits(project_id=filters.project_id, now=now),
            "now": now,
        },
    )
