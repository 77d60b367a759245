"""Spend budgets hold exactly, together, through a real `manage.py serve` (two workers on
PostgreSQL, one on SQLite): however the requests interleave, exactly the calls that fit
the tightest budget are admitted, a refusal names that budget, every level's ledger
equals the telemetry in its scope, nothing stays reserved; a new period starts without
a job (a killed worker's holds: tests/chaos/test_spend_worker_kill.py).

Every answer reports usage equal to its worst case, so a cap of N worst cases (and a
half) admits exactly N calls whatever the order.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.db import connection
from django.db.models import Sum

from aura_orchestrator.simulator import Fault
from budgets.models import LlmSession, SpendBudget, SpendHold, SpendShard
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, prompt_tokens

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 300
MAX_TOKENS = 40
PROMPT = "Summarise scene 4 of the tides video"


def _workers() -> int:
    return 1 if connection.vendor == "sqlite" else 2


def _worst() -> int:
    return prompt_tokens(PROMPT) + MAX_TOKENS


def _payload(session: str, *, session_cap: int | None = None, **extra) -> dict:
    payload = {
        "session_id": session,
        "operation_type": "planning",
        "prompt": PROMPT,
        "enable_cache": False,
        "custom_preset": {"max_tokens": MAX_TOKENS, "max_retries": 0},
        **extra,
    }
    if session_cap is not None:
        payload["budget_constraint"] = {"max_tokens_per_session": session_cap}
    return payload


async def _fire(url: str, key: str, payloads: list[dict]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(payloads))
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as c:
        return await asyncio.gather(*[c.post(EXECUTE, json=p) for p in payloads])


def _budget(project, **fields) -> SpendBudget:
    budget = SpendBudget(project=project, **fields)
    budget.full_clean()
    budget.save()
    return budget


def _used(budget: SpendBudget, **where) -> int:
    shards = SpendShard.objects.filter(budget=budget, **where)
    return shards.aggregate(t=Sum("tokens_used"))["t"] or 0


def _telemetry_tokens(**where) -> int:
    rows = OperationTelemetry.objects.filter(success=True, **where)
    return sum(r.tokens_in + r.tokens_out for r in rows)


def _nothing_reserved() -> None:
    assert not SpendHold.objects.exists()
    reserved = SpendShard.objects.aggregate(t=Sum("tokens_reserved"), c=Sum("cost_reserved_micros"))
    assert (reserved["t"] or 0, reserved["c"] or 0) == (0, 0)
    assert not LlmSession.objects.filter(tokens_reserved__gt=0).exists()


@pytest.mark.parametrize("tightest", ["project", "api_key", "session"])
def test_every_level_holds_exactly_whichever_is_tightest(
    tightest, live_server_factory, project, api_key, provider, fake_upstream
):
    server = live_server_factory(_workers())
    worst, admitted = _worst(), 23
    exact, loose = worst * admitted + worst // 2, worst * admitted * 3
    caps = {level: exact if level == tightest else loose for level in ("project", "api_key")}
    project_budget = _budget(project, period="month", max_tokens=caps["project"])
    key_budget = _budget(
        project, scope="api_key", api_key=api_key.api_key, period="day", max_tokens=caps["api_key"]
    )
    session_cap = exact if tightest == "session" else loose
    fake_upstream.enqueue(
        *[Fault(delay=0.02, usage=(prompt_tokens(PROMPT), MAX_TOKENS))] * REQUESTS
    )

    payloads = [_payload(f"race-{tightest}", session_cap=session_cap)] * REQUESTS
    responses = asyncio.run(_fire(server.url, api_key.raw_key, payloads))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 402}, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(200) == admitted
    scopes = {r.json()["details"]["scope"] for r in responses if r.status_code == 402}
    named = {
        "project": "project:studio",
        "api_key": "api_key:test-service",
        "session": f"session:race-{tightest}",
    }[tightest]
    assert scopes == {named}
    spent = _telemetry_tokens()
    assert spent == admitted * worst
    assert _used(project_budget) == spent <= project_budget.max_tokens
    assert _used(key_budget) == spent <= key_budget.max_tokens
    assert LlmSession.objects.get(session_id=f"race-{tightest}").tokens_used == spent
    assert OperationTelemetry.objects.count() == REQUESTS
    _nothing_reserved()
    assert fake_upstream.request_count == admitted


def test_fifty_new_end_users_at_once_each_get_the_default_budget(
    live_server_factory, project, api_key, provider, fake_upstream
):
    server = live_server_factory(_workers())
    worst = _worst()
    default = _budget(
        project, scope="default_end_user", period="day", max_tokens=worst * 2 + worst // 2
    )
    users = [f"user-{n}" for n in range(50)]
    fake_upstream.enqueue(*[Fault(usage=(prompt_tokens(PROMPT), MAX_TOKENS))] * 150)

    payloads = [_payload(f"u-{u}", end_user=u) for u in users for _ in range(3)]
    responses = asyncio.run(_fire(server.url, api_key.raw_key, payloads))

    assert sorted(r.status_code for r in responses).count(200) == 100
    for user in users:
        assert _used(default, subject=user) == 2 * worst == _telemetry_tokens(end_user=user)
    refused = [r.json()["details"]["scope"] for r in responses if r.status_code == 402]
    assert sorted(refused) == sorted(f"end_user:{u}" for u in users)
    _nothing_reserved()


def test_a_new_period_starts_without_a_job(
    live_server_factory, project, api_key, provider, fake_upstream, tmp_path
):
    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    server = live_server_factory(_workers(), AURA_CLOCK_OFFSET_FILE=str(clock))
    worst = _worst()
    budget = _budget(project, period="day", max_tokens=worst * 3 + worst // 2)
    fake_upstream.enqueue(*[Fault(usage=(prompt_tokens(PROMPT), MAX_TOKENS))] * 20)

    first = asyncio.run(_fire(server.url, api_key.raw_key, [_payload("day-1")] * 5))
    assert sorted(r.status_code for r in first) == [200] * 3 + [402] * 2
    resets_at = datetime.fromisoformat(
        next(r.json()["details"]["resets_at"] for r in first if r.status_code == 402)
    )
    now = datetime.now(UTC)
    assert timedelta(0) < resets_at - now <= timedelta(days=1)

    # Tomorrow, as far as the server's budgets can tell: the cap is whole again.
    clock.write_text(str((resets_at - now).total_seconds() + 5))
    second = asyncio.run(_fire(server.url, api_key.raw_key, [_payload("day-2")] * 5))
    assert sorted(r.status_code for r in second) == [200] * 3 + [402] * 2

    starts = sorted(SpendShard.objects.filter(budget=budget).values_list("period_start", flat=True))
    assert {s.astimezone(UTC) for s in starts} == {resets_at - timedelta(days=1), resets_at}
    assert _used(budget, period_start=resets_at - timedelta(days=1)) == 3 * worst
    assert _used(budget, period_start=resets_at) == 3 * worst
    assert _used(budget) == _telemetry_tokens()
    _nothing_reserved()
