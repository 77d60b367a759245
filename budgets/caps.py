"""The budget caps, each declared once.

A cap is a public field (the request's `budget_constraint`, a `BudgetConstraint`, the
session's budget body), a unit, what it counts, and the ledger column that holds it.
Everything else is derived from `CAPS`: the SQL and ORM conditions a reservation must
meet, the refusal and warning messages, `has_caps`, the request fields, the answer's
`remaining_*`, the admin's and the dashboard's columns. Adding a cap is the declaration
below, its model fields (`BudgetConstraint` in public units, `LlmSession` in ledger
units) and their migration; `tests/budgets/test_caps.py` holds the models to the table.

Scope is data too: a cap counts either one operation's worst case (`OPERATION`) or what
its ledger has accrued and holds reserved, plus this operation (`LEDGER`). Today the
only ledger is the session's row; a ledger of another scope (a project's month, an API
key's day) is another row with the same columns and the same conditions.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.db.models import F, Q

from aura_orchestrator.money import micros_to_usd, usd_to_micros


@dataclass(frozen=True, slots=True)
class Unit:
    """What a cap is counted in, and where a ledger keeps that quantity."""

    name: str  # "tokens" | "cost"
    used: str  # the ledger column of what was charged
    reserved: str  # the ledger column of what in-flight operations hold
    amount: str  # an operation's amount: the SQL parameter and the keyword (tokens, cost)
    remaining: str  # the budget body's field: what the tightest ledger cap still allows
    money: bool  # public values are Decimal USD, ledger values integer micro-dollars
    charged: str  # what messages call the charged amount: "used" | "accrued"

    def to_ledger(self, value: int | Decimal) -> int:
        return usd_to_micros(Decimal(value)) if self.money else int(value)

    def to_public(self, value: int) -> int | Decimal:
        return micros_to_usd(value) if self.money else value

    def show(self, value: int) -> str:
        """A ledger value for a message: `$0.000120` or `1200`."""
        return f"${micros_to_usd(value)}" if self.money else str(value)

    def show_amount(self, value: int) -> str:
        """An operation's amount on its own: `$0.000120` or `1200 tokens`."""
        return self.show(value) if self.money else f"{value} tokens"


TOKENS = Unit(
    name="tokens",
    used="tokens_used",
    reserved="tokens_reserved",
    amount="tokens",
    remaining="remaining_tokens",
    money=False,
    charged="used",
)
COST = Unit(
    name="cost",
    used="cost_accrued_micros",
    reserved="cost_reserved_micros",
    amount="cost",
    remaining="remaining_cost",
    money=True,
    charged="accrued",
)
UNITS = (TOKENS, COST)
REMAINING_FIELDS = tuple(unit.remaining for unit in UNITS)


class Counts(StrEnum):
    OPERATION = "operation"  # one operation's worst case against the cap
    LEDGER = "ledger"  # used + reserved + this operation against the cap


@dataclass(frozen=True, slots=True)
class Cap:
    field: str  # the public name (request, BudgetConstraint, budget body)
    unit: Unit
    counts: Counts
    column: str  # the ledger's column, in ledger units (micro-dollars for money)
    label: str  # short, for the admin and the dashboard

    def public_value(self, ledger: Any) -> int | Decimal | None:
        value = getattr(ledger, self.column)
        return None if value is None else self.unit.to_public(value)


CAPS: tuple[Cap, ...] = (
    Cap(
        field="max_tokens_per_operation",
        unit=TOKENS,
        counts=Counts.OPERATION,
        column="max_tokens_per_operation",
        label="max tokens / operation",
    ),
    Cap(
        field="max_cost_per_operation",
        unit=COST,
        counts=Counts.OPERATION,
        column="max_cost_per_operation_micros",
        label="max cost / operation",
    ),
    Cap(
        field="max_tokens_per_session",
        unit=TOKENS,
        counts=Counts.LEDGER,
        column="max_tokens_per_session",
        label="max tokens / session",
    ),
    Cap(
        field="max_cost_per_session",
        unit=COST,
        counts=Counts.LEDGER,
        column="max_cost_per_session_micros",
        label="max cost / session",
    ),
)
CAP_COLUMNS = tuple(cap.column for cap in CAPS)


_COUNTING = {counts: tuple(cap for cap in CAPS if cap.counts is counts) for counts in Counts}


def caps_counting(counts: Counts) -> tuple[Cap, ...]:
    return _COUNTING[counts]


def has_caps(ledger: Any) -> bool:
    return any(getattr(ledger, column) is not None for column in CAP_COLUMNS)


