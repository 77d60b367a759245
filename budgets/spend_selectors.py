"""Reads on spend budgets for operators (the admin and the staff dashboard): each budget's
current period summed over its shards, its recent periods, and the burn rate.

Spend comes from the ledger (SpendShard rows), never from telemetry: it is what the
budget enforces. A page of budgets is read in one aggregate query, whatever its length.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import reduce
from operator import or_

from django.db.models import Q, Sum

from aura_orchestrator.money import micros_to_usd
from budgets import periods
from budgets.caps import COST, TOKENS
from budgets.spend_models import Scope, SpendBudget, SpendPeriod, SpendShard
from budgets.spending import SpendTotals, period_totals

DAY = timedelta(days=1)
# A period younger than this is charted at this age: an hour-old month's burn rate would
# otherwise project its first call over a whole day.
MIN_ELAPSED = timedelta(hours=1)


Spent = SpendTotals  # ledger sums of one subject, or summed over several


@dataclass(slots=True)
class CurrentSpend:
    """A budget's current period. For the default end-user budget each end user has a
    ledger of their own: `total` sums them, `fullest` is the one nearest a cap."""

    period_start: datetime
    resets_at: datetime | None
    total: Spent = field(default_factory=Spent)
    fullest: Spent = field(default_factory=Spent)
    subjects: int = 0

    def share(self, budget: SpendBudget, spent: Spent | None = None) -> float | None:
        """The fuller of the two caps in use (used + reserved), None without caps."""
        spent = spent or self.fullest
        shares = [
            _fraction(spent.in_use(unit), cap)
            for unit, cap in ((COST, budget.max_cost_micros), (TOKENS, budget.max_tokens))
            if cap is not None
        ]
        return max(shares) if shares else None

    def remaining_micros(self, budget: SpendBudget) -> int | None:
        cap = budget.max_cost_micros
        if cap is None:
            return None
        return max(0, cap - self.fullest.cost_micros - self.fullest.cost_reserved_micros)

    def remaining_tokens(self, budget: SpendBudget) -> int | None:
        cap = budget.max_tokens
        if cap is None:
            return None
        return max(0, cap - self.fullest.tokens_used - self.fullest.tokens_reserved)


def _fraction(used: int, cap: int) -> float:
    if cap <= 0:
        return 1.0 if used else 0.0
    return used / cap


def current_window(budget: SpendBudget, *, now: datetime) -> tuple[datetime, datetime | None]:
    return periods.window(budget.period, time_zone=budget.project.time_zone, now=now)


def current_spend(
    budgets: list[SpendBudget], *, now: datetime | None = None
) -> dict[int, CurrentSpend]:
    """Each budget's current period (projects loaded), in one query grouped by subject."""
    now = now or periods.now()
    result = {}
    for budget in budgets:
        start, resets = current_window(budget, now=now)
        result[budget.pk] = CurrentSpend(period_start=start, resets_at=resets)
    if not result:
        return result
    keys = reduce(
        or_, (Q(budget_id=pk, period_start=cur.period_start) for pk, cur in result.items())
    )
    rows = (
        SpendShard.objects.filter(keys)
        .values("budget_id", "subject")
        .annotate(
            t_used=Sum("tokens_used"),
            c_used=Sum("cost_accrued_micros"),
            t_res=Sum("tokens_reserved"),
            c_res=Sum("cost_reserved_micros"),
        )
        .order_by()
    )
    by_pk = {b.pk: b for b in budgets}
    for row in rows:
        current = result[row["budget_id"]]
        spent = Spent(row["t_used"], row["c_used"], row["t_res"], row["c_res"])
        current.total.add(spent)
        current.subjects += 1
        budget = by_pk[row["budget_id"]]
        if current.subjects == 1 or (current.share(budget, spent) or 0) > (
            current.share(budget) or 0
        ):
            current.fullest = spent
    return result


@dataclass(frozen=True, slots=True)
class PeriodRow:
    period: SpendPeriod
    spent: Spent


def recent_periods(*, budget: SpendBudget, limit: int = 12) -> list[PeriodRow]:
    """The budget's latest period ledgers (one per subject), newest first, with their
    shards summed: two queries."""
    rows = list(
        SpendPeriod.objects.filter(budget=budget).order_by("-period_start", "subject")[:limit]
    )
    if not rows:
        return []
    keys = [(budget.pk, r.subject, r.period_start) for r in rows]
    sums = period_totals(keys)
    return [
        PeriodRow(period=r, spent=sums.get(key, Spent())) for r, key in zip(rows, keys, strict=True)
    ]


