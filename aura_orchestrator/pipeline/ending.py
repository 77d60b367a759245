"""Step 7: how every operation ends, with exactly one telemetry row.

    one_row    wraps the work of an operation: an exception becomes a failed result, a
               cancellation is recorded (`abandon`) before it goes on
    conclude   THE ending (success, cache hit, failure, a stream's end, an abandon):
               settle or release, cache entry, telemetry row, ledger read back, in one
               commit of the store; shielded; a refused write tried again, then
               journaled; metrics; the result

`run.finishing` is set by `conclude` before anything is written: from then on no other
path writes a row for the run.
"""

import asyncio
import logging
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any, TypeVar

from django.utils import timezone

from aura_orchestrator import errors, metrics, tracing
from aura_orchestrator.caching.services import Answer, CachedAnswer
from aura_orchestrator.catalog.selectors import Route
from aura_orchestrator.db import db
from aura_orchestrator.dbhealth import DATABASE_UNAVAILABLE, unavailable
from aura_orchestrator.money import micros_to_usd
from aura_orchestrator.pgtext import is_storable, storable
from aura_orchestrator.pipeline import limits
from aura_orchestrator.pipeline.limits import limit_headers
from aura_orchestrator.pipeline.types import OperationRequest, OperationResult, Run
from aura_orchestrator.providers.base import ImagePart
from aura_orchestrator.store import CacheWrite, Finish, get_store
from aura_orchestrator.store.base import Finished
from aura_orchestrator.store.journal import finish_once, journal
from budgets.caps import UNITS
from budgets.models import LlmSession
from budgets.selectors import budget_status
from budgets.spending import SpendState, notice_spend

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Telemetry fields the result does not show.
_NOT_IN_RESULT = ("project_id", "api_key_id", "end_user", "attempts")

# Telemetry keeps at most this many tool calls per operation, arguments cut to this length.
MAX_CALLS_KEPT = 32
TOOL_ARGUMENTS_KEPT = 500

# A finish the database refuses is tried again after these pauses, then journaled.
FINISH_RETRY_DELAYS = (0.05, 0.25)


# --- Whatever happens, one row -------------------------------------------------------------


async def one_row(run: Run, work: Awaitable[T]) -> T | OperationResult:
    """`work`'s result; however it fails, the operation still ends with its one row: an
    exception becomes a failed result (`expected_error`), a cancellation is recorded
    before it goes on (`abandon`). A failure of the finish itself is not finished twice."""
    try:
        return await work
    except Exception as exc:
        if run.finishing:  # the finish itself failed (the journal too): nothing more to do
            raise
        return await conclude(run, error=expected_error(run, exc))
    except BaseException as exc:
        await abandon(run, exc)
        raise


def expected_error(run: Run, exc: BaseException) -> errors.AuraError:
    """The error an exception means for the operation's result: ours as raised, a
    database that cannot be reached as 503; anything else is a bug (internal_error)."""
    if isinstance(exc, errors.AuraError):
        return exc
    if isinstance(exc, DATABASE_UNAVAILABLE):
        run.database_down = True
        return unavailable(exc)
    logger.error("operation %s failed unexpectedly", run.operation_id, exc_info=exc)
    return errors.InternalError()


async def abandon(run: Run, exc: BaseException) -> None:
    """Cancelled (the client gone, the server stopping): the operation still gets its row
    (its reservation handed back, what was consumed charged) before the cancellation goes
    on. The finish is shielded, so a second cancellation cannot interrupt it."""
    if run.finishing:  # the finish had begun: it writes the row
        return
    error: errors.AuraError = errors.ClientDisconnected(
        "The client disconnected before the operation ended."
    )
    if not isinstance(exc, asyncio.CancelledError):
        error = expected_error(run, exc)  # KeyboardInterrupt, SystemExit
    try:
        await conclude(run, error=error)
    except asyncio.CancelledError:
        pass  # the shielded finish goes on; the original exception is what matters
    except Exception:
        logger.exception("the row of abandoned operation %s could not be written", run.operation_id)


# --- The one ending ------------------------------------------------------------------------


