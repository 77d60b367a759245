"""The SQL store (PgStore) beside the pure-ORM store (OrmStore) on the same PostgreSQL
database: the same scenario gives the same answers and leaves the same rows; and the SQL
store's own races. PostgreSQL only: on SQLite this module is not collected (conftest.py)."""

import asyncio
import uuid
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from aura_orchestrator.caching.models import CacheEntry
from aura_orchestrator.caching.services import CachedAnswer
from aura_orchestrator.errors import BudgetExceeded
from aura_orchestrator.store import CacheWrite, Finish
from aura_orchestrator.tenancy.services import project_get_or_create
from budgets.models import BudgetReservation, LlmSession
from budgets.services import Caps
from telemetry.models import OperationTelemetry
from tests.hotpath.test_store import _project, _store, _telemetry

pytestmark = pytest.mark.django_db(transaction=True)

_LEDGER_SKIP = {"id", "project", "constraint", "created_at", "last_activity_at"}


def _ledger(session: LlmSession | None) -> dict | None:
    if session is None:
        return None
    return {
        f.attname: getattr(session, f.attname)
        for f in LlmSession._meta.concrete_fields
        if f.name not in _LEDGER_SKIP
    }


def _answer(reservation) -> object:
    if reservation is None:
        return None
    return (
        reservation.tokens,
        reservation.cost_micros,
        reservation.warnings,
        _ledger(reservation.ledger),
    )


async def _refusal(call) -> tuple[str, str]:
    with pytest.raises(Exception) as refused:
        await call
    return refused.value.code, refused.value.message


async def _scenario(store, project: int) -> list:
    """Every step of the store's protocol, its answers in order (normalised)."""
    from budgets.services import budget_release_expired, session_clear

    said: list = []
    key = "c" * 64
    caps = Caps.inline(
        max_tokens_per_operation=500,
        max_cost_per_operation=Decimal("0.005"),
        max_tokens_per_session=1000,
        max_cost_per_session=Decimal("0.01"),
    )

    def reserve(session, tokens, cost, *, expires_in=60, model="sim-gpt"):
        return store.reserve(
            session=session,
            operation_id=uuid.uuid4(),
            tokens=tokens,
            cost_micros=cost,
            model_name=model,
            expires_in=expires_in,
        )

    def reserve_by_name(session_id, tokens, cost):
        return store.reserve_existing(
            project_id=project,
            session_id=session_id,
            operation_id=uuid.uuid4(),
            tokens=tokens,
            cost_micros=cost,
            model_name="sim-gpt",
            expires_in=60,
        )

    async def finish(reservation, charge, *, session, cache=None, operation_id=None):
        finished = await store.finish(
            Finish(
                reservation=reservation,
                charge=charge,
                session_pk=session.pk,
                cache=cache,
                telemetry=_telemetry(
                    project, session.session_id, operation_id=operation_id or uuid.uuid4()
                ),
            )
        )
        return _ledger(finished.ledger), finished.budget_overrun

    # A new session and a cache miss; then reserve, refusals of each kind, by name.
    session, cached = await store.prepare(
        project_id=project, session_id="s", caps=caps, cache_key=key
    )
    said += [_ledger(session), cached]
    first = await reserve(session, 300, 400)
    said.append(_answer(first))
    bulk = await reserve(session, 500, 5000)
    said.append(_answer(bulk))
    said.append(await _refusal(reserve(session, 201, 1)))  # session tokens: 1001
    said.append(await _refusal(reserve_by_name("s", 1, 4601)))  # session cost, by name
    said.append(await _refusal(reserve(session, 501, 1)))  # operation tokens
    said.append(await _refusal(reserve(session, 1, 5001)))  # operation cost
    said.append(await _refusal(reserve(session, 1, None, model="unpriced")))
    said.append(await _refusal(reserve_by_name("s", 501, 1)))
    await store.release(reservation=bulk)
    second = await reserve_by_name("s", 100, 100)
    said.append(_answer(second))
    said.append(await reserve_by_name("nobody-yet", 1, 1))

    # Settle with a cache entry, release; then a hit, counted.
    answer = CachedAnswer("a plan", "primary", "sim-gpt", 10, 20)
    said.append(
        await finish(
            first, (30, 50), session=session, cache=CacheWrite(project, key, "planning", answer, 60)
        )
    )
    said.append(await finish(second, None, session=session))
    said.append(await store.prepare(project_id=project, session_id="s", caps=None, cache_key=key))
    said[-1] = (_ledger(said[-1][0]), said[-1][1])
    said.append(await store.cache_lookup(project_id=project, key_hash="other"))

    # Expired before its settle: handed back by the job, charged in full, flagged.
    late = await reserve(session, 200, 0, expires_in=0)
    said.append(await sync_to_async(budget_release_expired)())
    said.append(await finish(late, (150, 0), session=session))
    again = await reserve(session, 10, 0)
    await store.settle(
        reservation=again, tokens=5, cost_micros=1, count_operation=False, served=None
    )
    await store.release(reservation=again)  # after the settle: hands nothing back twice

    # Soft limits: admitted with warnings; caps a request brings replace the session's.
    soft = Caps.inline(
        max_tokens_per_operation=5, max_tokens_per_session=8, enforce_hard_limits=False
    )
    soft_session, _ = await store.prepare(
        project_id=project, session_id="s", caps=soft, cache_key=None
    )
    said.append(_ledger(soft_session))
    warned = await reserve(soft_session, 9, 0)
    said.append(_answer(warned))
    await store.release(reservation=warned)

    # Two first requests of a new session at once: one row, both answered with it.
    racing = await asyncio.gather(
        *(
            store.prepare(project_id=project, session_id="race", caps=caps, cache_key=None)
            for _ in range(4)
        )
    )
    assert len({session.pk for session, _ in racing}) == 1
    said += [_ledger(session) for session, _ in racing]

    # A session cleared between its read and its reservation.
    await sync_to_async(session_clear)(project_id=project, session_id="race")
    said.append(await _refusal(reserve(racing[0][0], 1, 1)))
    return said


