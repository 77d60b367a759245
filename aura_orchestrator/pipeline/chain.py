"""Step 5: the providers, route by route, with retries and fallback, within the deadline.

Each attempt is cut at min(timeout, deadline) as a whole (`within`); a retryable error
is tried again after a backoff with jitter (`Retry-After` honoured) only if the retry
fits before the deadline; a non-retryable one moves on to the next route. Every attempt
is recorded (telemetry's `attempts`, `retry_count`), and the final error is classified
by the last failure.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from django.conf import settings

from aura_orchestrator import errors
from aura_orchestrator.caching.services import Answer
from aura_orchestrator.catalog.selectors import Route
from aura_orchestrator.catalog.tokens import count_answer_tokens, count_chat_tokens
from aura_orchestrator.pgtext import storable
from aura_orchestrator.pipeline.plan import cache_savings_of, cost_of
from aura_orchestrator.pipeline.types import Run, Usage
from aura_orchestrator.pipeline.wire import completion_request, provider_config
from aura_orchestrator.providers.base import (
    ChatMessage,
    CompletionRequest,
    CompletionResult,
    ProviderAdapter,
    ProviderConfig,
    ProviderError,
    ProviderRateLimited,
    ProviderSecretRefused,
    ProviderTimeout,
    Tool,
)
from aura_orchestrator.providers.http import get_transport
from aura_orchestrator.providers.registry import get_adapter
from aura_orchestrator.providers.retry import backoff_delay

T = TypeVar("T")


def record_attempt(run: Run, route: Route, started: float, exc: ProviderError | None) -> None:
    run.attempt_starts.append(started)
    run.attempts.append(
        {
            "provider": route.provider_name,
            "model": route.model_name,
            "latency_ms": round((time.perf_counter() - started) * 1000),
            "outcome": "ok" if exc is None else type(exc).__name__,
            "status": None if exc is None else exc.status,
            "error": None if exc is None else storable(str(exc)[:300]),
        }
    )


async def within(deadline: float, awaitable: Awaitable[T], *, seconds: float, route: Route) -> T:
    """`awaitable`, cut at `seconds` from now or at the operation's `deadline` (the run's,
    on the loop's clock), whichever comes first: the timeout bounds the whole call
    (headers, body, every byte of a dripping upstream), not each read."""
    loop = asyncio.get_running_loop()
    at = min(loop.time() + seconds, deadline)
    try:
        async with asyncio.timeout_at(at):
            return await awaitable
    except TimeoutError:
        if at >= deadline:
            raise deadline_passed(route) from None
        raise ProviderTimeout(
            f"{route.provider_name}: no answer within {seconds:g}s", provider=route.provider_name
        ) from None


async def attempt_chain(
    run: Run,
    messages: list[ChatMessage],
    attempt: Callable[[ProviderAdapter, ProviderConfig, CompletionRequest], Awaitable[T]],
) -> T:
    """`attempt` with each route's adapter, configuration and completion request, through
    `attempt_routes`."""
    plan = run.plan
    assert plan is not None  # prepared (step 1)

    def on(route: Route) -> Callable[[], Awaitable[T]]:
        adapter = get_adapter(route.kind)
        request = completion_request(run.request, plan.preset, route, messages)
        # The key inside the attempt: a refused one is this route's failed attempt
        # (recorded, then the next route), and nothing is sent.
        return lambda: attempt(adapter, provider_config(route), request)

    return await attempt_routes(run, on)


async def attempt_routes(run: Run, on: Callable[[Route], Callable[[], Awaitable[T]]]) -> T:
    """Each route in turn (`on(route)` gives its attempt), each with up to max_retries
    retries on retryable errors (backoff with jitter, Retry-After honoured); a
    non-retryable error moves on to the next route at once. The final error is
    classified by the last failure. Every attempt is recorded; `run.route` is the route
    that served."""
    plan, deadline = run.plan, run.deadline
    assert plan is not None and deadline is not None  # prepared and reserved (steps 1, 4)
    preset = plan.preset
    max_retries = preset.max_retries
    max_retry_after = settings.AURA["MAX_RETRY_AFTER_SECONDS"]
    last_error: ProviderError | None = None
    for route in plan.chain:
        attempt = on(route)
        for n in range(max_retries + 1):
            if run.time_left() <= 0:
                raise final_error(run, last_error or deadline_passed(route))
            started = time.perf_counter()
            try:
                result = await within(
                    deadline, attempt(), seconds=preset.timeout_seconds, route=route
                )
            except ProviderError as exc:
                record_attempt(run, route, started, exc)
                last_error = exc
                if not exc.retryable or n == max_retries:
                    break
                delay = backoff_delay(
                    n, retry_after=exc.retry_after, max_retry_after=max_retry_after
                )
                if delay >= run.time_left():  # the retry could not happen in time
                    break
                await asyncio.sleep(delay)
            else:
                record_attempt(run, route, started, None)
                run.route = route
                return result
    raise final_error(run, last_error)


async def call_chain(run: Run, messages: list[ChatMessage]) -> CompletionResult:
    """Step 5: one complete answer from the chain (see `attempt_chain`), its usage
    counted."""

    def complete(
        adapter: ProviderAdapter, config: ProviderConfig, request: CompletionRequest
    ) -> Awaitable[CompletionResult]:
        return adapter.complete(get_transport(), config, request)

    result = await attempt_chain(run, messages, complete)
    run.finish_reason = result.finish_reason
    run.answer = answer_of(result)
    route = run.route
    assert route is not None  # the route that served (attempt_chain)
    run.usage.add(usage_of(result, route, messages, run.request.tools))
    return result


def answer_of(result: CompletionResult) -> Answer | None:
    """What the answer holds beyond its text (None: a plain text answer)."""
    if not result.choices and not result.passthrough:
        return None
    return Answer(choices=result.choices, passthrough=result.passthrough)


def usage_of(
    result: CompletionResult, route: Route, messages: list[ChatMessage], tools: Sequence[Tool]
) -> Usage:
    """Bill from the provider's reported usage; count ourselves when it reports none: the
    prompt with its images, tool calls and tool definitions, every choice's answer with
    its tool calls (as the worst case counted them)."""
    read = written = 0
    if result.usage is not None:
        tokens_in, tokens_out = result.usage.tokens_in, result.usage.tokens_out
        read, written = result.usage.cached_tokens_in, result.usage.cache_write_tokens
    else:
        model = route.model_name
        tokens_in = count_chat_tokens(messages, tools=tools, model=model, kind=route.kind)
        tokens_out = count_answer_tokens(result.content, result.choices, model=model)
    cost = cost_of(
        route, tokens_in=tokens_in, tokens_out=tokens_out, cached_in=read, cache_written=written
    )
    saved = cache_savings_of(route, tokens_in=tokens_in, read=read, written=written)
    return Usage(
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost_micros=cost or 0,
        cache_read_tokens=read,
        cache_write_tokens=written,
        cache_savings_micros=saved,
    )


def deadline_passed(route: Route) -> ProviderTimeout:
    return ProviderTimeout(
        f"{route.provider_name}: the operation's deadline passed", provider=route.provider_name
    )


def final_error(run: Run, last: ProviderError | None) -> errors.AuraError:
    if last is None:
        return errors.ProviderFailed("No provider could be tried.")
    providers = ", ".join(dict.fromkeys(a["provider"] for a in run.attempts))
    message = f"{len(run.attempts)} attempt(s) on {providers} failed; last: {last}"
    if isinstance(last, ProviderRateLimited):
        return errors.RateLimited(message, retry_after=last.retry_after)
    if isinstance(last, ProviderTimeout):
        return errors.ProviderTimedOut(message)
    if isinstance(last, ProviderSecretRefused):
        return errors.ProviderSecretRefused(message, details={"provider": last.provider})
    return errors.ProviderFailed(message)
