"""Writes on the budget ledger: reserve, settle, release, clear.

Every function here is synchronous, pure ORM, and holds its transaction only for its own
few statements; the pipeline's store calls them through `db()` (aura_orchestrator/db.py)
before and after the provider call, never around it. On PostgreSQL the pipeline's
store (`aura_orchestrator/store/pg.py`) does the same writes in SQL, one round trip
each; what a reservation must meet comes from `budgets/caps.py` for both, and the
refusal protocol (`budgets/reserving.py`) is written once for both.
"""

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import partial

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from aura_orchestrator.caching.config_cache import memoized
from aura_orchestrator.errors import InvalidRequest
from budgets.caps import CAPS, Counts, admits_q, ledger_values
from budgets.models import BudgetConstraint, BudgetReservation, LlmSession
from budgets.reserving import (
    Hold,
    Reservation,
    Step,
    reserve_steps,
    run_steps,
)
from budgets.selectors import ledger_get
from budgets.spending import (
    SpendAsk,
    spend_hand_back,
    spend_release_expired,
    spend_release_operation,
    spend_write_slow,
)

_PUBLIC_FIELDS = frozenset(cap.field for cap in CAPS)


@dataclass(frozen=True, slots=True)
class Caps:
    """The caps a request brings (inline or a named constraint): `limits` by ledger
    column (`budgets/caps.py`), every column present, None = no cap."""

    limits: dict[str, int | None] = field(default_factory=lambda: ledger_values({}))
    enforce_hard_limits: bool = True
    constraint_id: int | None = None

    @classmethod
    def inline(cls, *, enforce_hard_limits: bool = True, **public: int | Decimal | None) -> "Caps":
        """Caps by their public fields (`max_tokens_per_operation=…`, costs in USD)."""
        unknown = set(public) - _PUBLIC_FIELDS
        if unknown:
            raise TypeError(f"Caps.inline() got unknown caps: {', '.join(sorted(unknown))}")
        return cls(limits=ledger_values(public), enforce_hard_limits=enforce_hard_limits)

    @classmethod
    def named(cls, *, name: str) -> "Caps":
        """The caps of the constraint `name`, memoized like the rest of the configuration
        (caching.config_cache; an admin edit bumps it). Unknown names are refused."""
        caps = memoized(("budget", name), lambda: cls._load_named(name))
        if caps is None:
            raise InvalidRequest(
                f"No budget constraint named '{name}'.", details={"field": "budget"}
            )
        return caps

    @classmethod
    def _load_named(cls, name: str) -> "Caps | None":
        constraint = BudgetConstraint.objects.filter(name=name).first()
        if constraint is None:
            return None
        public = {cap.field: getattr(constraint, cap.field) for cap in CAPS}
        caps = cls.inline(**public, enforce_hard_limits=constraint.enforce_hard_limits)
        return replace(caps, constraint_id=constraint.pk)


def caps_columns(caps: Caps) -> dict[str, object]:
    """The session's columns a request's caps set."""
    return {
        **caps.limits,
        "enforce_hard_limits": caps.enforce_hard_limits,
        "constraint_id": caps.constraint_id,
    }


def session_ensure(*, project_id: int, session_id: str, caps: Caps | None) -> LlmSession:
    """The session's ledger, created on first use. A session keeps the caps it was first
    given; a request that brings caps (inline or named) replaces them."""
    session, created = LlmSession.objects.get_or_create(
        project_id=project_id,
        session_id=session_id,
        defaults=caps_columns(caps) if caps else {},
    )
    if caps is not None and not created:
        wanted = caps_columns(caps)
        changed = {k: v for k, v in wanted.items() if getattr(session, k) != v}
        if changed:
            LlmSession.objects.filter(pk=session.pk).update(**changed)
            for k, v in changed.items():
                setattr(session, k, v)
    return session


def budget_reserve(
    *,
    session: LlmSession,
    operation_id: uuid.UUID,
    tokens: int,
    cost_micros: int | None,
    model_name: str,
    expires_in: float | None = None,
    spend: SpendAsk | None = None,
) -> Reservation:
    """Hold the worst case of one operation on the session's ledger (and on the spend
    budgets of `spend`, in the same transaction: all or nothing).

    Hard limits: one conditional UPDATE admits the reservation only if accrued +
    reserved + this stays within every session cap (`caps.admits_q`), evaluated by the
    database on the locked row, so concurrent workers can never both spend the last
    dollar. Soft limits: the reservation always succeeds and the overruns come back as
    warnings. `cost_micros` None means the model has no known price (counted as 0 when
    allowed). The SQL store (aura_orchestrator/store/pg.py) takes the same steps.
    """
    steps = reserve_steps(
        session=session,
        operation_id=operation_id,
        tokens=tokens,
        cost_micros=cost_micros,
        model_name=model_name,
        expires_in=expires_in,
    )
    return run_steps(steps, partial(budget_reserve_step, spend=spend))


