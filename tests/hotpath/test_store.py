"""The pipeline's store (aura_orchestrator/store): the async PostgreSQL store and the ORM
store do the same writes and give the same answers, step by step. On PostgreSQL both
run against the same database; on SQLite only the ORM store exists."""

import uuid
from dataclasses import replace
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from aura_orchestrator.caching.models import CacheEntry
from aura_orchestrator.caching.services import CachedAnswer
from aura_orchestrator.store import CacheWrite, Finish
from aura_orchestrator.store.orm import OrmStore
from aura_orchestrator.store.pg_sql import TELEMETRY_COLUMNS
from aura_orchestrator.tenancy.services import project_get_or_create
from budgets.models import BudgetConstraint, BudgetReservation, LlmSession
from budgets.services import Caps
from telemetry.models import OperationTelemetry

pytestmark = pytest.mark.django_db(transaction=True)


def _stores() -> list[str]:
    """Both stores on PostgreSQL; the async store does not exist on SQLite."""
    return ["orm", "pg"] if connection.vendor == "postgresql" else ["orm"]


def _store(name: str):
    if name == "pg":
        from aura_orchestrator.store.pg import PgStore

        return PgStore()
    return OrmStore()


def _telemetry(project_id: int, session_id: str, **extra) -> dict:
    now = timezone.now()
    fields = {
        "operation_id": uuid.uuid4(),
        "project_id": project_id,
        "api_key_id": None,
        "session_id": session_id,
        "end_user": "",
        "operation_type": "planning",
        "provider_name": "primary",
        "model_name": "sim-gpt",
        "tokens_in": 10,
        "tokens_out": 20,
        "retry_count": 0,
        "latency_ms": 5,
        "success": True,
        "cache_hit": False,
        "estimated_cost": Decimal("0.000050"),
        "cache_read_tokens": 4,
        "cache_write_tokens": 2,
        "cache_savings": Decimal("-0.000001"),
        "started_at": now,
        "completed_at": now,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 100,
        "error_code": "",
        "error_message": "",
        "attempts": [{"provider": "primary", "outcome": "ok"}],
        "source": "api",
        "time_to_first_token_ms": None,
        "streamed": False,
        "tools_sent": 0,
        "images_sent": 0,
        "choices": 1,
        "tool_calls": [],
    }
    return fields | extra


def test_the_precompiled_telemetry_insert_names_every_column_of_the_model():
    columns = {f.column for f in OperationTelemetry._meta.concrete_fields if not f.primary_key}
    # budget_overrun is computed by the store, on the reservation, in the same transaction.
    assert set(TELEMETRY_COLUMNS) | {"budget_overrun"} == columns


def test_the_pipeline_hands_the_store_exactly_the_telemetry_columns():
    from aura_orchestrator import pipeline
    from aura_orchestrator.pipeline.ending import telemetry_fields
    from aura_orchestrator.pipeline.types import Run

    run = Run(
        request=pipeline.OperationRequest(
            session_id="s",
            operation_type=pipeline.OperationType.PLANNING,
            messages=(pipeline.ChatMessage(role="user", content="x"),),
        ),
        principal=pipeline.Principal(project_id=1),
    )
    assert set(telemetry_fields(run, success=True, cache_hit=False)) == set(TELEMETRY_COLUMNS)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", _stores())
