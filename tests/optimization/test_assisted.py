"""LLM-assisted suggestions against the fake upstream: good, out of range, garbage."""

import json

import pytest

from aura_orchestrator.optimization.fitting import worst_case_latency
from aura_orchestrator.simulator import Fault
from telemetry.models import OperationTelemetry
from tests.optimization.helpers import OPTIMIZE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

GOOD = {
    "temperature": 0.5,
    "top_p": 0.85,
    "max_tokens": 1200,
    "timeout_seconds": 40,
    "max_retries": 1,
    "rationale": "Short social plans need fewer tokens.",
    "confidence": 0.7,
}


async def optimize(client, **body):
    response = await client.post(
        OPTIMIZE,
        json={"operation_type": "planning", "use_llm": True, "use_case": "social media", **body},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_good_answer_is_used_and_the_call_runs_on_its_own_session(
    asgi_client, provider, fake_upstream
):
    """The LLM's values come back as source `llm`; its call went through the pipeline on
    the optimizer's session and is visible in telemetry as the optimizer's."""
    fake_upstream.enqueue(Fault(content=json.dumps(GOOD)))
    body = await optimize(asgi_client, constraints={"max_tokens": 1500})
    assert body["source"] == "llm"
    assert [body[k] for k in ("temperature", "top_p", "max_tokens")] == [0.5, 0.85, 1200]
    assert (body["timeout_seconds"], body["max_retries"]) == (40.0, 1)
    assert body["confidence"] == 0.7
    assert "LLM suggestion from primary/sim-gpt: Short social plans" in body["rationale"]
    sent = fake_upstream.requests[-1]
    assert sent["response_format"]["type"] == "json_schema"
    assert "social media" in sent["messages"][-1]["content"]
    row = await OperationTelemetry.objects.aget()
    assert row.source == "optimizer" and row.session_id.startswith("optimizer-")
    assert row.operation_type == "completion"


async def test_an_out_of_range_answer_is_clamped_into_safe_ranges_and_constraints(
    asgi_client, provider, fake_upstream
):
    """temperature 3.7, top_p 2, 10^7 tokens, 9999 s, 50 retries: clamped to the safe
    ranges, then to max_tokens 1500 and 60 s of latency; the notes say what was clamped."""
    wild = {
        "temperature": 3.7,
        "top_p": 2,
        "max_tokens": 10_000_000,
        "timeout_seconds": 9999,
        "max_retries": 50,
        "confidence": 5,
    }
    fake_upstream.enqueue(Fault(content=json.dumps(wild)))
    body = await optimize(asgi_client, constraints={"max_tokens": 1500, "max_latency_seconds": 60})
    assert body["source"] == "llm"
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (1.5, 1.0, 1500)
    assert body["max_retries"] <= 5
    worst = worst_case_latency(
        timeout_seconds=body["timeout_seconds"], max_retries=body["max_retries"], routes=1
    )
    assert worst <= 60 and body["worst_case_latency_seconds"] <= 60
    assert "temperature 3.7 → 1.5: outside the safe range" in body["rationale"]
    assert "max_retries 50 → 5" in body["rationale"]
    assert body["confidence"] < 0.85  # capped, and lowered for the clamping


@pytest.mark.parametrize(
    "answers",
    [
        ["this is not json", "still not json"],
        [json.dumps({"temperature": "warm", "top_p": 1}), json.dumps([1, 2, 3])],
    ],
    ids=["prose", "wrong-shape"],
)
async def test_garbage_falls_back_to_the_rules_with_a_note(
    asgi_client, provider, fake_upstream, answers
):
    """Unusable twice (the pipeline retries once with the schema error): rules' values."""
    fake_upstream.enqueue(*(Fault(content=a) for a in answers))
    body = await optimize(asgi_client, constraints={"max_tokens": 1500})
    assert body["source"] == "rules"
    assert body["max_tokens"] == 1500 and body["temperature"] == 0.7
    assert any("LLM-assisted suggestion unusable" in n for n in body["notes"])
    assert "schema_validation_failed" in body["rationale"]


async def test_non_finite_numbers_fall_back_to_the_rules(asgi_client, provider, fake_upstream):
    """NaN passes JSON parsing and the schema's `number`, but is not a usable value."""
    content = json.dumps({**GOOD, "temperature": float("nan")})
    fake_upstream.enqueue(Fault(content=content))
    body = await optimize(asgi_client)
    assert body["source"] == "rules"
    assert "`temperature` is not a finite number" in body["rationale"]


async def test_a_failing_provider_falls_back_to_the_rules(asgi_client, provider, fake_upstream):
    """Provider errors on every attempt: rules' values and the error code in the note."""
    fake_upstream.enqueue(*[Fault(status=500)] * 2)
    body = await optimize(asgi_client)
    assert body["source"] == "rules"
    assert "provider_error" in body["rationale"]
