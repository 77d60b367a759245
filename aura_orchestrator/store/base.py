"""What the pipeline asks of the database, and what it hands over to be written."""

import uuid
from dataclasses import dataclass, fields
from typing import Any, Protocol

from aura_orchestrator.caching.services import CachedAnswer
from budgets.models import LlmSession
from budgets.reserving import Reservation
from budgets.services import Caps
from budgets.spending import SpendAsk


@dataclass(frozen=True, slots=True)
class CacheWrite:
    project_id: int
    key_hash: str
    operation_type: str
    answer: CachedAnswer
    ttl_seconds: int

    def kwargs(self) -> dict[str, Any]:
        """As keyword arguments of `cache_store` / `store_params` (a shallow copy)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Finish:
    """The last writes of one operation, committed together: one transaction, all or
    nothing. What they are is defined here, once; `PgStore.finish` writes them in SQL,
    `orm.finish_writes` (the OrmStore, the journal's replay) on the ORM:

    1. the reservation: settled (`charge`: tokens, micro-dollars; one operation counted;
       an overrun when the reservation had expired meanwhile), or released (no charge);
    2. journaled finishes only (`release_unknown`): every reservation of the operation;
    3. the cache entry (`cache`), if any;
    4. the telemetry row, its `budget_overrun` from (1);
    then the ledger of `session_pk` is read back in the same transaction for the response.
    """

    reservation: Reservation | None
    charge: tuple[int, int] | None
    session_pk: int | None
    cache: CacheWrite | None
    telemetry: dict[str, Any]
    # The operation failed while the database was away: a reservation it asked for may
    # have committed without its knowing (the reply lost). Any reservation of this
    # operation is handed back with it. Only journaled finishes carry it.
    release_unknown: bool = False

    @property
    def served(self) -> tuple[str, str] | None:
        """The provider and model that answered (what narrowed spend budgets count)."""
        provider = self.telemetry.get("provider_name")
        return (provider, self.telemetry.get("model_name", "")) if provider else None

    @property
    def settles(self) -> bool:
        return self.reservation is not None and self.charge is not None

    @property
    def releases(self) -> bool:
        return self.reservation is not None and self.charge is None


@dataclass(frozen=True, slots=True)
class Finished:
    """What a finish committed: the ledger afterwards (None without a session), and
    whether the charge came after its reservation had expired (an overrun, flagged)."""

    ledger: LlmSession | None
    budget_overrun: bool = False


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
        expires_in: float,
        spend: SpendAsk | None = None,
    ) -> Reservation:
        """As `budgets.services.budget_reserve`: BudgetExceeded when refused (only when a
        cap says so: a race with another request is tried again). The reservation lives
        `expires_in` seconds (the operation's deadline plus the margin). `spend`: the
        spend budgets held with it, all or nothing (what was held: `spend.written`)."""

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
        """`reserve` on the session named, without reading it first (a request that brings
        no caps): None when it does not exist yet; BudgetExceeded when refused."""

    async def settle(
        self,
        *,
        reservation: Reservation,
        tokens: int,
        cost_micros: int,
        count_operation: bool,
        served: tuple[str, str] | None,
    ) -> None: ...

    async def release(self, *, reservation: Reservation) -> None: ...

    async def finish(self, finish: Finish) -> Finished:
        """Commit the writes of `finish` together (settle or release, cache entry,
        telemetry row), all or nothing. A failure raises and leaves nothing written: the
        pipeline then journals the whole finish (store/journal.py), so a charge never
        lands without its row."""