def budget_reserve_step(
    step: Step, hold: Hold, session: LlmSession, *, spend: SpendAsk | None = None
) -> LlmSession | None:
    if step is Step.READ:
        return ledger_get(session.pk)
    with transaction.atomic():
        admitted = LlmSession.objects.filter(pk=session.pk)
        if session.enforce_hard_limits:
            amounts = {"tokens": hold.tokens, "cost": hold.cost_micros}
            admitted = admitted.filter(admits_q(Counts.LEDGER, amounts=amounts))
        updated = admitted.update(
            tokens_reserved=F("tokens_reserved") + hold.tokens,
            cost_reserved_micros=F("cost_reserved_micros") + hold.cost_micros,
            last_activity_at=hold.created_at,
        )
        if not updated:
            return None
        BudgetReservation.objects.create(
            id=hold.id,
            session_id=session.pk,
            operation_id=hold.operation_id,
            tokens=hold.tokens,
            cost_micros=hold.cost_micros,
            created_at=hold.created_at,
            expires_at=hold.expires_at,
        )
        if spend is not None:  # refused: BudgetExceeded, and the session's write rolls back
            spend.written = spend_write_slow(
                **spend.write_args(
                    operation_id=hold.operation_id, tokens=hold.tokens, expires_at=hold.expires_at
                )
            )
        return ledger_get(session.pk)


def budget_reserve_existing(
    *,
    project_id: int,
    session_id: str,
    operation_id: uuid.UUID,
    tokens: int,
    cost_micros: int,
    model_name: str,
    expires_in: float | None = None,
    spend: SpendAsk | None = None,
) -> Reservation | None:
    """`budget_reserve` on the session named, when it exists; None for a new session
    (the caller creates it with `session_ensure`). For requests that bring no caps."""
    session = LlmSession.objects.filter(project_id=project_id, session_id=session_id).first()
    if session is None:
        return None
    return budget_reserve(
        session=session,
        operation_id=operation_id,
        tokens=tokens,
        cost_micros=cost_micros,
        model_name=model_name,
        expires_in=expires_in,
        spend=spend,
    )


# --- settle and release ----------------------------------------------------------------------


def _hand_back(
    reservation: Reservation,
    charge: tuple[int, int] | None,
    operations: int,
    served: tuple[str, str] | None = None,
) -> bool:
    """Delete the reservation and update the ledger in one transaction; the reserved
    amounts are handed back only by whoever deletes the row (settle, release or the
    expiry job), so they are handed back exactly once. `charge` (tokens, micro-dollars)
    is made whether or not the row was still there. False if the row was gone already
    (released by the expiry job: a settle then charges all the same). Its spend hold is
    settled or released in the same transaction (`served`: the provider and model that
    answered, which narrowed budgets count)."""
    updates = {}
    if charge is not None:
        tokens, cost = charge
        updates = {
            "tokens_used": F("tokens_used") + tokens,
            "cost_accrued_micros": F("cost_accrued_micros") + cost,
            "operation_count": F("operation_count") + operations,
            "last_activity_at": timezone.now(),
        }
    with transaction.atomic():
        deleted, _ = BudgetReservation.objects.filter(pk=reservation.id).delete()
        if deleted:
            updates["tokens_reserved"] = F("tokens_reserved") - reservation.tokens
            updates["cost_reserved_micros"] = F("cost_reserved_micros") - reservation.cost_micros
        if updates:
            LlmSession.objects.filter(pk=reservation.session_pk).update(**updates)
        if reservation.spend is not None:
            spend_hand_back(reservation.spend, charge=charge, served=served, operations=operations)
    return bool(deleted)


def budget_settle(
    *,
    reservation: Reservation,
    tokens: int,
    cost_micros: int,
    count_operation: bool = True,
    served: tuple[str, str] | None = None,
) -> bool:
    """Charge the actual usage of a finished call and drop its reservation. The charge is
    made in full even when the reservation had already expired (the money was spent);
    returns False then, so that the caller flags the overrun."""
    return _hand_back(
        reservation,
        charge=(tokens, cost_micros),
        operations=1 if count_operation else 0,
        served=served,
    )


def budget_release(*, reservation: Reservation) -> None:
    """Drop the reservation of an operation that consumed nothing."""
    _hand_back(reservation, charge=None, operations=0)


def _hand_back_rows(reservations: QuerySet[BudgetReservation]) -> int:
    """Hand back each reservation of a queryset; how many rows it read (one another
    process released meanwhile is handed back once all the same: by whoever deleted it)."""
    rows = list(reservations.values_list("pk", "session_id", "tokens", "cost_micros"))
    for pk, session_pk, tokens, cost in rows:
        budget_release(
            reservation=Reservation(id=pk, session_pk=session_pk, tokens=tokens, cost_micros=cost)
        )
    return len(rows)


def budget_release_operation(*, operation_id: uuid.UUID) -> int:
    """Hand back every reservation of one operation (one whose reserve may have committed
    although the operation never learned of it: the database went away mid-reply)."""
    return _hand_back_rows(
        BudgetReservation.objects.filter(operation_id=operation_id)
    ) + spend_release_operation(operation_id=operation_id)


def budget_release_expired(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Hand back reservations whose worker died (past their expiry). Returns how many."""
    now = now or timezone.now()
    sessions = _hand_back_rows(BudgetReservation.objects.filter(expires_at__lte=now)[:batch_size])
    return sessions + spend_release_expired(now=now, batch_size=batch_size)


def session_clear(*, project_id: int, session_id: str) -> bool:
    """Delete the session's ledger and reservations (telemetry stays). False if unknown."""
    deleted, _ = LlmSession.objects.filter(project_id=project_id, session_id=session_id).delete()
    return bool(deleted)
