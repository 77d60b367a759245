"""Explanations of parameter changes: template by default, LLM-written when asked."""

import pytest

from aura_orchestrator.simulator import Fault
from tests.optimization.helpers import EXPLAIN

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

BASE = {
    "temperature": 0.7,
    "top_p": 0.9,
    "max_tokens": 2000,
    "timeout_seconds": 60,
    "max_retries": 2,
}
ADJUSTED = {**BASE, "temperature": 0.5, "max_tokens": 1500, "timeout_seconds": 25}


async def test_template_explains_each_changed_parameter_with_cost_latency_output(asgi_client):
    """Three changes, three lines; unchanged parameters are not mentioned."""
    response = await asgi_client.post(
        EXPLAIN, json={"base": BASE, "adjusted": ADJUSTED, "reason": "cost constraints"}
    )
    body = response.json()
    assert response.status_code == 200, body
    assert body["source"] == "template"
    text = body["explanation"]
    assert text.startswith("Adjusted for cost constraints.")
    assert "- max_tokens 2000 → 1500 (-25%): cost: worst-case output cost" in text
    assert "fall by 25%" in text and "cut off" in text
    assert "temperature 0.7 → 0.5" in text and "more focused" in text
    assert "abandoned after 25 s instead of 60 s" in text
    assert "top_p" not in text and "max_retries" not in text
    assert [c["parameter"] for c in body["changes"]] == [
        "temperature",
        "max_tokens",
        "timeout_seconds",
    ]
    assert {"cost", "latency", "output"} <= body["changes"][0].keys()


async def test_the_preset_is_the_base_when_only_an_operation_type_is_given(asgi_client):
    """`operation_type` alone: the effective preset is compared with `adjusted`."""
    response = await asgi_client.post(
        EXPLAIN, json={"operation_type": "ScriptRefinement", "adjusted": {"max_retries": 4}}
    )
    body = response.json()
    assert response.status_code == 200, body
    assert body["changes"] == [
        {
            "parameter": "max_retries",
            "base": 2,
            "adjusted": 4,
            "cost": body["changes"][0]["cost"],
            "latency": "the worst case grows by one attempt and its backoff per extra retry",
            "output": "transient provider errors (429, 5xx, timeouts) fail the operation less "
            "often",
        }
    ]


async def test_nothing_changed_says_so(asgi_client):
    response = await asgi_client.post(EXPLAIN, json={"base": BASE, "adjusted": BASE})
    assert response.json()["explanation"].startswith("No parameter differs")


async def test_llm_written_explanation_through_the_pipeline(asgi_client, provider, fake_upstream):
    """use_llm: the provider's prose is the explanation; the structured changes remain."""
    fake_upstream.enqueue(Fault(content="Cutting max_tokens saves a quarter of the cost."))
    response = await asgi_client.post(
        EXPLAIN, json={"base": BASE, "adjusted": ADJUSTED, "reason": "cost", "use_llm": True}
    )
    body = response.json()
    assert body["source"] == "llm"
    assert body["explanation"] == "Cutting max_tokens saves a quarter of the cost."
    assert len(body["changes"]) == 3
    assert "max_tokens 2000 → 1500" in fake_upstream.requests[-1]["messages"][-1]["content"]


async def test_llm_failure_falls_back_to_the_template(asgi_client, provider, fake_upstream):
    fake_upstream.enqueue(*[Fault(status=503)] * 2)
    response = await asgi_client.post(
        EXPLAIN, json={"base": BASE, "adjusted": ADJUSTED, "use_llm": True}
    )
    body = response.json()
    assert body["source"] == "template"
    assert "max_tokens 2000 → 1500" in body["explanation"]
    assert "LLM-written explanation unavailable (provider_error" in body["notes"][0]
