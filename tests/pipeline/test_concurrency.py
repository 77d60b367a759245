"""Hard budgets hold exactly under concurrency, across worker processes.

200 requests hit one session at once through a real `manage.py serve` (two uvicorn
workers on PostgreSQL, one on SQLite). Every answer reports usage equal to its worst
case, so the cap admits exactly floor(cap / cost) of them whatever the interleaving.
"""

import asyncio

import httpx
import pytest
from django.db import connection

from aura_orchestrator.simulator import Fault
from budgets.models import BudgetReservation, LlmSession
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, body, micros, prompt_tokens

REQUESTS = 200
MAX_TOKENS = 100


@pytest.mark.django_db(transaction=True)
def test_hard_cost_cap_admits_exactly_what_fits(
    live_server_factory, api_key, provider, fake_upstream
):
    workers = 1 if connection.vendor == "sqlite" else 2
    server = live_server_factory(workers)
    prompt = "Summarise scene 4 of the tides video"
    tokens_in = prompt_tokens(prompt)
    per_call = tokens_in * 1 + MAX_TOKENS * 2  # micro-dollars at $1/M in, $2/M out
    admitted = 37
    cap = micros(per_call * admitted + per_call // 2)  # room for 37.5 calls
    # Each answer takes a moment (so calls overlap) and reports its full worst case.
    fake_upstream.enqueue(*[Fault(delay=0.05, usage=(tokens_in, MAX_TOKENS))] * REQUESTS)
    payload = body(
        session_id="race",
        prompt=prompt,
        enable_cache=False,
        custom_preset={"max_tokens": MAX_TOKENS, "max_retries": 0},
        budget_constraint={"max_cost_per_session": str(cap), "enforce_hard_limits": True},
    )

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=REQUESTS)
        headers = {"Authorization": f"Bearer {api_key.raw_key}"}
        async with httpx.AsyncClient(
            base_url=server.url, headers=headers, limits=limits, timeout=120
        ) as client:
            return await asyncio.gather(
                *[client.post(EXECUTE, json=payload) for _ in range(REQUESTS)]
            )

    responses = asyncio.run(fire())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 402}, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(200) == admitted
    refusals = [r.json() for r in responses if r.status_code == 402]
    assert all(r["error_message"].startswith("Budget exceeded") for r in refusals)

    ledger = LlmSession.objects.get(session_id="race")
    assert ledger.cost_accrued_micros == per_call * admitted
    assert ledger.cost_accrued_micros <= ledger.max_cost_per_session_micros
    assert (ledger.tokens_reserved, ledger.cost_reserved_micros) == (0, 0)
    assert ledger.operation_count == admitted
    assert not BudgetReservation.objects.exists()
    rows = OperationTelemetry.objects.filter(session_id="race")
    assert rows.count() == REQUESTS
    assert sum(r.estimated_cost for r in rows) == ledger.cost_accrued
    assert rows.filter(success=True).count() == admitted
    assert rows.filter(error_code="budget_exceeded").count() == REQUESTS - admitted
    assert fake_upstream.request_count == admitted
