"""Spend budgets through the pipeline, in process: which apply, what they charge, how a
refusal names them, and that every level's ledger equals the telemetry in its scope."""

import asyncio
import json
from decimal import Decimal

import pytest
from django.db.models import Sum

from aura_orchestrator.simulator import Fault
from budgets.models import SpendBudget, SpendHold, SpendShard
from budgets.spending import spend_recap
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, body, prompt_tokens

pytestmark = pytest.mark.django_db(transaction=True)

MAX_TOKENS = 50
CHAT = "/v1/chat/completions"


def _budget(project, **fields) -> SpendBudget:
    budget = SpendBudget(project=project, **{"period": "month", **fields})
    budget.full_clean()
    budget.save()
    return budget


def _ledger(budget: SpendBudget, subject: str = "") -> dict:
    return SpendShard.objects.filter(budget=budget, subject=subject).aggregate(
        tokens=Sum("tokens_used"),
        cost=Sum("cost_accrued_micros"),
        reserved=Sum("tokens_reserved"),
        operations=Sum("operation_count"),
    )


def _call(api_client, session: str, **extra):
    payload = body(
        session_id=session,
        enable_cache=False,
        custom_preset={"max_tokens": MAX_TOKENS, "max_retries": 0},
        **extra,
    )
    return api_client.post(EXECUTE, payload, format="json")


