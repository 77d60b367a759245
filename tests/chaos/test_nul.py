"""NUL (U+0000) everywhere: PostgreSQL refuses it in text and JSONB. From a client it is
a 400 naming the field (no row, no charge, no provider call); from a provider (in an
answer, or in an error message) the client gets the provider's text intact and the
operation its one telemetry row, through both endpoints, with and without cache,
streamed or not."""

import asyncio

import pytest

from aura_orchestrator.simulator import Fault
from budgets.models import BudgetConstraint
from telemetry.models import OperationTelemetry
from tests.chaos.harness import (
    Call,
    Ledgers,
    Outcome,
    Verdict,
    client_for,
    invariants,
    row_violations,
    send,
)

pytestmark = pytest.mark.django_db(transaction=True)

NUL_TEXT = "a\u0000b"


def _execute(session: str, *, cache: bool, **fields) -> dict:
    return {
        "session_id": session,
        "operation_type": "planning",
        "prompt": "Plan a video about tides",
        "enable_cache": cache,
        "custom_preset": {"max_retries": 0, "max_tokens": 50},
        **fields,
    }


def _chat(session: str, *, cache: bool, stream: bool, content: str = "hi", **fields) -> Call:
    headers = {"X-Aura-Session-Id": session, "X-Aura-Enable-Cache": "true" if cache else "false"}
    body = {"model": "sim-gpt", "max_tokens": 50, "stream": stream}
    body["messages"] = [{"role": "user", "content": content}]
    body.update(fields)
    if "session_id" in fields or "budget" in fields:  # in the body's metadata, not a header
        body["metadata"] = {k: body.pop(k) for k in ("session_id", "budget") if k in body}
        if "session_id" in body["metadata"]:
            del headers["X-Aura-Session-Id"]
    return Call("stream" if stream else "chat", session, body, headers)


def _client_side_calls() -> list[tuple[str, Call]]:
    """(the field the 400 must name, the call)."""
    calls = []
    for cache in (False, True):
        s = f"nul-client-{int(cache)}"
        for name, fields in (
            ("prompt", {"prompt": NUL_TEXT}),
            ("system_prompt", {"system_prompt": NUL_TEXT}),
            ("session_id", {"session_id": "nul\u0000session"}),
            ("model", {"model": "sim\u0000gpt"}),
            ("budget", {"budget": "gener\u0000ous"}),
        ):
            calls.append((name, Call("execute", s, _execute(s, cache=cache, **fields))))
        for stream in (False, True):
            for name, kwargs in (
                ("messages", {"content": NUL_TEXT}),
                (
                    "messages",
                    {"messages": [{"role": "system", "content": NUL_TEXT}, _user("hi")]},
                ),
                ("model", {"model": "sim\u0000gpt"}),
                ("session_id", {"session_id": "nul\u0000session"}),
                ("budget", {"budget": "gener\u0000ous"}),
            ):
                calls.append((name, _chat(s, cache=cache, stream=stream, **kwargs)))
    return calls


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _cache(call: Call) -> bool:
    return call.json.get("enable_cache") is True or (
        call.headers.get("X-Aura-Enable-Cache") == "true"
    )


def test_nul_everywhere(chaos_server, api_key, chaos_provider, chaos_upstream):
    BudgetConstraint.objects.create(name="generous", max_tokens_per_session=10**9)
    server = chaos_server(1)
    verdict_outcomes: list[Outcome] = []
    problems: dict[str, list[str]] = {
        "client:400_naming_the_field": [],
        "client:no_row_no_charge_no_call": [],
        "provider:answer_intact": [],
        "provider:error_status": [],
    }

    async def client_side() -> None:
        async with client_for(server.url, api_key.raw_key, timeout=15, connections=2) as client:
            for field, call in _client_side_calls():
                outcome = await send(client, call, 0)
                verdict_outcomes.append(outcome)
                if (outcome.status, outcome.error_code) != (400, "invalid_request") or (
                    field not in (outcome.message or "")
                ):
                    label = f"{call.kind} {field}" + (" stream" if call.json.get("stream") else "")
                    problems["client:400_naming_the_field"].append(
                        f"{label} (cache {_cache(call)}): {outcome.status or outcome.error} "
                        f"{outcome.error_code} {(outcome.message or '')[:80]!r}"
                    )

    asyncio.run(client_side())
    charged = [s for s in Ledgers.read().sessions if s.tokens_used or s.tokens_reserved]
    rows = OperationTelemetry.objects.count()
    if rows or charged or chaos_upstream.request_count:
        problems["client:no_row_no_charge_no_call"].append(
            f"{rows} rows, {len(charged)} sessions charged, "
            f"{chaos_upstream.request_count} provider calls"
        )

    # Provider side: an answer holding NUL (twice with cache: the second may be a hit,
    # which must give the same text), and an error message holding NUL.
    answered: list[Outcome] = []

    async def provider_side() -> None:
        async with client_for(server.url, api_key.raw_key, timeout=15, connections=2) as client:
            cases = []
            for cache in (False, True):
                s = f"nul-provider-{int(cache)}"
                cases += [
                    Call("execute", s, _execute(s, cache=cache, prompt=f"Answer with NUL {cache}")),
                    _chat(s, cache=cache, stream=False, content=f"answer with NUL {cache}"),
                    _chat(s, cache=cache, stream=True, content=f"stream with NUL {cache}"),
                ]
            for call in cases:
                cache = _cache(call)
                for attempt in range(2 if cache else 1):
                    chaos_upstream.reset()
                    chaos_upstream.enqueue(Fault(content=NUL_TEXT))
                    outcome = await send(client, call, 0)
                    answered.append(outcome)
                    if outcome.status != 200 or outcome.content != NUL_TEXT:
                        problems["provider:answer_intact"].append(
                            f"{call.kind} cache={cache} #{attempt + 1}: {outcome.status} "
                            f"{outcome.error_code or outcome.error} content={outcome.content!r}"
                            + (f" stream_end={outcome.stream_end}" if outcome.stream_end else "")
                        )
            error_body = {"error": {"message": "bad\u0000request", "type": "invalid_request_error"}}
            for call in cases:
                chaos_upstream.reset()
                chaos_upstream.enqueue(Fault(status=400, body=error_body))
                # A fresh prompt, so that no cached answer hides the provider.
                call = _fresh(call)
                outcome = await send(client, call, 0)
                answered.append(outcome)
                if outcome.status != 502:
                    problems["provider:error_status"].append(
                        f"{call.kind} cache={_cache(call)}: "
                        f"{outcome.status} {outcome.error_code or outcome.error}"
                    )

    asyncio.run(provider_side())
    verdict_outcomes += answered
    verdict = Verdict("test_nul_everywhere", verdict_outcomes)
    for label, found in problems.items():
        verdict.check(label, found)
    verdict.settle_and_check(
        {
            "d:one_row_each": lambda: row_violations(answered),
            **invariants(server),
        },
        timeout=5,
    )
    verdict.figures["server_log"] = server.log_problems()
    verdict.report()


def _fresh(call: Call) -> Call:
    body = dict(call.json)
    if call.kind == "execute":
        body["prompt"] = body["prompt"] + " (error)"
    else:
        body["messages"] = [_user(body["messages"][-1]["content"] + " (error)")]
    return Call(call.kind, call.session, body, call.headers)
