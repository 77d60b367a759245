"""Reads on the budget ledger."""

from dataclasses import dataclass
from decimal import Decimal

from aura_orchestrator.money import micros_to_usd
from budgets.models import LlmSession


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    session_id: str
    total_tokens_used: int
    total_cost_accrued: Decimal
    tokens_reserved: int
    cost_reserved: Decimal
    operation_count: int
    max_tokens_per_operation: int | None
    max_cost_per_operation: Decimal | None
    max_tokens_per_session: int | None
    max_cost_per_session: Decimal | None
    enforce_hard_limits: bool
    constraint: str | None
    remaining_tokens: int | None
    remaining_cost: Decimal | None
    created_at: object
    last_activity_at: object


def budget_status(session: LlmSession) -> BudgetStatus:
    tokens_cap, cost_cap = session.max_tokens_per_session, session.max_cost_per_session_micros
    return BudgetStatus(
        session_id=session.session_id,
        total_tokens_used=session.tokens_used,
        total_cost_accrued=micros_to_usd(session.cost_accrued_micros),
        tokens_reserved=session.tokens_reserved,
        cost_reserved=micros_to_usd(session.cost_reserved_micros),
        operation_count=session.operation_count,
        max_tokens_per_operation=session.max_tokens_per_operation,
        max_cost_per_operation=session.max_cost_per_operation,
        max_tokens_per_session=tokens_cap,
        max_cost_per_session=session.max_cost_per_session,
        enforce_hard_limits=session.enforce_hard_limits,
        constraint=session.constraint.name if session.constraint_id else None,
        remaining_tokens=None
        if tokens_cap is None
        else max(0, tokens_cap - session.tokens_used - session.tokens_reserved),
        remaining_cost=None
        if cost_cap is None
        else micros_to_usd(
            max(0, cost_cap - session.cost_accrued_micros - session.cost_reserved_micros)
        ),
        created_at=session.created_at,
        last_activity_at=session.last_activity_at,
    )


def session_get(*, project_id: int, session_id: str) -> LlmSession | None:
    return (
        LlmSession.objects.select_related("constraint")
        .filter(project_id=project_id, session_id=session_id)
        .first()
    )
