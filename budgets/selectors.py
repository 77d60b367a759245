"""Reads on the budget ledger."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from aura_orchestrator.money import micros_to_usd
from budgets.caps import (
    CAPS,
    COST,
    TOKENS,
    Counts,
    has_money_caps,
    overruns,
    remaining,
)
from budgets.models import LlmSession


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A session's ledger in public units. `caps` (by public field) and `remaining` (by
    unit) come from `budgets/caps.py`, so a cap declared there appears here."""

    session_id: str
    total_tokens_used: int
    total_cost_accrued: Decimal
    tokens_reserved: int
    cost_reserved: Decimal
    operation_count: int
    caps: dict[str, int | Decimal | None]
    enforce_hard_limits: bool
    constraint: str | None
    remaining: dict[str, int | Decimal | None]
    created_at: datetime
    last_activity_at: datetime

    def body(self) -> dict[str, object]:
        """The session's budget body, flat, in the order the API has always shown it."""
        return {
            "session_id": self.session_id,
            "total_tokens_used": self.total_tokens_used,
            "total_cost_accrued": self.total_cost_accrued,
            "tokens_reserved": self.tokens_reserved,
            "cost_reserved": self.cost_reserved,
            "operation_count": self.operation_count,
            **self.caps,
            "enforce_hard_limits": self.enforce_hard_limits,
            "constraint": self.constraint,
            **self.remaining,
            "created_at": self.created_at,
            "last_activity_at": self.last_activity_at,
        }


def budget_status(session: LlmSession) -> BudgetStatus:
    constraint = session.constraint if session.constraint_id else None
    return BudgetStatus(
        session_id=session.session_id,
        total_tokens_used=getattr(session, TOKENS.used),
        total_cost_accrued=micros_to_usd(getattr(session, COST.used)),
        tokens_reserved=getattr(session, TOKENS.reserved),
        cost_reserved=micros_to_usd(getattr(session, COST.reserved)),
        operation_count=session.operation_count,
        caps={cap.field: cap.public_value(session) for cap in CAPS},
        enforce_hard_limits=session.enforce_hard_limits,
        constraint=constraint.name if constraint is not None else None,
        remaining=remaining(session),
        created_at=session.created_at,
        last_activity_at=session.last_activity_at,
    )


def ledger_get(session_pk: int) -> LlmSession | None:
    """The session's ledger by primary key, its constraint loaded (for budget_status)."""
    return LlmSession.objects.select_related("constraint").filter(pk=session_pk).first()


def session_get(*, project_id: int, session_id: str) -> LlmSession | None:
    return (
        LlmSession.objects.select_related("constraint")
        .filter(project_id=project_id, session_id=session_id)
        .first()
    )


def unpriced_model_message(model_name: str) -> str:
    return (
        f"model '{model_name}' has no known price, so its cost cannot be held to a cost "
        "cap; set its prices in the admin"
    )


def operation_overruns(
    session: LlmSession, *, tokens: int, cost_micros: int | None, model_name: str
) -> list[str]:
    """Per-operation caps the worst case passes, as messages (empty when within); a model
    without a price cannot be held to any cost cap."""
    amounts = {TOKENS.amount: tokens, COST.amount: cost_micros}
    problems = overruns(session, Counts.OPERATION, amounts=amounts)
    if cost_micros is None and has_money_caps(session):
        problems.append(unpriced_model_message(model_name))
    return problems


def session_overruns(session: LlmSession, *, tokens: int, cost_micros: int) -> list[str]:
    """Session caps that accrued + reserved + this operation would pass, as messages."""
    return overruns(
        session, Counts.LEDGER, amounts={TOKENS.amount: tokens, COST.amount: cost_micros}
    )
