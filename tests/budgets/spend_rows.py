"""Spend-budget ledgers written straight through the ORM (the protocol has its own tests):
a budget's period with its pool, and shard rows holding what was spent and reserved."""

import uuid
from datetime import datetime, timedelta

from budgets import periods
from budgets.spend_models import SpendBudget, SpendHold, SpendPeriod, SpendShard


def current_start(budget: SpendBudget, *, now: datetime | None = None) -> datetime:
    return periods.window(
        budget.period, time_zone=budget.project.time_zone, now=now or periods.now()
    )[0]


def make_ledger(
    budget: SpendBudget,
    *,
    spent: list[tuple[int, int]],
    reserved: tuple[int, int] = (0, 0),
    subject: str = "",
    period_start: datetime | None = None,
) -> SpendPeriod:
    """One period of `budget`: shard i spent `spent[i]` (tokens, micro-dollars); shard 0
    also holds `reserved`. Each shard's allotment is what it holds; the pool is the rest
    of the cap, as the protocol leaves it."""
    start = period_start or current_start(budget)
    in_use_tokens = sum(t for t, _ in spent) + reserved[0]
    in_use_cost = sum(c for _, c in spent) + reserved[1]
    period = SpendPeriod.objects.create(
        budget=budget,
        subject=subject,
        period_start=start,
        max_tokens=budget.max_tokens,
        max_cost_micros=budget.max_cost_micros,
        pool_tokens=(budget.max_tokens or 0) - in_use_tokens if budget.max_tokens else 0,
        pool_cost_micros=(budget.max_cost_micros or 0) - in_use_cost
        if budget.max_cost_micros
        else 0,
    )
    for i, (tokens, cost) in enumerate(spent):
        held = reserved if i == 0 else (0, 0)
        SpendShard.objects.create(
            budget=budget,
            subject=subject,
            period_start=start,
            shard=i,
            allot_tokens=tokens + held[0] if budget.max_tokens else None,
            allot_cost_micros=cost + held[1] if budget.max_cost_micros else None,
            tokens_used=tokens,
            cost_accrued_micros=cost,
            tokens_reserved=held[0],
            cost_reserved_micros=held[1],
            operation_count=1,
        )
    return period


def make_hold(shard: SpendShard, *, tokens: int = 100, cost_micros: int = 1_000) -> SpendHold:
    return SpendHold.objects.create(
        operation_id=uuid.uuid4(),
        shards=[[shard.pk, None, None]],
        tokens=tokens,
        cost_micros=cost_micros,
        expires_at=periods.now() + timedelta(minutes=15),
    )