async def conclude(
    run: Run,
    *,
    content: str | None = None,
    error: errors.AuraError | None = None,
    cached: CachedAnswer | None = None,
) -> OperationResult:
    """Step 7, every ending: settle or release, store in cache, record telemetry, read the
    ledger back (one step of the store, one commit), then the result. It succeeded when
    there is no `error`; `cached` is a cache hit's answer (step 2).

    What is charged: for a cache hit nothing; for an answer (`content`: a complete one,
    or a stream's however it ended) everything the providers reported and not yet
    settled; without one only tokens a provider already produced (a failed schema
    repair), else the reservation is released.

    Shielded: once the write has begun it completes even if the caller is cancelled,
    and the run writes no other row (`run.finishing`)."""
    run.finishing = True
    if cached is not None:
        run.route = _route_of(run, cached)
        content = cached.content
        run.answer = cached.answer
        run.finish_reason = _cached_finish(cached)
        charge = None
    else:
        charge = run.unsettled
        if content is None and not charge.tokens:
            charge = None
    success = error is None
    cache_hit = cached is not None
    fields = telemetry_fields(run, success=success, cache_hit=cache_hit, error=error)
    plan = run.plan
    reservation, run.reservation = run.reservation, None
    finish = Finish(
        reservation=reservation,
        charge=None if charge is None else (charge.tokens, charge.cost_micros),
        session_pk=plan.session.pk if plan and plan.session else None,
        cache=cache_write(run, success=success, cache_hit=cache_hit, content=content),
        telemetry=fields,
        release_unknown=run.database_down,
    )
    write = write_finish(finish, database_down=run.database_down)
    finished = await asyncio.shield(asyncio.ensure_future(write))
    if finished is None:  # journaled: the ledger shown is the one the reservation left
        run.warnings.append(
            "The database is unavailable: this operation's charge and record are kept and "
            "will be written when it is back; the budget shown does not include it yet."
        )
        finished = Finished(ledger=reservation.ledger if reservation else None)
    metrics.record_operation(fields | {"budget_overrun": finished.budget_overrun})
    if tracing.exporter is not None:  # spans are built later, off this path
        tracing.record(run, fields, error, content)
    if run.spend is not None:
        if reservation is not None and reservation.spend is not None:
            run.spend.settled(reservation.spend, charge=finish.charge, served=finish.served)
        crossed = run.spend.crossed()
        if crossed:
            notice_spend(crossed)
    rate_headers = limit_headers(run)
    limits.end(run, tokens_used=fields["tokens_in"] + fields["tokens_out"])
    telemetry = {k: v for k, v in fields.items() if k not in _NOT_IN_RESULT}
    telemetry["total_tokens"] = fields["tokens_in"] + fields["tokens_out"]
    telemetry["attempts"] = fields["attempts"]
    return OperationResult(
        operation_id=run.operation_id,
        success=success,
        content=content,
        was_cached=cache_hit,
        error=error,
        telemetry=telemetry,
        budget=budget_body(run, finished.ledger),
        finish_reason=None if content is None else run.finish_reason,
        answer=run.answer,
        headers=rate_headers,
    )


def _cached_finish(cached: CachedAnswer) -> str:
    """A cached answer's finish: its choice 0's (tool_calls...), else it stopped."""
    first = cached.answer.first if cached.answer else None
    return (first or {}).get("finish_reason") or "stop"


def _route_of(run: Run, answer: CachedAnswer) -> Route:
    """The route a cached answer came from (for telemetry), in the chain or not."""
    plan = run.plan
    assert plan is not None  # a cached answer is plan.cached (step 1) or a leader's (step 3)
    return next(
        (
            r
            for r in plan.chain
            if r.provider_name == answer.provider_name and r.model_name == answer.model_name
        ),
        Route(answer.provider_name, "", "", "", answer.model_name, None, None, None),
    )


async def write_finish(finish: Finish, *, database_down: bool) -> Finished | None:
    """The store's finish; on failure tried again (idempotently: the first try may have
    committed with its reply lost), then the journal, which keeps the charge and its row
    together until the database takes them (None). An operation that already failed for
    want of a database goes to the journal at once, not after the pool's timeouts."""
    operation_id = finish.telemetry["operation_id"]
    if not database_down:
        try:
            return await get_store().finish(finish)
        except Exception as exc:
            logger.warning("the finish of %s failed (%s); trying again", operation_id, exc)
        for delay in FINISH_RETRY_DELAYS:
            await asyncio.sleep(delay)
            try:
                return await db(finish_once, finish)
            except DATABASE_UNAVAILABLE:
                continue
            except Exception:  # not an outage: a bug; the journal keeps it for an operator
                logger.exception("the finish of %s failed", operation_id)
                break
    await journal.append(finish)
    return None


# --- What the finish writes and answers ----------------------------------------------------


