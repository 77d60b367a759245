"""The store on PostgreSQL: async psycopg on the event loop, one round trip per step.

Each step sends its statements as one multi-statement query (PostgreSQL's simple
protocol, client-side binding), which the server runs as one transaction: a step costs
one network round trip whatever its statement count. The statements (`pg_sql.py`) do
the writes of the apps' ORM services (budgets, caching, telemetry) in SQL; what a
reservation must meet comes from `budgets/caps.py` and the refusal protocol from
`budgets.reserving.reserve_steps`, the same for both stores.

Durability, step by step:
- prepare (ledger read, cache hit counter) and reserve commit without waiting for the
  WAL flush (`synchronous_commit off` for that transaction only). Visibility and row
  locks do not depend on the flush, so hard caps hold exactly as before. A crash of the
  database may lose the newest reservations: each would have been handed back uncharged
  anyway (by the expiry job), and the finish commit of the same operation, which comes
  later in the WAL, flushes it.
- finish (settlement, cache entry, telemetry) waits for the flush: when the response
  leaves, the charge and the telemetry row are on disk.

Connections: a psycopg pool per worker process under `manage.py serve`
(AURA["ASYNC_POOL"]); elsewhere (tests in-process, commands, background jobs, whose
event loops come and go) a connection per step.
"""

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import cast

import psycopg
from django.conf import settings
from django.db import connection as django_connection
from django.utils import timezone
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from aura_orchestrator.caching.services import CachedAnswer
from aura_orchestrator.db import db
from aura_orchestrator.dbhealth import hung_up, purge_pools
from aura_orchestrator.store.base import Finish, Finished
from aura_orchestrator.store.pg_sql import (
    LEDGER_BY_NAME_SQL,
    LEDGER_SELECT_SQL,
    LOOKUP_AND_COUNT_SQL,
    NO_FLUSH_SQL,
    RESERVE_BY_NAME_SQL,
    ROW_SQL,
    SESSION_INSERT_SQL,
    SESSION_RECAP_SQL,
    SETTLED_ROW_SQL,
    SPEND_PREPARE_SQL,
    STORE_SQL,
    Params,
    Row,
    Statement,
    answer_from_row,
    hand_back_statement,
    ledger_from_row,
    reserve_params,
    reserve_sql,
    spend_hand_back_statement,
    spend_statements,
    store_params,
)
from budgets.models import LlmSession
from budgets.reserving import (
    Hold,
    Reservation,
    Step,
    reserve_steps,
    run_steps_async,
    session_cleared,
)
from budgets.selectors import operation_overruns, session_get
from budgets.services import Caps, budget_reserve_step, caps_columns
from budgets.spending import SpendAsk, SpendTotals, Written

logger = logging.getLogger(__name__)


def _conninfo() -> str:
    """The default database's connection (the test database under pytest), in UTC."""
    params = django_connection.get_connection_params()
    keep = {k: v for k, v in params.items() if isinstance(v, str | int) and k not in ("context",)}
    keep.pop("prepare_threshold", None)
    keep["options"] = (str(keep.get("options", "")) + " -c TimeZone=UTC").strip()
    return psycopg.conninfo.make_conninfo("", **keep)


