"""Writes on the budget ledger: reserve, settle, release, clear.

Every function here is synchronous and holds its transaction only for its own few
statements; the pipeline calls them through `sync_to_async` before and after the
provider call, never around it.

On PostgreSQL, reserve and settle/release are each ONE statement (a data-modifying CTE):
the conditional ledger update and the reservation insert (or the reservation delete and
the ledger update) commit together, as the ORM's transaction did, in one round trip
instead of four (BEGIN, two statements, COMMIT) and without the ORM's per-query CPU.
Other databases (SQLite) take the ORM path; both have the same semantics.
"""

import uuid
from copy import copy
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from aura_orchestrator.caching.config_cache import memoized
from aura_orchestrator.errors import BudgetExceeded, InvalidRequest
from aura_orchestrator.money import usd_to_micros
from budgets.models import BudgetConstraint, BudgetReservation, LlmSession
from budgets.selectors import ledger_get, operation_overruns, session_overruns


@dataclass(frozen=True, slots=True)
class Caps:
    """The caps a request brings (inline or a named constraint); None = no cap."""

    max_tokens_per_operation: int | None = None
    max_cost_per_operation_micros: int | None = None
    max_tokens_per_session: int | None = None
    max_cost_per_session_micros: int | None = None
    enforce_hard_limits: bool = True
    constraint_id: int | None = None

    @classmethod
    def inline(
        cls,
        *,
        max_tokens_per_operation: int | None = None,
        max_cost_per_operation: Decimal | None = None,
        max_tokens_per_session: int | None = None,
        max_cost_per_session: Decimal | None = None,
        enforce_hard_limits: bool = True,
    ) -> "Caps":
        def micros(v: Decimal | None) -> int | None:
            return None if v is None else usd_to_micros(v)

        return cls(
            max_tokens_per_operation=max_tokens_per_operation,
            max_cost_per_operation_micros=micros(max_cost_per_operation),
            max_tokens_per_session=max_tokens_per_session,
            max_cost_per_session_micros=micros(max_cost_per_session),
            enforce_hard_limits=enforce_hard_limits,
        )

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
        caps = cls.inline(
            max_tokens_per_operation=constraint.max_tokens_per_operation,
            max_cost_per_operation=constraint.max_cost_per_operation,
            max_tokens_per_session=constraint.max_tokens_per_session,
            max_cost_per_session=constraint.max_cost_per_session,
            enforce_hard_limits=constraint.enforce_hard_limits,
        )
        return replace(caps, constraint_id=constraint.pk)


def caps_columns(caps: Caps) -> dict:
    """The session's columns a request's caps set (Caps' fields are named after them)."""
    return asdict(caps)


@dataclass(slots=True)
class Reservation:
    id: object
    session_pk: int
    tokens: int
    cost_micros: int
    warnings: list[str] = field(default_factory=list)
    ledger: LlmSession | None = None  # the session as the reservation left it


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


def _refuse(problems: list[str]) -> BudgetExceeded:
    return BudgetExceeded(
        "Budget exceeded: " + "; ".join(problems) + ".", details={"caps": problems}
    )


def budget_reserve(
    *,
    session: LlmSession,
    operation_id,
    tokens: int,
    cost_micros: int | None,
    model_name: str,
    expires_in: float | None = None,
) -> Reservation:
    """Hold the worst case of one operation on the session's ledger.

    Hard limits: one conditional UPDATE admits the reservation only if accrued +
    reserved + this stays within every session cap, evaluated by the database on the
    locked row, so concurrent workers can never both spend the last dollar. Soft
    limits: the reservation always succeeds and the overruns come back as warnings.
    `cost_micros` None means the model has no known price (counted as 0 when allowed).
    The async store (aura_orchestrator/store) runs the same steps on PostgreSQL.
    """
    cost = cost_micros or 0
    for attempt in range(1, RESERVE_TRIES + 1):
        warnings = reserve_admission(
            session, tokens=tokens, cost_micros=cost_micros, model_name=model_name
        )
        params = reserve_params(
            session, operation_id=operation_id, tokens=tokens, cost=cost, expires_in=expires_in
        )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(reserve_sql(enforce_hard_limits=session.enforce_hard_limits), params)
                row = cursor.fetchone()
            ledger = ledger_from_row(row) if row is not None else None
        else:
            ledger = _reserve_orm(session, params)
        if ledger is not None:
            return reservation_of(ledger, params=params, warnings=warnings)
        current = ledger_get(session.pk)
        refused = not_admitted(current, tokens=tokens, cost=cost, last_try=attempt == RESERVE_TRIES)
        if refused is not None:
            raise refused
        session = current
    raise AssertionError("unreachable: the last try raises")


