"""The execute endpoint's contract: shapes, status codes and error codes, over HTTP."""

from decimal import Decimal

import pytest

from aura_orchestrator.catalog.models import LlmModel
from aura_orchestrator.simulator import Fault
from budgets.models import BudgetConstraint, LlmSession
from presets.models import OperationPreset
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, body, micros, prompt_tokens

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_success_has_the_contract_shape(asgi_client, provider, fake_upstream):
    """A plain request returns content, telemetry and the session's budget, all snake_case."""
    fake_upstream.enqueue(Fault(usage=(120, 40)))
    response = await asgi_client.post(
        EXECUTE,
        json=body(system_prompt="You are a video planning assistant", operation_type="Planning"),
    )
    data = response.json()
    assert response.status_code == 200, data
    assert set(data) >= {
        "operation_id",
        "success",
        "content",
        "was_cached",
        "error_code",
        "error_message",
        "telemetry",
        "budget",
    }
    assert data["success"] is True and data["was_cached"] is False
    assert data["error_code"] is None and data["error_message"] is None
    t = data["telemetry"]
    assert t["operation_id"] == data["operation_id"]
    assert t["operation_type"] == "planning"
    assert (t["provider_name"], t["model_name"]) == ("primary", "sim-gpt")
    assert (t["tokens_in"], t["tokens_out"], t["total_tokens"]) == (120, 40, 160)
    assert t["estimated_cost"] == "0.000200"  # 120 x $1/M + 40 x $2/M
    assert (t["temperature"], t["top_p"], t["max_tokens"]) == (0.7, 0.9, 2000)
    assert t["retry_count"] == 0 and t["cache_hit"] is False and t["success"] is True
    b = data["budget"]
    assert b["session_id"] == "video-1"
    assert (b["total_tokens_used"], b["total_cost_accrued"], b["operation_count"]) == (
        160,
        "0.000200",
        1,
    )
    assert b["warnings"] == []
    sent = fake_upstream.requests[-1]
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You are a video planning assistant",
    }
    assert sent["temperature"] == 0.7 and sent["max_tokens"] == 2000
    assert fake_upstream.request_headers[-1]["authorization"] == "Bearer sk-test-primary-secret"
    assert "sk-test-primary-secret" not in response.text


