"""After the run: its rows backdated over the history window (order kept, busier by day),
and the rollup job run over that window so the dashboards read fresh rollups."""

import math
from bisect import bisect_left
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from aura_orchestrator.tenancy.models import Project
from budgets.models import LlmSession
from telemetry.models import OperationTelemetry
from telemetry.tasks import telemetry_rollup_job


def history_warp(hours: float) -> list[float]:
    """Cumulative share of traffic over the window, in 10-minute slots, busier in the
    working day (UTC) than at night: a monotone map from run time to history."""
    now = timezone.now()
    slots = max(1, int(hours * 6))
    start = now - timedelta(hours=hours)
    weights = []
    for i in range(slots):
        hour = (start + timedelta(minutes=10 * i)).hour + (i % 6) / 6
        weights.append(0.25 + math.exp(-(((hour - 14.5) / 4.0) ** 2)))
    cumulative, acc = [], 0.0
    total = sum(weights)
    for w in weights:
        acc += w / total
        cumulative.append(acc)
    return cumulative


@transaction.atomic
def history_spread(*, project: Project, since: datetime, hours: float) -> None:
    """Map this run's rows, in order, onto the last `hours` hours (busier by day)."""
    rows = list(
        OperationTelemetry.objects.filter(project=project, started_at__gte=since).order_by(
            "started_at", "pk"
        )
    )
    if not rows:
        return
    now = timezone.now()
    first, last = rows[0].started_at, rows[-1].started_at
    span = max((last - first).total_seconds(), 1e-6)
    warp = history_warp(hours)
    window_start = now - timedelta(hours=hours)
    slot = timedelta(minutes=10)
    for row in rows:
        share = (row.started_at - first).total_seconds() / span
        index = min(bisect_left(warp, share), len(warp) - 1)
        previous = warp[index - 1] if index else 0.0
        within = (share - previous) / max(warp[index] - previous, 1e-9)
        moved = window_start + slot * (index + min(max(within, 0.0), 1.0))
        # Keep the last minutes empty, so the newest operation is not "in the future".
        moved = min(moved, now - timedelta(seconds=30))
        row.completed_at = moved + (row.completed_at - row.started_at)
        row.started_at = moved
    OperationTelemetry.objects.bulk_update(rows, ["started_at", "completed_at"], batch_size=500)
    session_ids = {row.session_id for row in rows}
    spans = (
        OperationTelemetry.objects.filter(project=project, session_id__in=session_ids)
        .values("session_id")
        .annotate(first=Min("started_at"), last=Max("completed_at"))
    )
    for span_row in spans:
        LlmSession.objects.filter(project=project, session_id=span_row["session_id"]).update(
            created_at=span_row["first"], last_activity_at=span_row["last"]
        )


def roll_up(*, hours: float) -> str:
    """Run the rollup job over the demo's window (its rows were moved into hours the
    periodic job may already have rolled up), so the dashboards read fresh rollups."""
    written = telemetry_rollup_job(hours=math.ceil(hours) + 2)
    return f"rollup job wrote {written} hourly rollup rows"
