"""What the pipeline asks of the database, and what it hands over to be written."""

import uuid
from dataclasses import dataclass, fields
from typing import Protocol

from aura_orchestrator.caching.services import CachedAnswer
from budgets.models import LlmSession
from budgets.services import Caps, Reservation


@dataclass(frozen=True, slots=True)
class CacheWrite:
    project_id: int
    key_hash: str
    operation_type: str
    answer: CachedAnswer
    ttl_seconds: int

    def kwargs(self) -> dict:
        """As keyword arguments of `cache_store` / `store_params` (a shallow copy)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Finish:
    """The last writes of one operation, committed together.

    `charge` (tokens, micro-dollars) settles the reservation; None releases it. The
    ledger of `session_pk` is read back in the same transaction for the response."""

    reservation: Reservation | None
    charge: tuple[int, int] | None
    session_pk: int | None
    cache: CacheWrite | None
    telemetry: dict


class Store(Protocol):
    async def prepare(
        self, *, project_id: int, session_id: str, caps: Caps | None, cache_key: str | None
    ) -> tuple[LlmSession, CachedAnswer | None]:
        """The session's ledger (created on first use; caps a request brings replace the
        session's) and the live cache entry for `cache_key`, counting its hit."""

    async def cache_lookup(self, *, project_id: int, key_hash: str) -> CachedAnswer | None: ...

    async def reserve(
        self,
        *,
        session: LlmSession,
        operation_id: uuid.UUID,
        tokens: int,
        cost_micros: int | None,
        model_name: str,
    ) -> Reservation:
        """As `budgets.services.budget_reserve`: BudgetExceeded when refused."""

    async def reserve_existing(
        self,
        *,
        project_id: int,
        session_id: str,
        operation_id: uuid.UUID,
        tokens: int,
        cost_micros: int,
        model_name: str,
    ) -> Reservation | None:
        """`reserve` on the session named, without reading it first (a request that brings
        no caps): None when it does not exist yet; BudgetExceeded when refused."""

    async def settle(
        self, *, reservation: Reservation, tokens: int, cost_micros: int, count_operation: bool
    ) -> None: ...

    async def release(self, *, reservation: Reservation) -> None: ...

    async def finish(self, finish: Finish) -> LlmSession | None:
        """Commit the writes of `finish` together; the ledger afterwards (None without a
        session). Should the transaction fail, the settlement is retried alone before the
        error goes on: what a provider consumed is always charged."""