async def test_custom_preset_overrides_the_stored_preset(asgi_client, provider, fake_upstream):
    await OperationPreset.objects.filter(operation_type="planning").aupdate(temperature=0.1)
    await OperationPreset.objects.aupdate_or_create(
        operation_type="planning",
        defaults=dict(
            temperature=0.1,
            top_p=0.8,
            max_tokens=900,
            timeout_seconds=30,
            max_retries=1,
            cache_enabled=False,
            cache_ttl_seconds=60,
        ),
    )
    response = await asgi_client.post(
        EXECUTE, json=body(custom_preset={"temperature": 0.5, "max_tokens": 300})
    )
    t = response.json()["telemetry"]
    assert (t["temperature"], t["top_p"], t["max_tokens"]) == (0.5, 0.8, 300)
    assert fake_upstream.requests[-1]["max_tokens"] == 300


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"operation_type": "planning", "prompt": "x"}, "session_id"),
        ({"session_id": "s", "prompt": "x"}, "operation_type"),
        ({"session_id": "s", "operation_type": "planning"}, "prompt"),
        (body(operation_type="dancing"), "operation_type"),
        (body(custom_preset={"temperature": 3}), "custom_preset"),
        (body(custom_preset={"max_tokens": 0}), "custom_preset"),
        (body(response_schema={"type": "no-such-type"}), "response_schema"),
        (body(response_schema=[1, 2]), "response_schema"),
        (body(budget="x", budget_constraint={"max_tokens_per_session": 5}), "budget"),
        (body(budget_constraint={"max_cost_per_session": "-1"}), "budget_constraint"),
        (body(session_id="   "), "session_id"),
        (body(providers=[]), "providers"),
        (body(cache_ttl_seconds=0), "cache_ttl_seconds"),
        (body(prompt=""), "prompt"),
        (body(enable_cache="maybe"), "enable_cache"),
    ],
)
async def test_invalid_input_is_a_400_in_the_execute_shape(
    asgi_client, provider, fake_upstream, payload, field
):
    response = await asgi_client.post(EXECUTE, json=payload)
    data = response.json()
    assert response.status_code == 400, data
    assert data["success"] is False and data["error_code"] == "invalid_request"
    assert field in data["error_message"]
    assert data["content"] is None and data["telemetry"] is None
    assert fake_upstream.request_count == 0


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[]", b"null", b'"text"', b"\xff\xfe", b'{"session_id": {"a": 1}}'],
)
async def test_malformed_bodies_are_400_never_500(asgi_client, provider, raw):
    response = await asgi_client.post(
        EXECUTE, content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "invalid_request"


async def test_unknown_provider_or_model_is_refused_before_any_call(
    asgi_client, provider, fake_upstream
):
    response = await asgi_client.post(EXECUTE, json=body(providers=["nope"]))
    assert response.status_code == 400
    assert "nope" in response.json()["error_message"]
    response = await asgi_client.post(EXECUTE, json=body(model="gpt-unknown"))
    assert response.status_code == 404
    assert response.json()["error_code"] == "model_not_found"
    assert fake_upstream.request_count == 0


async def test_missing_or_bad_key_is_401(asgi_client, provider):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer aura_nope_nope"}):
        response = await asgi_client.post(EXECUTE, json=body(), headers=headers)
        assert response.status_code == 401
        assert response.json()["error_code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_hard_session_cap_refuses_with_402_and_records_it(
    asgi_client, provider, fake_upstream
):
    """The worst case (prompt + max_tokens at the model's price) must fit the cap."""
    worst = prompt_tokens("Plan a video about tides") + 100 * 2  # 100 output tokens at $2/M
    cap = micros(worst - 1)
    response = await asgi_client.post(
        EXECUTE,
        json=body(
            custom_preset={"max_tokens": 100},
            budget_constraint={"max_cost_per_session": str(cap), "enforce_hard_limits": True},
        ),
    )
    data = response.json()
    assert response.status_code == 402, data
    assert data["error_code"] == "budget_exceeded"
    assert data["error_message"].startswith("Budget exceeded")
    assert "max_cost_per_session" in data["error_message"]
    assert fake_upstream.request_count == 0
    row = await OperationTelemetry.objects.aget(operation_id=data["operation_id"])
    assert row.error_code == "budget_exceeded" and not row.success
    session = await LlmSession.objects.aget(session_id="video-1")
    assert session.tokens_reserved == 0 and session.cost_accrued_micros == 0


async def test_per_operation_caps_hard_and_soft(asgi_client, provider, fake_upstream):
    hard = await asgi_client.post(
        EXECUTE, json=body(budget_constraint={"max_tokens_per_operation": 50})
    )
    assert hard.status_code == 402
    assert "max_tokens_per_operation" in hard.json()["error_message"]
    soft = await asgi_client.post(
        EXECUTE,
        json=body(
            session_id="soft",
            budget_constraint={"max_tokens_per_operation": 50, "enforce_hard_limits": False},
        ),
    )
    data = soft.json()
    assert soft.status_code == 200, data
    [warning] = data["budget"]["warnings"]
    assert warning.startswith("max_tokens_per_operation") and "soft limit" in warning
    excess = prompt_tokens("Plan a video about tides") + 2000 - 50
    assert f"by {excess}" in warning


async def test_soft_session_cap_lets_calls_through_with_warnings(
    asgi_client, provider, fake_upstream
):
    constraint = {"max_tokens_per_session": 10, "enforce_hard_limits": False}
    first = await asgi_client.post(EXECUTE, json=body(budget_constraint=constraint))
    assert first.status_code == 200
    assert any("max_tokens_per_session" in w for w in first.json()["budget"]["warnings"])
    second = await asgi_client.post(EXECUTE, json=body())  # the session keeps its constraint
    assert second.status_code == 200
    assert any("max_tokens_per_session" in w for w in second.json()["budget"]["warnings"])


async def test_named_budget_constraint_applies_and_sticks_to_the_session(
    asgi_client, provider, fake_upstream
):
    await BudgetConstraint.objects.acreate(name="tiny", max_tokens_per_session=10)
    response = await asgi_client.post(EXECUTE, json=body(budget="tiny"))
    assert response.status_code == 402
    response = await asgi_client.post(EXECUTE, json=body())
    assert response.status_code == 402, "the session keeps the constraint it was first given"
    response = await asgi_client.post(
        EXECUTE, json=body(budget_constraint={"max_tokens_per_session": 100000})
    )
    assert response.status_code == 200, "a later request that names another replaces it"
    response = await asgi_client.post(EXECUTE, json=body(budget="missing"))
    assert response.status_code == 400 and "missing" in response.json()["error_message"]


async def test_unpriced_model_cannot_run_under_a_hard_cost_cap(
    asgi_client, provider, fake_upstream
):
    await LlmModel.objects.filter(name="sim-gpt").aupdate(input_price=None, output_price=None)
    refused = await asgi_client.post(
        EXECUTE, json=body(budget_constraint={"max_cost_per_session": "5.00"})
    )
    assert refused.status_code == 402
    assert "no known price" in refused.json()["error_message"]
    uncapped = await asgi_client.post(EXECUTE, json=body(session_id="free"))
    assert uncapped.status_code == 200
    assert uncapped.json()["telemetry"]["estimated_cost"] == "0.000000"
    assert fake_upstream.request_count == 1


async def test_schema_validation_retries_once_then_422(asgi_client, provider, fake_upstream):
    schema = {
        "type": "object",
        "properties": {"scenes": {"type": "integer"}},
        "required": ["scenes"],
    }
    fake_upstream.enqueue(
        Fault(content="not json at all", usage=(10, 10)),
        Fault(content='{"scenes": "three"}', usage=(30, 10)),
    )
    response = await asgi_client.post(EXECUTE, json=body(response_schema=schema))
    data = response.json()
    assert response.status_code == 422, data
    assert data["error_code"] == "schema_validation_failed"
    assert "scenes" in data["error_message"]
    assert fake_upstream.request_count == 2
    correction = fake_upstream.requests[-1]["messages"][-1]["content"]
    assert "did not match the required JSON schema" in correction
    # Both answers are charged to the session: (10 + 2·10) + (30 + 2·10) micro-dollars.
    session = await LlmSession.objects.aget(session_id="video-1")
    assert session.cost_accrued_micros == 80 and session.tokens_used == 60
    assert session.tokens_reserved == 0 and session.cost_reserved_micros == 0
    row = await OperationTelemetry.objects.aget(operation_id=data["operation_id"])
    assert row.estimated_cost == Decimal("0.000080") and row.retry_count == 1


async def test_schema_validation_recovers_on_the_corrective_retry(
    asgi_client, provider, fake_upstream
):
    schema = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}
    fake_upstream.enqueue(Fault(content="```json\n[1]\n```"), Fault(content='{"title": "Tides"}'))
    response = await asgi_client.post(EXECUTE, json=body(response_schema=schema))
    assert response.status_code == 200, response.json()
    assert response.json()["content"] == '{"title": "Tides"}'
    assert response.json()["budget"]["operation_count"] == 1


async def test_schema_answer_that_validates_first_time(asgi_client, provider, fake_upstream):
    schema = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}
    response = await asgi_client.post(EXECUTE, json=body(response_schema=schema))
    assert response.status_code == 200, response.json()
    assert fake_upstream.request_count == 1
    sent = fake_upstream.requests[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == schema
