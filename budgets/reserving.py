"""Reserving, the protocol once for every store: what a reservation holds (`Hold`), the
steps it takes (`reserve_steps`: per-operation caps, the conditional write, a fresh read
that tells a race from a refusal) and the reservation it gives. The stores supply the
write and the read: the ORM (`budgets.services.budget_reserve`) and SQL
(`aura_orchestrator/store/pg.py`)."""

import uuid
from collections.abc import Awaitable, Callable, Generator
from copy import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import TypeVar, overload

from django.conf import settings
from django.utils import timezone

from aura_orchestrator.errors import BudgetExceeded
from budgets.models import LlmSession
from budgets.selectors import operation_overruns, session_overruns
from budgets.spending import SpendHoldRef


@dataclass(slots=True)
class Reservation:
    id: uuid.UUID
    session_pk: int
    tokens: int
    cost_micros: int
    warnings: list[str] = field(default_factory=list)
    ledger: LlmSession | None = None  # the session as the reservation left it
    # What the operation also holds on spend budgets' shards (budgets/spending.py),
    # settled and released with this reservation, in the same transaction.
    spend: SpendHoldRef | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """One reservation to write: its id, the operation, the worst case, its lifetime."""

    id: uuid.UUID
    operation_id: uuid.UUID
    tokens: int
    cost_micros: int
    created_at: datetime
    expires_at: datetime


def hold_new(
    *, operation_id: uuid.UUID, tokens: int, cost_micros: int, expires_in: float | None
) -> Hold:
    """It lives `expires_in` seconds: the operation's deadline plus a margin
    (aura_orchestrator/deadline.py); by default the longest a reservation may live."""
    now = timezone.now()
    if expires_in is None:
        expires_in = settings.AURA["BUDGET_RESERVATION_TTL_SECONDS"]
    return Hold(
        id=uuid.uuid4(),
        operation_id=operation_id,
        tokens=tokens,
        cost_micros=cost_micros,
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in),
    )


def session_cleared() -> BudgetExceeded:
    """The session's ledger was deleted (`session_clear`) while a request used it."""
    return BudgetExceeded("Budget exceeded: the session was cleared; retry.")


def _refuse(problems: list[str], session: LlmSession) -> BudgetExceeded:
    """The session's refusal, naming it as spend budgets' refusals name theirs."""
    return BudgetExceeded(
        "Budget exceeded: " + "; ".join(problems) + ".",
        details={
            "caps": problems,
            "scope": f"session:{session.session_id}",
            "period": "none",
            "resets_at": None,
        },
    )


# --- reserve: the protocol, once for every store -------------------------------------------


class Step(Enum):
    WRITE = "write"  # the conditional write of `hold`: the ledger it leaves, None if refused
    READ = "read"  # the ledger as it is now, None if there is none


# What the steps return: a Reservation; by name (no session given), None as well.
_R = TypeVar("_R", Reservation, Reservation | None)
ReserveSteps = Generator[tuple[Step, Hold, LlmSession | None], LlmSession | None, _R]

# A conditional write that admitted nothing although the ledger read just after admits
# the request lost a race (a session created, caps replaced, a reservation handed back
# in between): it is tried again, this many times in all, before it is called a refusal.
RESERVE_TRIES = 4


