"""Step 4's first part: the rate limits (aura_orchestrator/ratelimit, budgets/limits.py).

Admitted before anything is reserved, so a refusal holds nothing and reaches no
provider: 429 `rate_limited` with Retry-After and OpenAI's x-ratelimit-* headers. The
windows count the call's worst case of tokens; its end (`conclude`, every ending)
corrects them to the tokens used and frees its place in flight, without holding up the
answer. A worker killed meanwhile leaves places in flight that expire with the call's
deadline.
"""

import asyncio
import logging

from aura_orchestrator import errors
from aura_orchestrator.caching.config_cache import memo_or_db
from aura_orchestrator.pipeline.types import LimitsHeld, Plan, Run
from aura_orchestrator.ratelimit import windows
from aura_orchestrator.ratelimit.window import Decision, headers
from budgets.limits import checks_for

logger = logging.getLogger(__name__)

_ending: set[asyncio.Task[None]] = set()  # ends in flight (a task needs a reference)


async def admit(run: Run, plan: Plan, *, tokens: int, in_flight_seconds: float) -> None:
    """Pass every rate limit that applies, or raise LimitReached (`tokens`: the worst
    case; `in_flight_seconds`: how long its place in flight may outlive a lost worker)."""
    found = await memo_or_db(
        checks_for,
        project_id=run.principal.project_id,
        api_key_id=run.principal.api_key_id,
        end_user=run.request.end_user,
        models=[route.model_name for route in plan.chain],
        tokens=tokens,
    )
    if not found:
        return
    decision = await windows().admit(
        found, call_id=run.operation_id, in_flight_seconds=in_flight_seconds
    )
    if not decision.admitted:
        raise _refusal(decision)
    run.limits = LimitsHeld(checks=found, decision=decision)


def _refusal(decision: Decision) -> errors.LimitReached:
    check = decision.refused_by
    assert check is not None  # refused
    wait = decision.retry_after_seconds
    what = "calls in flight" if check.field == "max_in_flight" else check.field
    return errors.LimitReached(
        f"Rate limit reached: {check.scope} allows {check.limit} {what.replace('_', ' ')}; "
        f"retry in {wait:.1f} s.",
        details={"scope": check.scope, "limit": check.field, "retry_after_seconds": wait},
        retry_after=wait,
        limit_headers=headers(decision),
    )


def limit_headers(run: Run) -> dict[str, str]:
    """The x-ratelimit-* headers of an admitted run's answer (none without limits)."""
    return {} if run.limits is None else headers(run.limits.decision)


def end(run: Run, *, tokens_used: int | None) -> None:
    """The run's windows corrected and its place in flight freed, off the answer's
    path (a failure is logged: the place expires with the call's deadline anyway)."""
    held, run.limits = run.limits, None
    if held is None:
        return
    task = asyncio.ensure_future(_end(held, run, tokens_used))
    _ending.add(task)
    task.add_done_callback(_ending.discard)


async def _end(held: LimitsHeld, run: Run, tokens_used: int | None) -> None:
    try:
        await windows().end(held.checks, call_id=run.operation_id, tokens_used=tokens_used)
    except Exception:
        logger.warning("rate-limit windows of %s not ended", run.operation_id, exc_info=True)
