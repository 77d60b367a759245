"""Reads on the budget ledger."""

from dataclasses import make_dataclass
from decimal import Decimal

from budgets.caps import (
    CAPS,
    COST,
    TOKENS,
    UNITS,
    Counts,
    Unit,
    has_money_caps,
    overruns,
    remaining,
)
from budgets.models import LlmSession


def _public_type(unit: Unit) -> type:
    return Decimal if unit.money else int


# The session's budget body, in the order the API has always shown it; its `max_*` fields
# are the caps of `budgets/caps.py` and its `remaining_*` the units', so a cap declared
# there appears here (tests/budgets/test_caps.py holds them together).
BudgetStatus = make_dataclass(
    "BudgetStatus",
    [
        ("session_id", str),
        ("total_tokens_used", int),
        ("total_cost_accrued", Decimal),
        ("tokens_reserved", int),
        ("cost_reserved", Decimal),
        ("operation_count", int),
        *((cap.field, _public_type(cap.unit) | None) for cap in CAPS),
        ("enforce_hard_limits", bool),
        ("constraint", str | None),
        *((unit.remaining, _public_type(unit) | None) for unit in UNITS),
        ("created_at", object),
        ("last_activity_at", object),
    ],
    frozen=True,
    slots=True,
)
BudgetStatus.__module__ = __name__


def budget_status(session: LlmSession) -> "BudgetStatus":
    return BudgetStatus(
        session_id=session.session_id,
        total_tokens_used=getattr(session, TOKENS.used),
        total_cost_accrued=COST.to_public(getattr(session, COST.used)),
        tokens_reserved=getattr(session, TOKENS.reserved),
        cost_reserved=COST.to_public(getattr(session, COST.reserved)),
        operation_count=session.operation_count,
        enforce_hard_limits=session.enforce_hard_limits,
        constraint=session.constraint.name if session.constraint_id else None,
        created_at=session.created_at,
        last_activity_at=session.last_activity_at,
        **{cap.field: cap.public_value(session) for cap in CAPS},
        **remaining(session),
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