def _rows(project: int) -> dict:
    """What the scenario left in the database, without ids and clocks."""
    return {
        "sessions": sorted(
            (
                _ledger(s) | {"session_id": s.session_id}
                for s in LlmSession.objects.filter(project_id=project)
            ),
            key=lambda row: row["session_id"],
        ),
        "reservations": sorted(
            BudgetReservation.objects.filter(session__project_id=project).values_list(
                "session__session_id", "tokens", "cost_micros"
            )
        ),
        "telemetry": sorted(
            OperationTelemetry.objects.filter(project_id=project).values_list(
                "session_id",
                "tokens_in",
                "tokens_out",
                "estimated_cost",
                "budget_overrun",
                "attempts",
            ),
            key=repr,
        ),
        "cache": list(
            CacheEntry.objects.filter(project_id=project).values_list(
                "key_hash", "operation_type", "content", "tokens_in", "tokens_out", "hit_count"
            )
        ),
    }


@pytest.mark.asyncio
async def test_the_orm_store_and_the_sql_store_give_the_same_answers_and_leave_the_same_rows():
    """On PostgreSQL: the pure-ORM store (OrmStore) and the SQL store (PgStore) run the
    same scenario against the same database, each in its own project."""
    results = {}
    for name in ("orm", "pg"):
        project = (await sync_to_async(project_get_or_create)(name=f"side-{name}")).pk
        answers = await _scenario(_store(name), project)
        results[name] = (answers, await sync_to_async(_rows)(project))
    orm_answers, orm_rows = results["orm"]
    pg_answers, pg_rows = results["pg"]
    for step, (orm, pg) in enumerate(zip(orm_answers, pg_answers, strict=True)):
        assert orm == pg, f"step {step}"
    assert orm_rows == pg_rows
    assert orm_rows["telemetry"] and orm_rows["cache"] and orm_rows["sessions"]


@pytest.mark.asyncio
async def test_a_session_cleared_while_its_caps_are_replaced_is_refused_not_a_500():
    """The SQL store's prepare read the session, then an operator cleared it before the
    caps the request brings replaced its own: a refusal (as the reservation would give),
    never a TypeError from an empty row."""
    from aura_orchestrator.store.pg_sql import LEDGER_BY_NAME_SQL

    store = _store("pg")
    project = await _project()
    caps = Caps.inline(max_tokens_per_session=10)
    await store.prepare(project_id=project, session_id="gone", caps=caps, cache_key=None)
    async with store._connection() as conn:
        where = {"project": project, "session_id": "gone"}
        row = await (await conn.execute(LEDGER_BY_NAME_SQL, where)).fetchone()
        await LlmSession.objects.filter(project_id=project, session_id="gone").adelete()
        with pytest.raises(BudgetExceeded, match="the session was cleared"):
            await store._ensure(
                conn, row, project, "gone", Caps.inline(max_tokens_per_session=5), timezone.now()
            )