def capped_q(counts: Counts | None = None) -> Q:
    """`has_caps` on the ORM: ledgers with a cap (of `counts`; of any kind by default)."""
    caps = CAPS if counts is None else caps_counting(counts)
    condition = Q()
    for cap in caps:
        condition |= Q(**{f"{cap.column}__isnull": False})
    return condition


def has_money_caps(ledger: Any) -> bool:
    """A cost cap applies: an unpriced model cannot be held to it."""
    return any(cap.unit.money and getattr(ledger, cap.column) is not None for cap in CAPS)


def ledger_values(public: Mapping[str, Any]) -> dict[str, int | None]:
    """Caps given by public field (a request's, a constraint's) as ledger columns; every
    column is present, None for no cap."""
    values: dict[str, int | None] = {}
    for cap in CAPS:
        value = public.get(cap.field)
        values[cap.column] = None if value is None else cap.unit.to_ledger(value)
    return values


# -- what a reservation must meet (hard limits) -------------------------------------------


def admits_sql(counts: Counts) -> str:
    """The SQL condition (on the ledger row, `%(tokens)s` and `%(cost)s` the operation's
    amounts) that every cap of `counts` holds, each joined by AND."""
    terms = []
    for cap in caps_counting(counts):
        amount = f"%({cap.unit.amount})s"
        if counts is Counts.LEDGER:
            amount = f"{cap.unit.used} + {cap.unit.reserved} + {amount}"
        terms.append(f"({cap.column} IS NULL OR {amount} <= {cap.column})")
    return " AND ".join(terms)


def admits_q(counts: Counts, *, amounts: Mapping[str, int]) -> Q:
    """The same condition on the ORM (`amounts` by unit amount name: tokens, cost)."""
    condition = Q()
    for cap in caps_counting(counts):
        amount: Any = amounts[cap.unit.amount]
        if counts is Counts.LEDGER:
            amount = F(cap.unit.used) + F(cap.unit.reserved) + amount
        condition &= Q(**{f"{cap.column}__isnull": True}) | Q(**{f"{cap.column}__gte": amount})
    return condition


# -- what a request passes, as messages (refusals, or soft-limit warnings) --------------


def overruns(ledger: Any, counts: Counts, *, amounts: Mapping[str, int | None]) -> list[str]:
    """The caps of `counts` that the operation's amounts pass on `ledger`, as messages.
    An amount None (a cost without a known price) passes no cap: the caller says why."""
    problems = []
    for cap in caps_counting(counts):
        limit = getattr(ledger, cap.column)
        amount = amounts[cap.unit.amount]
        if limit is None or amount is None:
            continue
        unit = cap.unit
        if counts is Counts.OPERATION:
            if amount > limit:
                problems.append(
                    f"{cap.field}: worst case {unit.show_amount(amount)} exceeds the cap of "
                    f"{unit.show(limit)} by {unit.show(amount - limit)}"
                )
            continue
        used, reserved = getattr(ledger, unit.used), getattr(ledger, unit.reserved)
        projected = used + reserved + amount
        if projected > limit:
            problems.append(
                f"{cap.field}: {unit.show(used)} {unit.charged} + {unit.show(reserved)} reserved + "
                f"{unit.show(amount)} for this operation exceeds the cap of "
                f"{unit.show(limit)} by {unit.show(projected - limit)}"
            )
    return problems


# -- what the ledger still allows ----------------------------------------------------------


def remaining(ledger: Any) -> dict[str, int | Decimal | None]:
    """Per unit, what the tightest ledger cap still allows (public units; None: no cap)."""
    left: dict[str, int | Decimal | None] = {}
    for unit in UNITS:
        limits = [
            getattr(ledger, cap.column)
            for cap in caps_counting(Counts.LEDGER)
            if cap.unit is unit and getattr(ledger, cap.column) is not None
        ]
        if not limits:
            left[unit.remaining] = None
            continue
        spent = getattr(ledger, unit.used) + getattr(ledger, unit.reserved)
        left[unit.remaining] = unit.to_public(max(0, min(limits) - spent))
    return left


def usage_shares(ledger: Any) -> list[float]:
    """How much of each ledger cap is in use (charged + reserved), 0..1+ each."""
    shares = []
    for cap in caps_counting(Counts.LEDGER):
        limit = getattr(ledger, cap.column)
        if limit:
            in_use = getattr(ledger, cap.unit.used) + getattr(ledger, cap.unit.reserved)
            shares.append(in_use / limit)
    return shares