@overload
def reserve_steps(
    *,
    session: LlmSession,
    operation_id: uuid.UUID,
    tokens: int,
    cost_micros: int | None,
    model_name: str,
    expires_in: float | None,
) -> ReserveSteps[Reservation]: ...
@overload
def reserve_steps(
    *,
    session: None,
    operation_id: uuid.UUID,
    tokens: int,
    cost_micros: int | None,
    model_name: str,
    expires_in: float | None,
) -> ReserveSteps[Reservation | None]: ...
def reserve_steps(
    *,
    session: LlmSession | None,
    operation_id: uuid.UUID,
    tokens: int,
    cost_micros: int | None,
    model_name: str,
    expires_in: float | None,
) -> ReserveSteps[Reservation | None]:
    """What a reservation does, whatever the store: yields the steps (`Step`, the hold,
    the ledger the step is on) and takes their results; returns the reservation, or None
    when reserving by name (`session` None: the store knows the name) finds no session.

    Per-operation caps are checked before the write when the ledger is known (by name:
    the write holds hard ones, soft ones are read from the row it returns). A write that
    admits nothing is explained from a fresh read: a refusal only when a cap says so."""
    cost = cost_micros or 0
    for attempt in range(1, RESERVE_TRIES + 1):
        warnings = None
        if session is not None:
            warnings = reserve_admission(
                session, tokens=tokens, cost_micros=cost_micros, model_name=model_name
            )
        hold = hold_new(
            operation_id=operation_id, tokens=tokens, cost_micros=cost, expires_in=expires_in
        )
        ledger = yield Step.WRITE, hold, session
        if ledger is not None:
            if warnings is None:
                warnings = reserve_admission(
                    ledger, tokens=tokens, cost_micros=cost_micros, model_name=model_name
                )
            return reservation_of(ledger, hold=hold, warnings=warnings)
        current = yield Step.READ, hold, session
        if session is None:  # by name
            if current is None:
                return None  # a new session: the caller creates it
            reserve_admission(
                current, tokens=tokens, cost_micros=cost_micros, model_name=model_name
            )
        refused = not_admitted(current, tokens=tokens, cost=cost, last_try=attempt == RESERVE_TRIES)
        if refused is not None:
            raise refused
        if session is not None:
            session = current  # lost a race (caps replaced meanwhile): again, as it is now
    raise AssertionError("unreachable: the last try raises")


def run_steps(steps: ReserveSteps[_R], act: Callable[..., LlmSession | None]) -> _R:
    """Drive `reserve_steps` with a synchronous store's `act(step, hold, session)`."""
    result = None
    while True:
        try:
            request = steps.send(result)
        except StopIteration as done:
            reservation: _R = done.value
            return reservation
        result = act(*request)


async def run_steps_async(
    steps: ReserveSteps[_R], act: Callable[..., Awaitable[LlmSession | None]]
) -> _R:
    """`run_steps` for an async store."""
    result = None
    while True:
        try:
            request = steps.send(result)
        except StopIteration as done:
            reservation: _R = done.value
            return reservation
        result = await act(*request)


def reserve_admission(
    session: LlmSession, *, tokens: int, cost_micros: int | None, model_name: str
) -> list[str]:
    """The per-operation caps, checked before the ledger is touched: a hard limit refuses
    (BudgetExceeded), a soft one comes back as warnings."""
    warnings = operation_overruns(
        session, tokens=tokens, cost_micros=cost_micros, model_name=model_name
    )
    if warnings and session.enforce_hard_limits:
        raise _refuse(warnings, session)
    return warnings


def reservation_of(ledger: LlmSession, *, hold: Hold, warnings: list[str]) -> Reservation:
    """The reservation just admitted; `ledger` is the session as the reservation left it.
    Soft limits add the session caps it passes to the warnings."""
    tokens, cost = hold.tokens, hold.cost_micros
    warnings = list(warnings)
    if not ledger.enforce_hard_limits and ledger.has_caps:
        before = copy(ledger)  # count this reservation once
        before.tokens_reserved -= tokens
        before.cost_reserved_micros -= cost
        warnings += session_overruns(before, tokens=tokens, cost_micros=cost)
    return Reservation(
        id=hold.id,
        session_pk=ledger.pk,
        tokens=tokens,
        cost_micros=cost,
        warnings=[f"{w} (soft limit)" for w in warnings],
        ledger=ledger,
    )


def not_admitted(
    current: LlmSession | None, *, tokens: int, cost: int, last_try: bool = True
) -> BudgetExceeded | None:
    """Why the conditional write admitted nothing, from the ledger read just after; None
    when that ledger admits the request (a race: the caller tries again), unless it was
    the last try. A refusal happens only when a cap says so."""
    if current is None:  # cleared between ensure and reserve
        return session_cleared()
    overruns = session_overruns(current, tokens=tokens, cost_micros=cost)
    if overruns:
        return _refuse(overruns, current)
    if not last_try:
        return None
    return _refuse(["the session's caps changed during the request"], current)