async def test_a_whole_operation_through_the_store(name):
    store = _store(name)
    project = await _project()
    caps = Caps.inline(max_tokens_per_session=1000, max_cost_per_session=Decimal("0.01"))

    session, cached = await store.prepare(
        project_id=project, session_id="video-1", caps=caps, cache_key="k" * 64
    )
    assert cached is None
    assert (session.max_tokens_per_session, session.max_cost_per_session_micros) == (1000, 10_000)
    assert session.enforce_hard_limits and session.tokens_used == 0

    operation_id = uuid.uuid4()
    reservation = await store.reserve(
        session=session,
        operation_id=operation_id,
        tokens=300,
        cost_micros=400,
        model_name="sim-gpt",
        expires_in=60,
    )
    assert reservation.ledger.tokens_reserved == 300
    assert reservation.ledger.cost_reserved_micros == 400
    assert reservation.warnings == []
    held = await BudgetReservation.objects.aget(pk=reservation.id)
    assert (held.operation_id, held.tokens, held.cost_micros) == (operation_id, 300, 400)

    # Over the session's token cap: refused, with the arithmetic, and nothing held.
    with pytest.raises(Exception) as refused:
        await store.reserve(
            session=session,
            operation_id=uuid.uuid4(),
            tokens=701,
            cost_micros=1,
            model_name="sim-gpt",
            expires_in=60,
        )
    assert refused.value.code == "budget_exceeded"
    assert "0 used + 300 reserved + 701 for this operation exceeds the cap of 1000 by 1" in (
        refused.value.message
    )
    assert await BudgetReservation.objects.acount() == 1

    answer = CachedAnswer("a plan", "primary", "sim-gpt", 10, 20)
    finished = await store.finish(
        Finish(
            reservation=reservation,
            charge=(30, 50),
            session_pk=session.pk,
            cache=CacheWrite(project, "k" * 64, "planning", answer, 60),
            telemetry=_telemetry(project, "video-1", operation_id=operation_id),
        )
    )
    assert not finished.budget_overrun
    ledger = finished.ledger
    assert (ledger.tokens_used, ledger.cost_accrued_micros, ledger.operation_count) == (30, 50, 1)
    assert (ledger.tokens_reserved, ledger.cost_reserved_micros) == (0, 0)
    assert await BudgetReservation.objects.acount() == 0
    row = await OperationTelemetry.objects.aget(operation_id=operation_id)
    assert (row.tokens_in, row.tokens_out, row.estimated_cost) == (10, 20, Decimal("0.000050"))
    assert row.attempts == [{"provider": "primary", "outcome": "ok"}]
    assert not row.budget_overrun

    # The same key again: a hit, counted; the session keeps its caps without a request's.
    session, cached = await store.prepare(
        project_id=project, session_id="video-1", caps=None, cache_key="k" * 64
    )
    assert cached == answer
    assert session.max_tokens_per_session == 1000 and session.tokens_used == 30
    entry = await CacheEntry.objects.aget(key_hash="k" * 64)
    assert entry.hit_count == 1 and entry.last_hit_at is not None
    assert await store.cache_lookup(project_id=project, key_hash="other") is None


@pytest.mark.asyncio
@pytest.mark.parametrize("name", _stores())
async def test_caps_a_request_brings_replace_the_sessions_and_named_budgets_are_linked(name):
    store = _store(name)
    project = await _project()
    await store.prepare(
        project_id=project,
        session_id="s1",
        caps=Caps.inline(max_tokens_per_session=10),
        cache_key=None,
    )
    constraint = await BudgetConstraint.objects.acreate(
        name="tight", max_tokens_per_session=5, enforce_hard_limits=False
    )
    named = replace(
        Caps.inline(max_tokens_per_session=5, enforce_hard_limits=False),
        constraint_id=constraint.pk,
    )
    session, _ = await store.prepare(
        project_id=project, session_id="s1", caps=named, cache_key=None
    )
    assert session.max_tokens_per_session == 5 and not session.enforce_hard_limits
    assert session.constraint_id == constraint.pk
    stored = await LlmSession.objects.aget(project_id=project, session_id="s1")
    assert (stored.max_tokens_per_session, stored.constraint_id) == (5, constraint.pk)

    # Soft limit: admitted, with the overrun as a warning.
    reservation = await store.reserve(
        session=session,
        operation_id=uuid.uuid4(),
        tokens=8,
        cost_micros=None,
        model_name="m",
        expires_in=60,
    )
    assert reservation.warnings == [
        "max_tokens_per_session: 0 used + 0 reserved + 8 for this operation exceeds the cap "
        "of 5 by 3 (soft limit)"
    ]
    assert reservation.ledger.constraint.name == "tight"  # loaded: budget_status runs no query
    await store.release(reservation=reservation)
    ledger = await LlmSession.objects.aget(pk=session.pk)
    assert (ledger.tokens_reserved, ledger.tokens_used) == (0, 0)
    # Releasing twice hands nothing back twice.
    await store.release(reservation=reservation)
    assert (await LlmSession.objects.aget(pk=session.pk)).tokens_reserved == 0


async def _project() -> int:
    return (await sync_to_async(project_get_or_create)(name="studio")).pk


