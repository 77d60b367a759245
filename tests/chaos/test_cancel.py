"""A client that gives up during a slow execute: the operation still leaves exactly one
telemetry row (client_disconnected) and nothing reserved, whether Django served it (the
key's first request: a memo miss) or the fast front did."""

import asyncio

import pytest

from aura_orchestrator.simulator import Fault
from telemetry.models import OperationTelemetry
from tests.chaos.harness import (
    Call,
    Verdict,
    client_for,
    invariants,
    send,
    settle,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _execute(session: str) -> dict:
    return {
        "session_id": session,
        "operation_type": "planning",
        "prompt": f"Plan a long video for {session}",
        "enable_cache": False,
        "custom_preset": {"max_tokens": 40, "max_retries": 0},
        "budget_constraint": {"max_tokens_per_session": 100_000, "enforce_hard_limits": True},
    }


def test_cancelled_execute_leaves_a_row(chaos_server, api_key, chaos_provider, chaos_upstream):
    # DEBUG: the front logs each request it hands to Django, which tells the paths apart.
    server = chaos_server(1, LOG_LEVEL="DEBUG")
    outcomes = []
    delegated: list[int] = []

    def count_delegated() -> int:
        return server.live.log_tail(10**8).count("/api/v1/operations/execute delegated")

    async def scenario() -> None:
        # Each slow call is abandoned by its client after 1 s (a read timeout closes the
        # connection), while the provider takes 4 s.
        async with client_for(server.url, api_key.raw_key, timeout=1, connections=1) as impatient:
            chaos_upstream.enqueue(Fault(delay=4))
            call = Call("execute", "cancel-django", _execute("cancel-django"))
            outcomes.append(await send(impatient, call, 0))
        delegated.append(count_delegated())
        async with client_for(server.url, api_key.raw_key, timeout=10, connections=1) as patient:
            warm = await send(patient, Call("execute", "cancel-warm", _execute("cancel-warm")), 0)
            assert warm.status == 200, warm
        delegated.append(count_delegated())
        async with client_for(server.url, api_key.raw_key, timeout=1, connections=1) as impatient:
            chaos_upstream.enqueue(Fault(delay=4))
            call = Call("execute", "cancel-front", _execute("cancel-front"))
            outcomes.append(await send(impatient, call, 0))
        await asyncio.sleep(0.5)
        delegated.append(count_delegated())

    asyncio.run(scenario())
    assert all(o.error == "ReadTimeout" for o in outcomes), outcomes
    verdict = Verdict("test_cancelled_execute_leaves_a_row", outcomes)
    verdict.figures["delegated_to_django"] = delegated
    verdict.check(
        "setup:first_by_django_last_by_the_front",
        [] if delegated[0] >= 1 and delegated[2] == delegated[1] else [f"delegations {delegated}"],
    )

    def rows_of(session: str) -> list[str]:
        rows = list(OperationTelemetry.objects.filter(session_id=session))
        codes = [r.error_code for r in rows]
        return [] if codes == ["client_disconnected"] else [f"{session}: rows {codes}"]

    for path, session in (("django", "cancel-django"), ("front", "cancel-front")):
        found = settle(lambda s=session: rows_of(s), timeout=6)
        verdict.check(f"{path}:one_client_disconnected_row", found)
    verdict.settle_and_check(
        invariants(server),
        timeout=3,
    )
    verdict.figures["server_log"] = server.log_problems()
    verdict.report()
