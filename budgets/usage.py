"""Reads of spend budgets: what applies to a key (and an end user) in the current period,
for the usage API, and every budget's current period, for the Prometheus gauges.

A budget's period is summed over its shards here, in one aggregate query per call: the
shards are the ledger (budgets/spend_models.py), the period row only holds the pool.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from aura_orchestrator.tenancy.models import ApiKey, Project
from budgets import periods
from budgets.spend_models import Scope, SpendBudget, SpendShard
from budgets.spending import Key, SpendTotals, period_totals, scope_label, usd

_SCOPE_ORDER = {Scope.PROJECT: 0, Scope.API_KEY: 1, Scope.END_USER: 2, Scope.DEFAULT_END_USER: 3}


Sums = SpendTotals  # one period of one budget (and subject), summed over its shards


def _left(cap: int | None, used: int, reserved: int) -> int | None:
    return None if cap is None else max(cap - used - reserved, 0)


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """A budget in the period holding now (for a default end-user budget, one end
    user's), in ledger units; `body()` is its public shape."""

    budget: SpendBudget
    label: str
    subject: str
    period_start: datetime
    resets_at: datetime | None
    sums: Sums

    @property
    def key(self) -> Key:
        return (self.budget.pk, self.subject, self.period_start)

    def body(self) -> dict[str, Any]:
        b, s = self.budget, self.sums
        cost_cap = b.max_cost_micros
        return {
            "scope": self.label,
            "budget_id": b.pk,
            "period": b.period,
            "period_start": self.period_start,
            "resets_at": self.resets_at,
            "enforce_hard_limits": b.enforce_hard_limits,
            "max_tokens": b.max_tokens,
            "max_cost": usd(cost_cap),
            "tokens_used": s.tokens_used,
            "cost_used": usd(s.cost_micros),
            "tokens_reserved": s.tokens_reserved,
            "cost_reserved": usd(s.cost_reserved_micros),
            "remaining_tokens": _left(b.max_tokens, s.tokens_used, s.tokens_reserved),
            "remaining_cost": usd(_left(cost_cap, s.cost_micros, s.cost_reserved_micros)),
            "provider": b.provider.name if b.provider is not None else None,
            "model": b.model_name or None,
        }


def _with_sums(entries: list[BudgetUsage]) -> list[BudgetUsage]:
    sums = period_totals(e.key for e in entries)
    return [
        BudgetUsage(
            budget=e.budget,
            label=e.label,
            subject=e.subject,
            period_start=e.period_start,
            resets_at=e.resets_at,
            sums=sums.get(e.key, Sums()),
        )
        for e in entries
    ]


def _entry(budget: SpendBudget, *, subject: str, time_zone: str, now: datetime) -> BudgetUsage:
    start, resets = periods.window(budget.period, time_zone=time_zone, now=now)
    # A default applied to one end user is named as a refusal names it (Level.label).
    label = f"end_user:{subject}" if subject else scope_label(budget)
    return BudgetUsage(
        budget=budget,
        label=label,
        subject=subject,
        period_start=start,
        resets_at=resets,
        sums=Sums(),
    )


def usage_for_key(
    *, api_key: ApiKey, end_user: str | None, now: datetime | None = None
) -> list[BudgetUsage]:
    """Every active budget that applies to this key's requests (and, given an end user,
    to theirs): the project's, the key's, the end user's own, else the default for end
    users, narrowing by narrowing, as `budgets.spending.levels_for` chooses them. Narrowed
    budgets are all listed (which calls they count is the client's business)."""
    project: Project = api_key.project
    applies = Q(scope=Scope.PROJECT) | Q(scope=Scope.API_KEY, api_key=api_key)
    if end_user:
        applies |= Q(scope=Scope.END_USER, end_user=end_user) | Q(scope=Scope.DEFAULT_END_USER)
    budgets = list(
        SpendBudget.objects.filter(applies, project=project, active=True)
        .select_related("project", "api_key", "provider")
        .order_by("id")
    )
    own = {(b.provider_id, b.model_name) for b in budgets if b.scope == Scope.END_USER}
    now = now or periods.now()
    entries = []
    for budget in budgets:
        if budget.scope == Scope.DEFAULT_END_USER:
            if (budget.provider_id, budget.model_name) in own:
                continue  # the end user's own budget of that narrowing replaces it
            subject = end_user or ""
        else:
            subject = ""
        entries.append(_entry(budget, subject=subject, time_zone=project.time_zone, now=now))
    entries.sort(key=lambda e: (_SCOPE_ORDER[Scope(e.budget.scope)], e.budget.pk))
    return _with_sums(entries)


def usage_current(*, limit: int = 1000, now: datetime | None = None) -> list[BudgetUsage]:
    """Every active budget's current period, at most `limit` of them (a bound on what a
    scrape reads and exports): one entry per budget, and for a default end-user budget
    one per end user with a ledger in the period (none yet: no entry)."""
    now = now or periods.now()
    budgets = list(
        SpendBudget.objects.filter(active=True)
        .select_related("project", "api_key", "provider")
        .order_by("id")[:limit]
    )
    entries: list[BudgetUsage] = []
    defaults: dict[tuple[int, datetime], SpendBudget] = {}
    for budget in budgets:
        entry = _entry(budget, subject="", time_zone=budget.project.time_zone, now=now)
        if budget.scope == Scope.DEFAULT_END_USER:
            defaults[(budget.pk, entry.period_start)] = budget
        else:
            entries.append(entry)
    if defaults:
        condition = Q(pk__in=[])
        for budget_id, start in defaults:
            condition |= Q(budget_id=budget_id, period_start=start)
        subjects = (
            SpendShard.objects.filter(condition)
            .values_list("budget_id", "period_start", "subject")
            .distinct()
            .order_by("budget_id", "subject")[: max(limit - len(entries), 0)]
        )
        for budget_id, start, subject in subjects:
            budget = defaults[(budget_id, start)]
            entries.append(
                _entry(budget, subject=subject, time_zone=budget.project.time_zone, now=now)
            )
    return _with_sums(entries[:limit])
