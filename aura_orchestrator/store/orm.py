"""The store on the ORM: each step one unit of the apps' services in `db()`'s threads."""

import uuid
from typing import cast

from django.db import transaction

from aura_orchestrator.caching.services import CachedAnswer, cache_lookup, cache_store
from aura_orchestrator.db import db
from aura_orchestrator.store.base import Finish, Finished
from budgets.models import LlmSession
from budgets.reserving import Reservation
from budgets.selectors import ledger_get
from budgets.services import (
    Caps,
    budget_release,
    budget_release_operation,
    budget_reserve,
    budget_reserve_existing,
    budget_settle,
    session_ensure,
)
from budgets.spending import SpendAsk
from telemetry.services import telemetry_record


def _prepare(
    *, project_id: int, session_id: str, caps: Caps | None, cache_key: str | None
) -> tuple[LlmSession, CachedAnswer | None]:
    session = session_ensure(project_id=project_id, session_id=session_id, caps=caps)
    cached = None
    if cache_key is not None:
        cached = cache_lookup(project_id=project_id, key_hash=cache_key)
    return session, cached


def _hand_back(finish: Finish) -> bool:
    """Settle or release; True when a settle came after its reservation had expired."""
    if finish.settles:  # reservation and charge set
        reservation = cast(Reservation, finish.reservation)
        tokens, cost = cast(tuple[int, int], finish.charge)
        return not budget_settle(
            reservation=reservation, tokens=tokens, cost_micros=cost, served=finish.served
        )
    if finish.releases:  # reservation set
        budget_release(reservation=cast(Reservation, finish.reservation))
    return False


def finish_writes(finish: Finish) -> bool:
    """The writes of `finish` (store/base.py), in the caller's transaction; True for an
    overrun. Also what the journal replays (store/journal.py)."""
    overrun = _hand_back(finish)
    if finish.release_unknown:
        budget_release_operation(operation_id=finish.telemetry["operation_id"])
    if finish.cache is not None:
        cache_store(**finish.cache.kwargs())
    telemetry_record(**finish.telemetry, budget_overrun=overrun)
    return overrun


def _finish(finish: Finish) -> Finished:
    with transaction.atomic():
        overrun = finish_writes(finish)
    ledger = None if finish.session_pk is None else ledger_get(finish.session_pk)
    return Finished(ledger=ledger, budget_overrun=overrun)


class OrmStore:
    async def prepare(
        self, *, project_id: int, session_id: str, caps: Caps | None, cache_key: str | None
    ) -> tuple[LlmSession, CachedAnswer | None]:
        return await db(
            _prepare, project_id=project_id, session_id=session_id, caps=caps, cache_key=cache_key
        )

    async def cache_lookup(self, *, project_id: int, key_hash: str) -> CachedAnswer | None:
        return await db(cache_lookup, project_id=project_id, key_hash=key_hash)

    async def reserve(
        self,
        *,
        session: LlmSession,
        operation_id: uuid.UUID,
        tokens: int,
        cost_micros: int | None,
        model_name: str,
        expires_in: float,
        spend: SpendAsk | None = None,
    ) -> Reservation:
        return await db(
            budget_reserve,
            session=session,
            operation_id=operation_id,
            tokens=tokens,
            cost_micros=cost_micros,
            model_name=model_name,
            expires_in=expires_in,
            spend=spend,
        )

    async def reserve_existing(
        self,
        *,
        project_id: int,
        session_id: str,
        operation_id: uuid.UUID,
        tokens: int,
        cost_micros: int,
        model_name: str,
        expires_in: float,
        spend: SpendAsk | None = None,
    ) -> Reservation | None:
        return await db(
            budget_reserve_existing,
            project_id=project_id,
            session_id=session_id,
            operation_id=operation_id,
            tokens=tokens,
            cost_micros=cost_micros,
            model_name=model_name,
            expires_in=expires_in,
            spend=spend,
        )

    async def settle(
        self,
        *,
        reservation: Reservation,
        tokens: int,
        cost_micros: int,
        count_operation: bool,
        served: tuple[str, str] | None,
    ) -> None:
        await db(
            budget_settle,
            reservation=reservation,
            tokens=tokens,
            cost_micros=cost_micros,
            count_operation=count_operation,
            served=served,
        )

    async def release(self, *, reservation: Reservation) -> None:
        await db(budget_release, reservation=reservation)

    async def finish(self, finish: Finish) -> Finished:
        return await db(_finish, finish)
