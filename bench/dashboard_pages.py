"""Time the staff dashboard pages against a big telemetry table (read-only).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aura_bench DJANGO_SECRET_KEY=x \
        .venv/bin/python bench/dashboard_pages.py

Fill the database first with `bench/gen_telemetry.py` (10 million rows). Pages are
rendered in-process through the real views with an unsaved staff user, so nothing is
written; each page is timed cold once, then the median of 5 warm runs is given.
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura_orchestrator.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import resolve  # noqa: E402

from budgets.models import LlmSession  # noqa: E402
from telemetry.models import OperationTelemetry  # noqa: E402


def render(url: str) -> tuple[float, int, int]:
    request = RequestFactory().get(url, HTTP_HOST="127.0.0.1")
    request.user = get_user_model()(username="bench", is_staff=True, is_active=True)
    match = resolve(request.path)
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        response = match.func(request, *match.args, **match.kwargs)
        elapsed = time.perf_counter() - started
    return elapsed * 1000, len(queries), response.status_code


def main() -> None:
    rows = OperationTelemetry.objects.order_by("-pk").values_list("pk", flat=True).first()
    session = LlmSession.objects.order_by("-operation_count").first()
    operation = OperationTelemetry.objects.order_by("-started_at").first()
    # The busiest project (the generated rows have no sessions ledger; the run's do).
    project = (
        OperationTelemetry.objects.filter(pk__gt=(rows or 0) - 100_000)
        .values("project_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("project_id", flat=True)
        .first()
    )
    urls = [
        "/dashboard/",
        "/dashboard/?range=7d",
        "/dashboard/?range=30d",
        f"/dashboard/?project={project}",
        f"/dashboard/?range=7d&project={project}",
        f"/dashboard/?range=30d&project={project}",
        "/dashboard/sessions/",
        "/dashboard/sessions/?status=near&q=video",
        "/dashboard/sessions/?page=20",
    ]
    if session:
        urls.append(f"/dashboard/sessions/{session.pk}/")
    if operation:
        urls.append(f"/dashboard/operations/{operation.operation_id}/")
    print(f"telemetry rows (max id): {rows:,}  vendor: {connection.vendor}")
    print(f"{'page':<48} {'cold ms':>8} {'warm ms':>8} {'queries':>8}")
    for url in urls:
        cold, count, status = render(url)
        warm = statistics.median(render(url)[0] for _ in range(5))
        assert status == 200, (url, status)
        print(f"{url:<48} {cold:8.0f} {warm:8.0f} {count:8d}")


if __name__ == "__main__":
    main()