def budget_reserve_existing(
    *,
    project_id: int,
    session_id: str,
    operation_id,
    tokens: int,
    cost_micros: int,
    model_name: str,
    expires_in: float | None = None,
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
    )


def reserve_admission(
    session: LlmSession, *, tokens: int, cost_micros: int | None, model_name: str
) -> list[str]:
    """The per-operation caps, checked before the ledger is touched: a hard limit refuses
    (BudgetExceeded), a soft one comes back as warnings."""
    warnings = operation_overruns(
        session, tokens=tokens, cost_micros=cost_micros, model_name=model_name
    )
    if warnings and session.enforce_hard_limits:
        raise _refuse(warnings)
    return warnings


def reserve_params(
    session: LlmSession | None,
    *,
    operation_id,
    tokens: int,
    cost: int,
    expires_in: float | None = None,
    **where,
) -> dict:
    """Parameters of a reservation: of `session`, or of the session `where` names
    (project, session_id: RESERVE_BY_NAME_SQL). It lives `expires_in` seconds: the
    operation's deadline plus a margin (aura_orchestrator/deadline.py); by default the
    longest a reservation may live."""
    now = timezone.now()
    if expires_in is None:
        expires_in = settings.AURA["BUDGET_RESERVATION_TTL_SECONDS"]
    ttl = timedelta(seconds=expires_in)
    return {
        **where,
        "id": uuid.uuid4(),
        "session": session.pk if session is not None else None,
        "operation": operation_id,
        "tokens": tokens,
        "cost": cost,
        "now": now,
        "expires": now + ttl,
    }


def reservation_of(ledger: LlmSession, *, params: dict, warnings: list[str]) -> Reservation:
    """The reservation just admitted; `ledger` is the session as the reservation left it.
    Soft limits add the session caps it passes to the warnings."""
    tokens, cost = params["tokens"], params["cost"]
    warnings = list(warnings)
    if not ledger.enforce_hard_limits and ledger.has_caps:
        before = copy(ledger)  # count this reservation once
        before.tokens_reserved -= tokens
        before.cost_reserved_micros -= cost
        warnings += session_overruns(before, tokens=tokens, cost_micros=cost)
    return Reservation(
        id=params["id"],
        session_pk=ledger.pk,
        tokens=tokens,
        cost_micros=cost,
        warnings=[f"{w} (soft limit)" for w in warnings],
        ledger=ledger,
    )


# A conditional UPDATE that admitted nothing although the ledger read just after admits
# the request lost a race (a session created, caps replaced, a reservation handed back
# in between): it is tried again, this many times in all, before it is called a refusal.
RESERVE_TRIES = 4


def not_admitted(
    current: LlmSession | None, *, tokens: int, cost: int, last_try: bool = True
) -> BudgetExceeded | None:
    """Why the conditional UPDATE admitted nothing, from the ledger read just after; None
    when that ledger admits the request (a race: the caller tries again), unless it was
    the last try. A refusal happens only when a cap says so."""
    if current is None:  # cleared between ensure and reserve
        return BudgetExceeded("Budget exceeded: the session was cleared; retry.")
    overruns = session_overruns(current, tokens=tokens, cost_micros=cost)
    if overruns:
        return _refuse(overruns)
    if not last_try:
        return None
    return _refuse(["the session's caps changed during the request"])


_SESSION = LlmSession._meta.db_table
_RESERVATION = BudgetReservation._meta.db_table
_CONSTRAINT = BudgetConstraint._meta.db_table
# The ledger as the reservation or settlement leaves it (RETURNING of the UPDATE), so
# that answering with the session's budget needs no SELECT of its own.
# In the model's field order, so that a row builds an instance positionally (fast path).
LEDGER_COLUMNS = tuple(f.column for f in LlmSession._meta.concrete_fields)
LEDGER_RETURNING = (
    ", ".join(f"{_SESSION}.{c}" for c in LEDGER_COLUMNS)
    + f", (SELECT name FROM {_CONSTRAINT} WHERE {_CONSTRAINT}.id = {_SESSION}.constraint_id)"
)
LEDGER_SELECT_SQL = f"SELECT {LEDGER_RETURNING} FROM {_SESSION} WHERE id = %(session)s"
LEDGER_BY_NAME_SQL = (
    f"SELECT {LEDGER_RETURNING} FROM {_SESSION}"
    " WHERE project_id = %(project)s AND session_id = %(session_id)s"
)


def ledger_from_row(row) -> LlmSession:
    """An unsaved LlmSession from a LEDGER_RETURNING row (its constraint's name loaded, so
    `budget_status` needs no query)."""
    session = LlmSession(*row[:-1])
    session._state.adding = False
    if session.constraint_id is not None:
        session.constraint = BudgetConstraint(id=session.constraint_id, name=row[-1] or "")
    return session