# --- The dashboard's spend limits ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Burn:
    """One capped unit of a budget this period: spend against the cap, the burn rate and
    when the cap is reached at that rate. Money in USD, tokens as counts."""

    kind: str  # "cost" | "tokens"
    used: Decimal | int
    reserved: Decimal | int
    cap: Decimal | int
    per_day: Decimal | int  # the burn rate
    reached_at: datetime | None  # None: not this period (or never, at a rate of zero)
    already: bool  # the cap is spent

    @property
    def ratio(self) -> Decimal:
        if not self.cap:
            return Decimal(1) if (self.used or self.reserved) else Decimal(0)
        return Decimal(self.used + self.reserved) / Decimal(self.cap)

    @property
    def used_percent(self) -> float:
        if not self.cap:
            return 100.0 if self.used else 0.0
        return float(min(Decimal(100), Decimal(self.used) * 100 / Decimal(self.cap)))

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
        return "near" if self.ratio >= Decimal("0.8") else "ok"


@dataclass(frozen=True, slots=True)
class LimitRow:
    budget: SpendBudget
    label: str
    period_start: datetime
    resets_at: datetime | None
    # Where the burn rate starts: the period's start, or the budget's creation if later
    # (an hour ago at the latest).
    since: datetime
    units: list[Burn]

    @property
    def reached_at(self) -> datetime | None:
        dates = [u.reached_at for u in self.units if u.reached_at is not None]
        return min(dates) if dates else None

    @property
    def already(self) -> bool:
        return any(u.already for u in self.units)

    @property
    def level(self) -> str:
        levels = {u.level for u in self.units}
        return next((lv for lv in ("over", "near", "ok") if lv in levels), "ok")


def _burn(
    *,
    kind: str,
    used: int,
    reserved: int,
    cap: int,
    elapsed: timedelta,
    now: datetime,
    resets_at: datetime | None,
) -> Burn:
    """Rate = used / days elapsed; the cap is reached (cap - used) / rate days from now."""
    days = Decimal(elapsed.total_seconds()) / Decimal(DAY.total_seconds())
    per_day = Decimal(used) / days
    already = used >= cap
    reached: datetime | None = None
    if not already and per_day > 0:
        seconds = (Decimal(cap - used) / per_day) * Decimal(DAY.total_seconds())
        if resets_at is None or seconds < Decimal((resets_at - now).total_seconds()):
            reached = now + timedelta(seconds=float(seconds))
    if kind == "cost":
        return Burn(
            kind=kind,
            used=micros_to_usd(used),
            reserved=micros_to_usd(reserved),
            cap=micros_to_usd(cap),
            per_day=micros_to_usd(per_day),
            reached_at=reached,
            already=already,
        )
    return Burn(
        kind=kind,
        used=used,
        reserved=reserved,
        cap=cap,
        per_day=round(per_day),
        reached_at=reached,
        already=already,
    )


def spend_limits(*, project_id: int | None = None, now: datetime | None = None) -> list[LimitRow]:
    """Every active project and API-key budget with a cap, this period: the bars, the burn
    rate and the projected day the cap is reached."""
    now = now or periods.now()
    qs = (
        SpendBudget.objects.filter(active=True, scope__in=[Scope.PROJECT, Scope.API_KEY])
        .filter(Q(max_cost__isnull=False) | Q(max_tokens__isnull=False))
        .select_related("project", "api_key", "provider")
        .order_by("project__name", "scope", "id")
    )
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    budgets = list(qs[:500])
    spend = current_spend(budgets, now=now)
    rows = []
    for budget in budgets:
        current = spend[budget.pk]
        since = min(max(current.period_start, budget.created_at), now - MIN_ELAPSED)
        elapsed = now - since
        spent = current.total
        units = [
            _burn(
                kind=unit.name,
                used=spent.used(unit),
                reserved=spent.in_use(unit) - spent.used(unit),
                cap=cap,
                elapsed=elapsed,
                now=now,
                resets_at=current.resets_at,
            )
            for unit, cap in ((COST, budget.max_cost_micros), (TOKENS, budget.max_tokens))
            if cap is not None
        ]
        rows.append(
            LimitRow(
                budget=budget,
                label=budget.scope_label,
                period_start=current.period_start,
                resets_at=current.resets_at,
                since=since,
                units=units,
            )
        )
    return rows
