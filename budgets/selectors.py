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


def ledger_get(session_pk: int) -> LlmSession | None:
    """The session's ledger by primary key, its constraint loaded (for budget_status)."""
    return LlmSession.objects.select_related("constraint").filter(pk=session_pk).first()


def session_get(*, project_id: int, session_id: str) -> LlmSession | None:
    return (
        LlmSession.objects.select_related("constraint")
        .filter(project_id=project_id, session_id=session_id)
        .first()
    )


def _usd(micros: int) -> str:
    return f"${micros_to_usd(micros)}"


def operation_overruns(
    session: LlmSession, *, tokens: int, cost_micros: int | None, model_name: str
) -> list[str]:
    """Per-operation caps the worst case passes, as messages (empty when within)."""
    problems = []
    cap = session.max_tokens_per_operation
    if cap is not None and tokens > cap:
        problems.append(
            f"max_tokens_per_operation: worst case {tokens} tokens exceeds the cap of {cap} "
            f"by {tokens - cap}"
        )
    cap = session.max_cost_per_operation_micros
    if cap is not None and cost_micros is not None and cost_micros > cap:
        problems.append(
            f"max_cost_per_operation: worst case {_usd(cost_micros)} exceeds the cap of "
            f"{_usd(cap)} by {_usd(cost_micros - cap)}"
        )
    has_cost_cap = (
        session.max_cost_per_operation_micros is not None
        or session.max_cost_per_session_micros is not None
    )
    if cost_micros is None and has_cost_cap:
        problems.append(
            f"model '{model_name}' has no known price, so its cost cannot be held to a cost "
            "cap; set its prices in the admin"
        )
    return problems


def session_overruns(session: LlmSession, *, tokens: int, cost_micros: int) -> list[str]:
    """Session caps that accrued + reserved + this operation would pass, as messages."""
    problems = []
    cap = session.max_tokens_per_session
    if cap is not None:
        projected = session.tokens_used + session.tokens_reserved + tokens
        if projected > cap:
            problems.append(
                f"max_tokens_per_session: {session.tokens_used} used + "
                f"{session.tokens_reserved} reserved + {tokens} for this operation exceeds the "
                f"cap of {cap} by {projected - cap}"
            )
    cap = session.max_cost_per_session_micros
    if cap is not None:
        projected = session.cost_accrued_micros + session.cost_reserved_micros + cost_micros
        if projected > cap:
            problems.append(
                f"max_cost_per_session: {_usd(session.cost_accrued_micros)} accrued + "
                f"{_usd(session.cost_reserved_micros)} reserved + {_usd(cost_micros)} for this "
                f"operation exceeds the cap of {_usd(cap)} by {_usd(projected - cap)}"
            )
    return problems