def test_a_project_token_budget_admits_what_fits_and_names_itself_when_it_refuses(
    api_client, project, provider, fake_upstream
):
    tokens_in = prompt_tokens("Plan a video about tides")
    worst = tokens_in + MAX_TOKENS
    budget = _budget(project, max_tokens=worst * 3 + worst // 2)
    fake_upstream.enqueue(*[Fault(usage=(tokens_in, MAX_TOKENS))] * 5)

    answers = [_call(api_client, f"s-{i}") for i in range(5)]

    assert [a.status_code for a in answers] == [200, 200, 200, 402, 402]
    refused = answers[3].json()
    assert refused["error_code"] == "budget_exceeded"
    assert refused["details"]["scope"] == "project:studio"
    assert refused["details"]["period"] == "month"
    assert refused["details"]["resets_at"].endswith("+00:00")
    assert "max_tokens" in refused["error_message"]
    ok = answers[2].json()["budget"]
    assert ok["scope"] == "project:studio" and ok["period"] == "month"
    assert ok["remaining_tokens"] == worst // 2  # the tightest: the project's
    ledger = _ledger(budget)
    assert (ledger["tokens"], ledger["reserved"], ledger["operations"]) == (worst * 3, 0, 3)
    assert not SpendHold.objects.exists()
    rows = OperationTelemetry.objects.filter(success=True)
    assert sum(r.tokens_in + r.tokens_out for r in rows) == ledger["tokens"]
    assert fake_upstream.request_count == 3


def test_key_end_user_and_default_budgets_apply_to_their_own_calls_only(
    api_client, project, api_key, other_api_key, provider, fake_upstream
):
    key_budget = _budget(project, scope="api_key", api_key=api_key.api_key, max_cost="1")
    alice = _budget(project, scope="end_user", end_user="alice", max_tokens=10**6)
    default = _budget(project, scope="default_end_user", max_tokens=10**6, period="day")

    assert _call(api_client, "a", end_user="alice").status_code == 200
    assert _call(api_client, "b", end_user="bob").status_code == 200
    assert _call(api_client, "c").status_code == 200

    assert _ledger(key_budget)["operations"] == 3  # every call of this key
    assert _ledger(alice)["operations"] == 1  # alice has her own: the default skips her
    assert _ledger(default, subject="bob")["operations"] == 1
    assert _ledger(default, subject="alice")["operations"] is None
    rows = OperationTelemetry.objects.order_by("started_at")
    assert [r.end_user for r in rows] == ["alice", "bob", ""]
    bob_cost = _ledger(default, subject="bob")["cost"]
    assert Decimal(bob_cost) / 10**6 == rows[1].estimated_cost


def test_a_narrowed_budget_counts_only_calls_its_model_served(
    api_client, project, provider, backup_provider, fake_upstream
):
    from aura_orchestrator.catalog.models import Provider

    backup = Provider.objects.get(name="backup")
    narrowed = _budget(project, provider=backup, max_tokens=10**6)
    fake_upstream.enqueue(Fault(status=500))  # primary fails: backup answers
    answer = _call(api_client, "fallback", providers=["primary", "backup"])
    assert answer.status_code == 200, answer.content
    assert answer.json()["telemetry"]["provider_name"] == "backup"
    served = _call(api_client, "primary-only", providers=["primary"])
    assert served.status_code == 200
    ledger = _ledger(narrowed)
    row = OperationTelemetry.objects.get(session_id="fallback")
    assert ledger["operations"] == 1
    assert ledger["tokens"] == row.tokens_in + row.tokens_out
    assert ledger["reserved"] == 0


def test_a_soft_budget_lets_calls_through_and_warns_on_the_gateway_header(
    api_client, project, provider, fake_upstream
):
    _budget(project, max_tokens=10, enforce_hard_limits=False)
    answer = api_client.post(
        CHAT,
        {"model": "sim-gpt", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
        HTTP_X_AURA_END_USER="carol",
    )
    assert answer.status_code == 200
    warning = answer["X-Aura-Budget-Warning"]
    assert "project:studio (month) max_tokens" in warning and "soft limit" in warning
    assert OperationTelemetry.objects.get().end_user == "carol"


def test_the_gateway_refusal_carries_the_budget_in_error_details(
    api_client, project, api_key, provider, fake_upstream
):
    _budget(project, scope="api_key", api_key=api_key.api_key, max_tokens=5, period="week")
    answer = api_client.post(
        CHAT, {"model": "sim-gpt", "messages": [{"role": "user", "content": "hi"}]}, format="json"
    )
    assert answer.status_code == 402
    error = answer.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["details"]["scope"] == "api_key:test-service"
    assert error["details"]["period"] == "week"
    assert fake_upstream.request_count == 0
    assert OperationTelemetry.objects.get().error_code == "budget_exceeded"


def test_a_lowered_cap_takes_back_what_the_shards_were_allotted(
    api_client, project, provider, fake_upstream
):
    budget = _budget(project, max_tokens=10**6)
    assert _call(api_client, "one").status_code == 200
    budget.max_tokens = _ledger(budget)["tokens"]  # exactly what was spent: nothing left
    budget.save()
    spend_recap(budget=budget)
    assert _call(api_client, "two").status_code == 402
    shards = SpendShard.objects.filter(budget=budget)
    assert all(s.allot_tokens == s.tokens_used + s.tokens_reserved for s in shards)


@pytest.mark.asyncio
async def test_a_call_that_crosses_a_threshold_delivers_its_alert_signed_once(
    asgi_client, project, provider, fake_upstream, receiver
):
    """Through the served application: the finish notices the crossing, the check runs
    off the request a second later, the webhook receives it once, signed."""
    from asgiref.sync import sync_to_async

    from budgets.models import AlertEndpoint, BudgetAlert
    from tests.budgets.test_alerts import SECRET

    tokens_in = prompt_tokens("Plan a video about tides")
    worst = tokens_in + MAX_TOKENS

    def setup() -> None:
        AlertEndpoint.objects.create(project=project, url=receiver.url, secret=SECRET)
        _budget(project, max_tokens=worst * 4, thresholds="50,80")

    await sync_to_async(setup)()
    fake_upstream.enqueue(*[Fault(usage=(tokens_in, MAX_TOKENS))] * 3)
    payload = body(
        session_id="alerts",
        enable_cache=False,
        custom_preset={"max_tokens": MAX_TOKENS, "max_retries": 0},
    )
    for _ in range(3):  # 25 %, 50 % (crossed), 75 %
        assert (await asgi_client.post(EXECUTE, json=payload)).status_code == 200
    for _ in range(50):  # the check runs a second after the notice, off the request
        if receiver.hits:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # nothing more comes
    assert len(receiver.hits) == 1 and receiver.hits[0].signed
    sent = json.loads(receiver.hits[0].body)
    assert (sent["threshold"], sent["scope"], sent["unit"]) == (50, "project:studio", "tokens")
    assert sent["used"] == worst * 3  # what was spent when the check ran: all three
    thresholds = await sync_to_async(
        lambda: list(BudgetAlert.objects.values_list("threshold", flat=True))
    )()
    assert thresholds == [50]


@pytest.mark.parametrize("value", ["", "   ", "a" * 257, "tab\there"])
def test_a_bad_end_user_is_a_400_naming_it_on_both_doors(api_client, provider, value):
    execute = _call(api_client, "bad-user", end_user=value)
    assert execute.status_code == 400, execute.content
    assert "end_user" in execute.json()["details"]["fields"]
    chat = {"model": "sim-gpt", "messages": [{"role": "user", "content": "hi"}]}
    header = api_client.post(CHAT, chat, format="json", HTTP_X_AURA_END_USER=value)
    assert header.status_code == 400, header.content
    assert header.json()["error"]["param"] == "X-Aura-End-User"
    if value:  # OpenAI's `user` may be empty: then no end user
        answer = api_client.post(CHAT, {**chat, "user": value}, format="json")
        assert answer.status_code == 400, answer.content
        assert answer.json()["error"]["param"] == "user"
    assert not OperationTelemetry.objects.exists()