class PgStore:
    def __init__(self) -> None:
        self._conninfo: str | None = None
        self._pool: AsyncConnectionPool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._opened: asyncio.Task[None] | None = None
        # Connections that hold the spend statements (SPEND_PREPARE_SQL); a closed one
        # leaves the set with its object.
        self._prepared: weakref.WeakSet[psycopg.AsyncConnection] = weakref.WeakSet()

    # --- connections ---------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        conninfo = self._conninfo
        if conninfo is None:
            conninfo = self._conninfo = _conninfo()
        if not settings.AURA["ASYNC_POOL"]:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            try:
                yield conn
            finally:
                await conn.close()
            return
        pool = self._pool_of_this_loop(conninfo)
        opened = cast("asyncio.Task[None]", self._opened)  # set with the pool
        if not opened.done():
            await asyncio.shield(opened)
        conn = await self._live_connection(pool)
        try:
            yield conn
        except psycopg.OperationalError:
            purge_pools()  # the database went away: find every dead connection at once
            raise
        finally:
            await pool.putconn(conn)

    @staticmethod
    async def _live_connection(pool: AsyncConnectionPool) -> psycopg.AsyncConnection:
        """A pooled connection the server has not closed (dbhealth.hung_up: one poll, no
        round trip). Dead ones are closed, so the pool discards and replaces them."""
        for _ in range(pool.max_size + 1):
            conn = await pool.getconn()
            if not hung_up(conn):
                return conn
            await conn.close()
            await pool.putconn(conn)
            purge_pools()
        return await pool.getconn()  # every one was dead: a new one, or the pool's error

    async def purge_pool(self) -> None:
        """Check every idle connection of this loop's pool; dead ones are replaced."""
        if self._pool is not None and self._pool_loop is asyncio.get_running_loop():
            await self._pool.check()

    def _pool_of_this_loop(self, conninfo: str) -> AsyncConnectionPool:
        """One pool per worker process; a new one should the event loop change (a pool's
        connections belong to the loop that opened them)."""
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            sizes = settings.AURA["DB_POOL"]
            self._pool = AsyncConnectionPool(
                conninfo,
                min_size=sizes["min_size"],
                max_size=sizes["max_size"],
                timeout=sizes["timeout"],
                kwargs={"autocommit": True},
                open=False,
                name="aura-store",
            )
            self._pool_loop = loop
            self._opened = loop.create_task(self._pool.open())
        return self._pool

    # --- one round trip --------------------------------------------------------------

    @staticmethod
    async def _script(
        conn: psycopg.AsyncConnection, statements: list[Statement], *, flush: bool
    ) -> list[list[Row] | None]:
        """Run `statements` as ONE simple-protocol query: PostgreSQL runs a multi-statement
        query as one implicit transaction (all or nothing, one commit), and client-side
        binding makes the whole step one round trip at the least client CPU (measured
        against psycopg's pipeline mode: a third of its CPU). `flush=False` commits
        without waiting for the WAL flush. The rows of each statement (None without)."""
        cursor = psycopg.AsyncClientCursor(conn)
        parts = [] if flush else [NO_FLUSH_SQL]
        parts += [cursor.mogrify(sql, params) for sql, params in statements]
        await cursor.execute(";\n".join(parts))
        results: list[list[Row] | None] = []
        while True:
            # pgresult, not `description`: that builds a Column per column of every result.
            # (set by execute() and by each nextset(): never None here)
            has_rows = cursor.pgresult.status == psycopg.pq.ExecStatus.TUPLES_OK  # type: ignore[union-attr]
            results.append(await cursor.fetchall() if has_rows else None)
            if not cursor.nextset():
                break
        return results if flush else results[1:]

    # --- the steps -------------------------------------------------------------------

    async def prepare(
        self, *, project_id: int, session_id: str, caps: Caps | None, cache_key: str | None
    ) -> tuple[LlmSession, CachedAnswer | None]:
        now = timezone.now()
        by_name = {"project": project_id, "session_id": session_id}
        statements: list[Statement] = [(LEDGER_BY_NAME_SQL, by_name)]
        if cache_key is not None:  # the hit counter, in the same round trip
            statements.append(
                (LOOKUP_AND_COUNT_SQL, {"project": project_id, "key": cache_key, "now": now})
            )
        async with self._connection() as conn:
            results = await self._script(conn, statements, flush=False)
            row = _first(results[0])
            answer = _first(results[1]) if cache_key is not None else None
            if row is None or caps is not None:
                row = await self._ensure(conn, row, project_id, session_id, caps, now)
        return ledger_from_row(row), (answer_from_row(answer) if answer else None)

    async def _ensure(
        self,
        conn: psycopg.AsyncConnection,
        row: Row | None,
        project_id: int,
        session_id: str,
        caps: Caps | None,
        now: datetime,
    ) -> Row:
        """As `budgets.services.session_ensure`: create on first use; caps a request
        brings replace the session's when they differ."""
        wanted = caps_columns(caps) if caps else {}
        if row is None:
            params = caps_columns(caps or Caps())  # no caps: the model's defaults
            params |= {"project": project_id, "session_id": session_id, "now": now}
            created = await (await conn.execute(SESSION_INSERT_SQL, params)).fetchone()
            if created is not None:
                return created
            row = await (
                await conn.execute(
                    LEDGER_BY_NAME_SQL, {"project": project_id, "session_id": session_id}
                )
            ).fetchone()
        # `row` (read after a conflicting insert) and the recap's row are None only if the
        # session was cleared meanwhile (a race with `session_clear`): refused as the
        # reservation would be.
        if row is None:
            raise session_cleared()
        current = ledger_from_row(row)
        if caps is None or all(getattr(current, k) == v for k, v in wanted.items()):
            return row
        params = {**wanted, "session": current.pk}
        recapped = await (await conn.execute(SESSION_RECAP_SQL, params)).fetchone()
        if recapped is None:
            raise session_cleared()
        return recapped

    async def cache_lookup(self, *, project_id: int, key_hash: str) -> CachedAnswer | None:
        params = {"project": project_id, "key": key_hash, "now": timezone.now()}
        async with self._connection() as conn:
            (rows,) = await self._script(conn, [(LOOKUP_AND_COUNT_SQL, params)], flush=False)
        answer = _first(rows)
        return answer_from_row(answer) if answer else None

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
        steps = reserve_steps(
            session=session,
            operation_id=operation_id,
            tokens=tokens,
            cost_micros=cost_micros,
            model_name=model_name,
            expires_in=expires_in,
        )
        async with self._connection() as conn:
            return await run_steps_async(steps, partial(self._reserve_step, conn, spend=spend))

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
        steps = reserve_steps(
            session=None,  # by name: no read of the ledger before the write
            operation_id=operation_id,
            tokens=tokens,
            cost_micros=cost_micros,
            model_name=model_name,
            expires_in=expires_in,
        )
        by_name: Params = {"project": project_id, "session_id": session_id}
        async with self._connection() as conn:
            return await run_steps_async(
                steps, partial(self._reserve_step_by_name, conn, by_name=by_name, spend=spend)
            )

    async def _reserve_step(
        self,
        conn: psycopg.AsyncConnection,
        step: Step,
        hold: Hold,
        session: LlmSession,
        *,
        spend: SpendAsk | None,
    ) -> LlmSession | None:
        """One step of `budgets.reserving.reserve_steps` on `session`: the one-statement
        reservation, or a read of the ledger."""
        if step is Step.READ:
            return await _ledger(conn, LEDGER_SELECT_SQL, {"session": session.pk})
        sql = reserve_sql(enforce_hard_limits=session.enforce_hard_limits)
        statement = (sql, reserve_params(hold, session=session.pk))
        slow = partial(budget_reserve_step, step, hold, session)
        return await self._reserve_write(conn, statement, hold, spend, slow)

    async def _reserve_step_by_name(
        self,
        conn: psycopg.AsyncConnection,
        step: Step,
        hold: Hold,
        session: None,
        *,
        by_name: Params,
        spend: SpendAsk | None,
    ) -> LlmSession | None:
        """`_reserve_step` on the session `by_name` names (`reserve_steps` by name: no
        session known)."""
        if step is Step.READ:
            return await _ledger(conn, LEDGER_BY_NAME_SQL, by_name)
        statement = (RESERVE_BY_NAME_SQL, reserve_params(hold, **by_name))

        def slow(*, spend: SpendAsk) -> LlmSession | None:
            current = session_get(project_id=by_name["project"], session_id=by_name["session_id"])
            if current is None:  # none yet, or cleared: the READ step tells which
                return None
            if current.enforce_hard_limits and operation_overruns(
                current, tokens=hold.tokens, cost_micros=hold.cost_micros, model_name=""
            ):
                return None  # a per-operation cap: the READ step refuses, naming it
            return budget_reserve_step(Step.WRITE, hold, current, spend=spend)

        return await self._reserve_write(conn, statement, hold, spend, slow)

    async def _reserve_write(
        self,
        conn: psycopg.AsyncConnection,
        statement: Statement,
        hold: Hold,
        spend: SpendAsk | None,
        slow: Callable[..., LlmSession | None],
    ) -> LlmSession | None:
        """The conditional write: the ledger it leaves, None when it admitted nothing.
        With spend budgets, one transaction holds the session and every budget or none:
        the session's statement, then the shards' (held only if the session's was), then
        a guard that aborts the transaction when the session's was held but the shards'
        were not (a shard short of room, or new). Then `slow` (the ORM's write of both,
        in a db() thread: it tops the shards up, or refuses exactly) decides."""
        if spend is None:
            (rows,) = await self._script(conn, [statement], flush=False)
            return _ledger_of(_first(rows))
        pks = spend.shard_pks
        if pks is None:  # a shard this worker has not written yet (a new period, end user)
            return await db(slow, spend=spend)
        write = spend.write_args(
            operation_id=hold.operation_id, tokens=hold.tokens, expires_at=hold.expires_at
        )
        statements = [statement, *spend_statements(pks=pks, session_hold=hold.id, **write)]
        await self._spend_prepared(conn)
        try:
            rows, _guard, sums = await self._script(conn, statements, flush=False)
        except psycopg.errors.DivisionByZero:  # the guard: nothing was written
            return await db(slow, spend=spend)
        ledger = _ledger_of(_first(rows))
        if ledger is not None:
            totals = {(b, s, p): SpendTotals(*map(int, rest)) for b, s, p, *rest in sums or []}
            spend.written = Written(hold=spend.hold_of(pks=pks, tokens=hold.tokens), totals=totals)
        return ledger

    async def _spend_prepared(self, conn: psycopg.AsyncConnection) -> None:
        """The spend statements prepared on this connection (once: it keeps them)."""
        if conn in self._prepared:
            return
        # Already there: prepared by a step whose end this process did not see.
        with contextlib.suppress(psycopg.errors.DuplicatePreparedStatement):
            await self._script(conn, [(SPEND_PREPARE_SQL, {})], flush=False)
        self._prepared.add(conn)

    async def settle(
        self,
        *,
        reservation: Reservation,
        tokens: int,
        cost_micros: int,
        count_operation: bool,
        served: tuple[str, str] | None,
    ) -> None:
        operations = 1 if count_operation else 0
        charge = (tokens, cost_micros)
        statements = [hand_back_statement(reservation, charge=charge, operations=operations)]
        statements += _spend_hand_back(reservation, charge, served, operations)
        async with self._connection() as conn:
            if reservation.spend is not None:
                await self._spend_prepared(conn)
            await self._script(conn, statements, flush=True)

    async def release(self, *, reservation: Reservation) -> None:
        statements = [hand_back_statement(reservation, charge=None)]
        statements += _spend_hand_back(reservation, None, None, 0)
        async with self._connection() as conn:
            if reservation.spend is not None:
                await self._spend_prepared(conn)
            await self._script(conn, statements, flush=True)

    async def finish(self, finish: Finish) -> Finished:
        """The writes of `finish` (store/base.py) as one transaction, the ledger read back.
        A settle and its row are one statement, the row's `budget_overrun` read from what
        the settle released. All or nothing: on failure nothing is written (the pipeline
        journals). Journaled finishes (`release_unknown`) are replayed on the ORM only."""
        if finish.release_unknown:
            raise ValueError("a journaled finish is replayed by store/journal.py, not here")
        telemetry = finish.telemetry | {
            "attempts": Jsonb(finish.telemetry["attempts"]),
            "tool_calls": Jsonb(finish.telemetry["tool_calls"]),
        }
        if finish.settles:
            reservation = cast(Reservation, finish.reservation)  # settles: set
            sql, params = hand_back_statement(
                reservation, charge=finish.charge, then=SETTLED_ROW_SQL
            )
            statements: list[Statement] = [(sql, params | telemetry)]
            statements += _spend_hand_back(reservation, finish.charge, finish.served, 1)
        else:
            statements = [(ROW_SQL, telemetry)]
            if finish.releases:
                reservation = cast(Reservation, finish.reservation)  # releases: set
                statements.append(hand_back_statement(reservation, charge=None))
                statements += _spend_hand_back(reservation, None, None, 0)
        if finish.cache is not None:
            statements.append((STORE_SQL, store_params(**finish.cache.kwargs())))
        if finish.session_pk is not None:
            statements.append((LEDGER_SELECT_SQL, {"session": finish.session_pk}))
        async with self._connection() as conn:
            if finish.reservation is not None and finish.reservation.spend is not None:
                await self._spend_prepared(conn)
            results = await self._script(conn, statements, flush=True)
        overrun = bool((_first(results[0]) or (False,))[0])
        ledger = _ledger_of(_first(results[-1])) if finish.session_pk is not None else None
        return Finished(ledger=ledger, budget_overrun=overrun)


async def _ledger(conn: psycopg.AsyncConnection, sql: str, params: Params) -> LlmSession | None:
    """The ledger as it is now (a refusal explains itself from it)."""
    return _ledger_of(await (await conn.execute(sql, params)).fetchone())


def _ledger_of(row: Row | None) -> LlmSession | None:
    return ledger_from_row(row) if row is not None else None


def _spend_hand_back(
    reservation: Reservation,
    charge: tuple[int, int] | None,
    served: tuple[str, str] | None,
    operations: int,
) -> list[Statement]:
    """The reservation's spend hold settled or released too (none without one)."""
    if reservation.spend is None:
        return []
    return [
        spend_hand_back_statement(
            reservation.spend, charge=charge, served=served, operations=operations
        )
    ]


def _first(rows: list[Row] | None) -> Row | None:
    return rows[0] if rows else None
