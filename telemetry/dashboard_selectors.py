"""Reads for the staff dashboards.

Every query here stays cheap with millions of telemetry rows: the overview reads its
statistics, time series and breakdowns in two passes (`telemetry.selectors.overview`:
rollups for whole hours, raw rows only at the edges), and lists read one indexed page
with LIMIT n+1 to learn whether a next page exists, never a COUNT(*) over the telemetry
table.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import reduce
from operator import or_
from typing import TypedDict

from django.db.models import F, Q, QuerySet

from aura_orchestrator.money import micros_to_usd
from aura_orchestrator.tenancy.models import Project
from budgets.caps import UNITS, Counts, Unit, capped_q, caps_counting
from budgets.models import LlmSession
from telemetry.models import OperationTelemetry
from telemetry.selectors import (
    OverviewData,
    Statistics,
    breakdown,
    overview,
    statistics,
    timeseries,
)

NEAR_CAP = Decimal("0.8")
HOURLY_UP_TO = timedelta(days=7)  # longer ranges are charted per day

# --- Overview --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kpi:
    key: str
    label: str
    value: float | Decimal | int
    previous: float | Decimal | int
    # Relative change for amounts, difference in percentage points for rates; None when the
    # previous period had nothing to compare with.
    change: float | None
    change_is_points: bool
    higher_is_better: bool | None  # None: neither (volume)

    @property
    def trend(self) -> str:
        """ "good", "bad" or "flat", for the colour of the change."""
        if self.change is None or abs(self.change) < 1e-9 or self.higher_is_better is None:
            return "flat"
        return "good" if (self.change > 0) == self.higher_is_better else "bad"


@dataclass(frozen=True, slots=True)
class Overview:
    since: datetime
    until: datetime
    bucket: str  # "hour" | "day"
    current: Statistics
    previous: Statistics
    kpis: list[Kpi]
    series: list[dict]
    by_provider: list[dict]
    by_model: list[dict]
    by_type: list[dict]


def _rate(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _relative(current, previous) -> float | None:
    if not previous:
        return None
    return float((Decimal(current) - Decimal(previous)) / Decimal(previous))


def _kpis(current: Statistics, previous: Statistics) -> list[Kpi]:
    has_previous = previous.total_operations > 0
    error_now = _rate(current.failed_operations, current.total_operations)
    error_before = _rate(previous.failed_operations, previous.total_operations)

    def points(now: float, before: float) -> float | None:
        return (now - before) * 100 if has_previous else None

    return [
        Kpi(
            "operations",
            "Operations",
            current.total_operations,
            previous.total_operations,
            _relative(current.total_operations, previous.total_operations),
            False,
            None,
        ),
        Kpi(
            "cost",
            "Estimated cost",
            current.total_estimated_cost,
            previous.total_estimated_cost,
            _relative(current.total_estimated_cost, previous.total_estimated_cost),
            False,
            False,
        ),
        Kpi(
            "cache_hit_rate",
            "Cache hit rate",
            current.cache_hit_rate,
            previous.cache_hit_rate,
            points(current.cache_hit_rate, previous.cache_hit_rate),
            True,
            True,
        ),
        Kpi(
            "p95_latency_ms",
            "p95 latency",
            current.p95_latency_ms,
            previous.p95_latency_ms,
            _relative(current.p95_latency_ms, previous.p95_latency_ms) if has_previous else None,
            False,
            False,
        ),
        Kpi(
            "error_rate",
            "Error rate",
            error_now,
            error_before,
            points(error_now, error_before),
            True,
            False,
        ),
    ]


def _with_share(rows: list[dict], total: int) -> list[dict]:
    for row in rows:
        row["share"] = _rate(row["operations"], total)
    return rows


def overview_get(*, project_id: int | None, since: datetime, until: datetime) -> Overview:
    """KPIs of [since, until) against the period of equal length just before it, the time
    series of the range and its breakdowns by provider, model and operation type.

    Once the range holds rolled-up hours, everything comes from `telemetry.selectors.
    overview`: one pass over the rollups of both periods and one over the raw rows of the
    hours that are not rolled up (percentiles from the latency histogram). Before that
    (no rollup yet, or a range newer than the watermark) raw rows answer, exactly."""
    length = until - since
    bucket = "hour" if length <= HOURLY_UP_TO else "day"
    data = overview(project_id=project_id, since=since, until=until, bucket=bucket)
    if data is None:
        data = _overview_raw(project_id=project_id, since=since, until=until, bucket=bucket)
    total = data.current.total_operations
    return Overview(
        since=since,
        until=until,
        bucket=bucket,
        current=data.current,
        previous=data.previous,
        kpis=_kpis(data.current, data.previous),
        series=data.series,
        by_provider=_with_share(data.by_provider, total),
        by_model=_with_share(data.by_model, total),
        by_type=_with_share(data.by_type, total),
    )


class _Range(TypedDict):
    project_id: int | None
    since: datetime
    until: datetime


def _overview_raw(
    *, project_id: int | None, since: datetime, until: datetime, bucket: str
) -> OverviewData:
    """The same from the per-widget selectors (two `statistics`, one `timeseries`, three
    `breakdown`s): exact percentiles from raw rows when no rollup covers the range."""
    length = until - since
    kwargs: _Range = {"project_id": project_id, "since": since, "until": until}
    return OverviewData(
        current=statistics(**kwargs, prefer_rollups=True),
        previous=statistics(
            project_id=project_id, since=since - length, until=since, prefer_rollups=True
        ),
        series=timeseries(**kwargs, bucket=bucket),
        by_provider=breakdown(**kwargs, by="provider_name"),
        by_model=breakdown(**kwargs, by="model_name"),
        by_type=breakdown(**kwargs, by="operation_type"),
    )


def operations_recent(*, project_id: int | None, limit: int = 8) -> list[OperationTelemetry]:
    """The newest operations (index on started_at, or on project and started_at)."""
    qs = OperationTelemetry.objects.all()
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    return list(qs.order_by("-started_at").select_related("project")[:limit])


def projects_list() -> list[Project]:
    return list(Project.objects.order_by("name")[:500])


# --- Sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapUsage:
    """One session cap: what is spent, what is held for calls in flight, and the cap."""

    kind: str  # "cost" | "tokens"
    used: Decimal | int
    reserved: Decimal | int
    cap: Decimal | int

    @property
    def ratio(self) -> Decimal:
        if not self.cap:
            return Decimal(1) if (self.used or self.reserved) else Decimal(0)
        return Decimal(self.used + self.reserved) / Decimal(self.cap)

    @property
    def used_percent(self) -> float:
        if not self.cap:
            return 100.0 if self.used else 0.0
        return float(min(Decimal(100), Decimal(self.used) * 100 / self.cap))

    @property
    def reserved_percent(self) -> float:
        return max(0.0, min(100.0, float(self.ratio * 100)) - self.used_percent)

    @property
    def percent(self) -> int:
        return round(self.ratio * 100)

    @property
    def level(self) -> str:
        if self.ratio >= 1:
            return "over"
        return "near" if self.ratio >= NEAR_CAP else "ok"


@dataclass(frozen=True, slots=True)
class OperationCap:
    """One per-operation cap of a session, in public units."""

    unit: Unit
    value: Decimal | int


@dataclass(frozen=True, slots=True)
class SessionRow:
    session: LlmSession
    caps: list[CapUsage]
    operation_caps: list[OperationCap] = field(default_factory=list)

    @property
    def level(self) -> str:
        """The worst of its caps: "over", "near", "ok", or "none" without a session cap."""
        levels = {c.level for c in self.caps}
        for level in ("over", "near", "ok"):
            if level in levels:
                return level
        return "none"

    @property
    def cost_accrued(self) -> Decimal:
        return micros_to_usd(self.session.cost_accrued_micros)

    @property
    def cost_reserved(self) -> Decimal:
        return micros_to_usd(self.session.cost_reserved_micros)


# The session caps as bars, money first (as the dashboard has always shown them).
_BAR_CAPS = sorted(caps_counting(Counts.LEDGER), key=lambda cap: not cap.unit.money)


def session_row(session: LlmSession) -> SessionRow:
    caps = [
        CapUsage(
            kind=cap.unit.name,
            used=cap.unit.to_public(getattr(session, cap.unit.used)),
            reserved=cap.unit.to_public(getattr(session, cap.unit.reserved)),
            cap=cap.unit.to_public(getattr(session, cap.column)),  # not None: filtered
        )
        for cap in _BAR_CAPS
        if getattr(session, cap.column) is not None
    ]
    operation_caps = [
        OperationCap(unit=cap.unit, value=cap.unit.to_public(getattr(session, cap.column)))
        for cap in caps_counting(Counts.OPERATION)
        if getattr(session, cap.column) is not None
    ]
    return SessionRow(session=session, caps=caps, operation_caps=operation_caps)


def _usage_x10(unit: Unit) -> str:
    return f"{unit.name}_usage_x10"


def _at_least(share: Decimal) -> Q:
    """Sessions whose accrued + reserved reaches `share` of a session cap, in exact integer
    arithmetic: used * 10 >= cap * share * 10."""
    tenths = int(share * 10)
    return reduce(
        or_,
        (
            Q(**{f"{cap.column}__isnull": False})
            & Q(**{f"{_usage_x10(cap.unit)}__gte": F(cap.column) * tenths})
            for cap in caps_counting(Counts.LEDGER)
        ),
    )


SESSION_STATUSES = {
    "": "All sessions",
    "near": "Near or over a cap",
    "over": "At or over a cap",
    "capped": "With a session cap",
}


def _sessions_qs(*, project_id: int | None, search: str, status: str) -> QuerySet:
    qs = LlmSession.objects.select_related("project", "constraint")
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    if search:
        qs = qs.filter(session_id__icontains=search)
    if status in ("near", "over"):
        usage = {_usage_x10(unit): (F(unit.used) + F(unit.reserved)) * 10 for unit in UNITS}
        qs = qs.annotate(**usage).filter(_at_least(NEAR_CAP if status == "near" else Decimal(1)))
    elif status == "capped":
        qs = qs.filter(capped_q(Counts.LEDGER))
    return qs.order_by("-last_activity_at", "-pk")


@dataclass(frozen=True, slots=True)
class Page:
    rows: list
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def _page(qs: QuerySet, *, page: int, per_page: int) -> tuple[list, bool]:
    start = (page - 1) * per_page
    rows = list(qs[start : start + per_page + 1])  # one more: is there a next page?
    return rows[:per_page], len(rows) > per_page


def sessions_page(
    *, project_id: int | None, search: str = "", status: str = "", page: int = 1, per_page: int = 25
) -> Page:
    """Sessions, most recently active first (indexed on last_activity_at), one query."""
    rows, has_next = _page(
        _sessions_qs(project_id=project_id, search=search, status=status),
        page=page,
        per_page=per_page,
    )
    return Page(rows=[session_row(s) for s in rows], number=page, has_next=has_next)


def sessions_near_cap(*, project_id: int | None, limit: int = 6) -> list[SessionRow]:
    """The most recently active sessions at 80% of a cap or more."""
    qs = _sessions_qs(project_id=project_id, search="", status="near")
    return [session_row(s) for s in qs[:limit]]


def session_get(*, pk: int) -> LlmSession | None:
    return LlmSession.objects.select_related("project", "constraint").filter(pk=pk).first()


def session_operations_page(
    *, project_id: int, session_id: str, page: int = 1, per_page: int = 25
) -> Page:
    """One page of a session's operations, newest first (index on project, session,
    started_at)."""
    qs = OperationTelemetry.objects.filter(project_id=project_id, session_id=session_id).order_by(
        "-started_at", "-pk"
    )
    rows, has_next = _page(qs, page=page, per_page=per_page)
    return Page(rows=rows, number=page, has_next=has_next)


def session_for_operation(*, operation: OperationTelemetry) -> LlmSession | None:
    """The ledger of the operation's session, if it still exists (a cleared session's
    telemetry stays)."""
    if operation.project_id is None:
        return None
    return LlmSession.objects.filter(
        project_id=operation.project_id, session_id=operation.session_id
    ).first()


@dataclass(frozen=True, slots=True)
class ToolCallRow:
    name: str
    arguments: str  # JSON text, as kept (truncated when stored)


@dataclass(frozen=True, slots=True)
class BeyondText:
    """What an operation sent and got beyond text: tool definitions, images, choices asked
    for, and the tool calls answered."""

    tools_sent: int
    images_sent: int
    choices: int
    tool_calls: list[ToolCallRow]


def operation_beyond_text(operation: OperationTelemetry) -> BeyondText | None:
    """The operation's tools, images, choices and tool calls; None for a text-only
    operation of one choice (nothing to show)."""
    calls = [
        ToolCallRow(name=str(call.get("name", "")), arguments=str(call.get("arguments", "")))
        for call in operation.tool_calls or []
        if isinstance(call, dict)
    ]
    if not (operation.tools_sent or operation.images_sent or operation.choices > 1 or calls):
        return None
    return BeyondText(
        tools_sent=operation.tools_sent,
        images_sent=operation.images_sent,
        choices=operation.choices,
        tool_calls=calls,
    )


def operation_get(*, operation_id) -> OperationTelemetry | None:
    return (
        OperationTelemetry.objects.select_related("project", "api_key")
        .filter(operation_id=operation_id)
        .first()
    )