# Hard limits: the database admits the reservation only if accrued + reserved + this stays
# within every session cap, evaluated on the locked row (the UPDATE's WHERE).
HARD_CAPS_SQL = (
    " AND (max_tokens_per_session IS NULL"
    " OR tokens_used + tokens_reserved + %(tokens)s <= max_tokens_per_session)"
    " AND (max_cost_per_session_micros IS NULL"
    " OR cost_accrued_micros + cost_reserved_micros + %(cost)s <= max_cost_per_session_micros)"
)
# One statement: the conditional ledger update (WHERE: which row, and the caps that must
# hold on it) feeding the reservation insert; the ledger as it leaves comes back.
_RESERVE_TEMPLATE = f"""
WITH admitted AS (
    UPDATE {_SESSION}
       SET tokens_reserved = tokens_reserved + %(tokens)s,
           cost_reserved_micros = cost_reserved_micros + %(cost)s,
           last_activity_at = %(now)s
     WHERE {{where}}
 RETURNING {LEDGER_RETURNING}
), held AS (
    INSERT INTO {_RESERVATION} (id, session_id, operation_id, tokens, cost_micros, created_at,
                                expires_at)
    SELECT %(id)s, id, %(operation)s, %(tokens)s, %(cost)s, %(now)s, %(expires)s FROM admitted
)
SELECT * FROM admitted
"""
_RESERVE_SQL = {
    hard: _RESERVE_TEMPLATE.format(where="id = %(session)s" + (HARD_CAPS_SQL if hard else ""))
    for hard in (True, False)
}
# The same reservation by (project, session_id), for a request that brings no caps: the
# session's caps are read on the locked row, per-operation ones included, so the pipeline
# needs no read of the ledger before it (one round trip less). No row: a new session, or
# refused; the caller reads the ledger to tell which, and why.
RESERVE_BY_NAME_SQL = _RESERVE_TEMPLATE.format(
    where="project_id = %(project)s AND session_id = %(session_id)s"
    " AND (NOT enforce_hard_limits OR ("
    "(max_tokens_per_operation IS NULL OR %(tokens)s <= max_tokens_per_operation)"
    " AND (max_cost_per_operation_micros IS NULL OR %(cost)s <= max_cost_per_operation_micros)"
    f"{HARD_CAPS_SQL}))"
)


def reserve_sql(*, enforce_hard_limits: bool) -> str:
    """The one-statement reservation (PostgreSQL); returns the ledger row, none if refused."""
    return _RESERVE_SQL[enforce_hard_limits]


def _reserve_orm(session: LlmSession, params: dict) -> LlmSession | None:
    """The reservation on the ORM; the ledger as it leaves it, None if not admitted."""
    tokens, cost = params["tokens"], params["cost"]
    with transaction.atomic():
        admitted = LlmSession.objects.filter(pk=session.pk)
        if session.enforce_hard_limits:
            admitted = admitted.alias(
                projected_tokens=F("tokens_used") + F("tokens_reserved") + tokens,
                projected_cost=F("cost_accrued_micros") + F("cost_reserved_micros") + cost,
            ).filter(
                Q(max_tokens_per_session__isnull=True)
                | Q(projected_tokens__lte=F("max_tokens_per_session")),
                Q(max_cost_per_session_micros__isnull=True)
                | Q(projected_cost__lte=F("max_cost_per_session_micros")),
            )
        updated = admitted.update(
            tokens_reserved=F("tokens_reserved") + tokens,
            cost_reserved_micros=F("cost_reserved_micros") + cost,
            last_activity_at=params["now"],
        )
        if not updated:
            return None
        BudgetReservation.objects.create(
            id=params["id"],
            session_id=session.pk,
            operation_id=params["operation"],
            tokens=tokens,
            cost_micros=cost,
            created_at=params["now"],
            expires_at=params["expires"],
        )
        return ledger_get(session.pk)


# The reserved amounts come from the deleted row, so only the deleter hands them back.
# Data-modifying CTEs (run once, whether read or not) and a last statement of the
# caller's: by default whether this statement released the reservation; the async store
# writes the operation's telemetry row there instead (its budget_overrun read from
# `released`: nothing released means the expiry job had handed it back already).
HAND_BACK_SQL = f"""
WITH released AS (
    DELETE FROM {_RESERVATION} WHERE id = %(id)s RETURNING tokens, cost_micros
), handed_back AS (
    UPDATE {_SESSION}
       SET tokens_reserved = tokens_reserved - COALESCE((SELECT tokens FROM released), 0),
           cost_reserved_micros = cost_reserved_micros
                                  - COALESCE((SELECT cost_micros FROM released), 0){{charge}}
     WHERE id = %(session)s{{only_if_released}}
)
{{then}}
"""
RELEASED_SQL = "SELECT EXISTS (SELECT 1 FROM released)"
NOT_RELEASED_SQL = "NOT EXISTS (SELECT 1 FROM released)"
CHARGE_SQL = (
    ",\n       tokens_used = tokens_used + %(tokens)s,"
    "\n       cost_accrued_micros = cost_accrued_micros + %(cost)s,"
    "\n       operation_count = operation_count + %(operations)s,"
    "\n       last_activity_at = %(now)s"
)