def telemetry_fields(
    run: Run, *, success: bool, cache_hit: bool, error: errors.AuraError | None = None
) -> dict[str, Any]:
    """The operation's telemetry row (the store's columns)."""
    plan = run.plan
    preset = plan.preset if plan else None
    completed_at = timezone.now()
    route = run.route or (plan.chain[0] if plan and plan.chain else None)
    return {
        "operation_id": run.operation_id,
        "project_id": run.principal.project_id,
        "api_key_id": run.principal.api_key_id,
        "session_id": run.request.session_id,
        "end_user": storable(run.request.end_user or ""),
        "operation_type": run.request.operation_type.value,
        "provider_name": route.provider_name if route else "",
        "model_name": route.model_name if route else "",
        "tokens_in": run.usage.tokens_in,
        "tokens_out": run.usage.tokens_out,
        "retry_count": run.retry_count,
        "latency_ms": run.elapsed_ms(),
        "success": success,
        "cache_hit": cache_hit,
        "estimated_cost": micros_to_usd(run.usage.cost_micros),
        "cache_read_tokens": run.usage.cache_read_tokens,
        "cache_write_tokens": run.usage.cache_write_tokens,
        "cache_savings": micros_to_usd(run.usage.cache_savings_micros),
        "started_at": run.started_at,
        "completed_at": completed_at,
        "temperature": preset.temperature if preset else None,
        "top_p": preset.top_p if preset else None,
        # An embedding produces no tokens: the preset's max_tokens means nothing for it.
        "max_tokens": preset.max_tokens if preset and run.request.embedding is None else None,
        "error_code": error.code if error else "",
        "error_message": storable(error.message[:2000]) if error else "",
        "attempts": run.attempts,
        "source": run.request.source,
        "time_to_first_token_ms": run.ttft_ms,
        "streamed": run.streamed,
        **request_counts(run.request),
        "tool_calls": answered_calls(run.answer),
    }


def request_counts(request: OperationRequest) -> dict[str, int]:
    """Telemetry's counts of what a request sent beyond text."""
    if request.plain:
        return {"tools_sent": 0, "images_sent": 0, "choices": 1}
    images = sum(isinstance(p, ImagePart) for m in request.messages for p in m.parts or ())
    return {"tools_sent": len(request.tools), "images_sent": images, "choices": request.choices}


def answered_calls(answer: Answer | None) -> list[dict[str, Any]]:
    """The tool calls of every choice, for telemetry: name and arguments (truncated)."""
    if answer is None:
        return []
    calls = []
    for choice in answer.choices:
        for call in (choice.get("message") or {}).get("tool_calls") or ():
            function = call.get("function") or {}
            calls.append(
                {
                    "name": storable(str(function.get("name", ""))[:64]),
                    "arguments": storable(str(function.get("arguments", ""))[:TOOL_ARGUMENTS_KEPT]),
                }
            )
    return calls[:MAX_CALLS_KEPT]


def cache_write(
    run: Run, *, success: bool, cache_hit: bool, content: str | None
) -> CacheWrite | None:
    """The cache entry a fresh success leaves (its key from step 1), if any."""
    plan = run.plan
    if not (success and not cache_hit and plan and plan.cache_key and run.route):
        return None
    if content and not is_storable(content):  # kept as the provider sent it, or not at all
        return None
    return CacheWrite(
        project_id=run.principal.project_id,
        key_hash=plan.cache_key,
        operation_type=run.request.operation_type.value,
        answer=CachedAnswer(
            content=content or "",
            provider_name=run.route.provider_name,
            model_name=run.route.model_name,
            tokens_in=run.usage.tokens_in,
            tokens_out=run.usage.tokens_out,
            answer=run.answer if run.answer and run.answer.kept else None,
        ),
        ttl_seconds=plan.cache_ttl,
    )


def budget_body(run: Run, session: LlmSession | None) -> dict[str, Any]:
    """The session's budget for the response, from the ledger the store read back."""
    if session is None:
        return {
            "session_id": run.request.session_id,
            "total_tokens_used": 0,
            "total_cost_accrued": Decimal("0.000000"),
            "operation_count": 0,
            "warnings": run.warnings,
        }
    status = budget_status(session)
    body = {
        "session_id": status.session_id,
        "total_tokens_used": status.total_tokens_used,
        "total_cost_accrued": status.total_cost_accrued,
        "operation_count": status.operation_count,
        "tokens_reserved": status.tokens_reserved,
        "cost_reserved": status.cost_reserved,
        **status.remaining,
        "warnings": run.warnings,
    }
    if run.spend is not None:
        tightest_of(body, run.spend)
    return body


def tightest_of(body: dict[str, Any], spend: SpendState) -> None:
    """The budget body reports the tightest budget: each `remaining_*` is the least the
    session or any spend budget still allows, and `scope`, `period`, `resets_at` name
    the spend budget nearest its cap."""
    level, least = spend.tightest()
    if level is None:
        return
    for unit in UNITS:
        left = least.get(unit.remaining)
        if left is None:
            continue
        shown = unit.to_public(left)
        current = body.get(unit.remaining)
        if current is None or shown < current:
            body[unit.remaining] = shown
    body |= level.details()