@pytest.mark.asyncio
@pytest.mark.parametrize("name", _stores())
async def test_reserving_by_name_reads_every_cap_on_the_locked_row(name):
    """`reserve_existing` (no ledger read before it) refuses exactly what `reserve` does,
    with the same reasons, and tells a new session apart."""
    store = _store(name)
    project = await _project()

    async def reserve(session_id: str, tokens: int, cost: int):
        return await store.reserve_existing(
            project_id=project,
            session_id=session_id,
            operation_id=uuid.uuid4(),
            tokens=tokens,
            cost_micros=cost,
            model_name="sim-gpt",
            expires_in=60,
        )

    assert await reserve("new", 10, 10) is None
    assert not await LlmSession.objects.filter(session_id="new").aexists()

    caps = Caps.inline(
        max_tokens_per_operation=100,
        max_cost_per_operation=Decimal("0.000050"),
        max_tokens_per_session=150,
    )
    await store.prepare(project_id=project, session_id="hard", caps=caps, cache_key=None)
    held = await reserve("hard", 100, 50)
    assert (held.ledger.tokens_reserved, held.ledger.cost_reserved_micros) == (100, 50)
    assert held.warnings == []
    for tokens, cost, reason in [
        (101, 1, "max_tokens_per_operation: worst case 101 tokens exceeds the cap of 100 by 1"),
        (1, 51, "max_cost_per_operation: worst case $0.000051 exceeds the cap of $0.000050"),
        (51, 1, "0 used + 100 reserved + 51 for this operation exceeds the cap of 150 by 1"),
    ]:
        with pytest.raises(Exception) as refused:
            await reserve("hard", tokens, cost)
        assert refused.value.code == "budget_exceeded"
        assert reason in refused.value.message
    assert await BudgetReservation.objects.acount() == 1

    soft = Caps.inline(max_tokens_per_operation=5, enforce_hard_limits=False)
    await store.prepare(project_id=project, session_id="soft", caps=soft, cache_key=None)
    admitted = await reserve("soft", 8, 0)
    assert admitted.warnings == [
        "max_tokens_per_operation: worst case 8 tokens exceeds the cap of 5 by 3 (soft limit)"
    ]
    assert admitted.ledger.tokens_reserved == 8


@pytest.mark.asyncio
@pytest.mark.parametrize("name", _stores())
async def test_a_settle_after_the_reservation_expired_is_charged_in_full_and_flagged(name):
    """Only a worker frozen past its deadline and margin can settle after the expiry job
    handed its reservation back: the money was spent, so it is charged in full, and the
    row says so (budget_overrun) instead of the ledger silently passing its cap."""
    from budgets.services import budget_release_expired

    store = _store(name)
    project = await _project()
    caps = Caps.inline(max_tokens_per_session=100)
    session, _ = await store.prepare(
        project_id=project, session_id="frozen", caps=caps, cache_key=None
    )
    operation_id = uuid.uuid4()
    reservation = await store.reserve(
        session=session,
        operation_id=operation_id,
        tokens=80,
        cost_micros=0,
        model_name="sim-gpt",
        expires_in=0,  # expired at once
    )
    assert await sync_to_async(budget_release_expired)() == 1
    ledger = await LlmSession.objects.aget(pk=session.pk)
    assert ledger.tokens_reserved == 0  # handed back: another request could take it now

    finished = await store.finish(
        Finish(
            reservation=reservation,
            charge=(70, 0),
            session_pk=session.pk,
            cache=None,
            telemetry=_telemetry(project, "frozen", operation_id=operation_id),
        )
    )
    assert finished.budget_overrun
    assert (finished.ledger.tokens_used, finished.ledger.tokens_reserved) == (70, 0)
    row = await OperationTelemetry.objects.aget(operation_id=operation_id)
    assert row.budget_overrun

    # An ordinary settle is not flagged; a release after expiry hands nothing back twice.
    second = await store.reserve(
        session=finished.ledger,
        operation_id=uuid.uuid4(),
        tokens=20,
        cost_micros=0,
        model_name="sim-gpt",
        expires_in=60,
    )
    await store.release(reservation=second)
    await store.release(reservation=second)
    ledger = await LlmSession.objects.aget(pk=session.pk)
    assert (ledger.tokens_used, ledger.tokens_reserved) == (70, 0)