def hand_back_statement(
    reservation: Reservation,
    *,
    tokens: int | None,
    cost: int,
    operations: int,
    now,
    then: str = RELEASED_SQL,
) -> tuple[str, dict]:
    """The one-statement settle (`tokens` given) or release (PostgreSQL), ending with
    `then` (which may read `released`)."""
    charge = tokens is not None
    sql = HAND_BACK_SQL.format(
        charge=CHARGE_SQL if charge else "",
        only_if_released="" if charge else " AND EXISTS (SELECT 1 FROM released)",
        then=then,
    )
    params = {"id": reservation.id, "session": reservation.session_pk}
    if charge:
        params |= {"tokens": tokens, "cost": cost, "operations": operations, "now": now}
    return sql, params


def _hand_back_one_statement(reservation: Reservation, **charge) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(*hand_back_statement(reservation, **charge))
        row = cursor.fetchone()
    return bool(row and row[0])


def _hand_back(reservation: Reservation, **ledger_updates) -> bool:
    """Delete the reservation and update the ledger in one transaction; the reserved
    amounts are handed back only by whoever deletes the row (settle, release or the
    expiry job), so they are handed back exactly once. False if the row was gone
    already (released by the expiry job: a settle then charges all the same)."""
    with transaction.atomic():
        deleted, _ = BudgetReservation.objects.filter(pk=reservation.id).delete()
        if deleted:
            ledger_updates["tokens_reserved"] = F("tokens_reserved") - reservation.tokens
            ledger_updates["cost_reserved_micros"] = (
                F("cost_reserved_micros") - reservation.cost_micros
            )
        if ledger_updates:
            LlmSession.objects.filter(pk=reservation.session_pk).update(**ledger_updates)
    return bool(deleted)


def budget_settle(
    *, reservation: Reservation, tokens: int, cost_micros: int, count_operation: bool = True
) -> bool:
    """Charge the actual usage of a finished call and drop its reservation. The charge is
    made in full even when the reservation had already expired (the money was spent);
    returns False then, so that the caller flags the overrun."""
    if connection.vendor == "postgresql":
        return _hand_back_one_statement(
            reservation,
            tokens=tokens,
            cost=cost_micros,
            operations=1 if count_operation else 0,
            now=timezone.now(),
        )
        return
    updates = {
        "tokens_used": F("tokens_used") + tokens,
        "cost_accrued_micros": F("cost_accrued_micros") + cost_micros,
        "last_activity_at": timezone.now(),
    }
    if count_operation:
        updates["operation_count"] = F("operation_count") + 1
    return _hand_back(reservation, **updates)


def budget_release(*, reservation: Reservation) -> None:
    """Drop the reservation of an operation that consumed nothing."""
    if connection.vendor == "postgresql":
        _hand_back_one_statement(reservation, tokens=None, cost=0, operations=0, now=None)
        return
    _hand_back(reservation)


def _hand_back_rows(reservations) -> int:
    """Hand back each reservation of a queryset; how many rows it read (one another
    process released meanwhile is handed back once all the same: by whoever deleted it)."""
    rows = list(reservations.values_list("pk", "session_id", "tokens", "cost_micros"))
    for pk, session_pk, tokens, cost in rows:
        _hand_back(Reservation(id=pk, session_pk=session_pk, tokens=tokens, cost_micros=cost))
    return len(rows)


def budget_release_operation(*, operation_id) -> int:
    """Hand back every reservation of one operation (one whose reserve may have committed
    although the operation never learned of it: the database went away mid-reply)."""
    return _hand_back_rows(BudgetReservation.objects.filter(operation_id=operation_id))


def budget_release_expired(*, now=None, batch_size: int = 500) -> int:
    """Hand back reservations whose worker died (past their expiry). Returns how many."""
    now = now or timezone.now()
    return _hand_back_rows(BudgetReservation.objects.filter(expires_at__lte=now)[:batch_size])


def session_clear(*, project_id: int, session_id: str) -> bool:
    """Delete the session's ledger and reservations (telemetry stays). False if unknown."""
    deleted, _ = LlmSession.objects.filter(project_id=project_id, session_id=session_id).delete()
    return bool(deleted)
