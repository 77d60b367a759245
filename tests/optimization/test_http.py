"""Through HTTP: answers of the three endpoints, and bad input → 4xx with a machine code."""

import pytest

from tests.optimization.helpers import ESTIMATE, EXPLAIN, OPTIMIZE

pytestmark = pytest.mark.django_db
# Async views run their ORM work in other threads: tests that need rows made by the test
# (the provider) use a real transaction; validation failures need only the API key.
THREADED_DB = pytest.mark.django_db(transaction=True)


@THREADED_DB
def test_optimize_answers_the_contracts_fields(api_client, provider):
    response = api_client.post(
        OPTIMIZE,
        {
            "operation_type": "Planning",
            "constraints": {
                "max_tokens": 1500,
                "max_cost": "0.25",
                "max_latency_seconds": 30,
                "prioritize_quality": True,
            },
            "use_case": "Quick video planning for social media",
        },
        format="json",
    )
    body = response.json()
    assert response.status_code == 200, body
    contract = {"temperature", "top_p", "max_tokens", "timeout_seconds", "max_retries"}
    assert contract | {"rationale", "confidence", "source"} <= body.keys()
    assert body["source"] == "rules" and body["max_tokens"] == 1500
    assert body["worst_case_latency_seconds"] <= 30
    assert body["worst_case_cost"] == "0.004000"  # 1000 in x $1/M + 1500 out x $2/M


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (OPTIMIZE, {"operation_type": "teleportation"}, "operation_type"),
        (OPTIMIZE, {}, "operation_type"),
        (
            OPTIMIZE,
            {"operation_type": "planning", "constraints": {"max_tokens": 0}},
            "constraints.max_tokens",
        ),
        (
            OPTIMIZE,
            {"operation_type": "planning", "constraints": {"max_cost": "-1"}},
            "constraints.max_cost",
        ),
        (
            OPTIMIZE,
            {"operation_type": "planning", "constraints": {"max_cost": "abc"}},
            "constraints.max_cost",
        ),
        (
            OPTIMIZE,
            {"operation_type": "planning", "constraints": {"max_latency_seconds": 0.1}},
            "constraints.max_latency_seconds",
        ),
        (OPTIMIZE, {"operation_type": "planning", "constraints": [1]}, "constraints"),
        (OPTIMIZE, {"operation_type": "planning", "use_llm": "maybe"}, "use_llm"),
        (OPTIMIZE, {"operation_type": ["planning"]}, "operation_type"),
        (EXPLAIN, {"adjusted": {"max_tokens": 5}}, "base"),
        (
            EXPLAIN,
            {"base": {"temperature": 0.2}, "adjusted": {"temperature": 9}},
            "adjusted.temperature",
        ),
        (EXPLAIN, {"base": "fast", "adjusted": {}}, "base"),
        (ESTIMATE, {"operation_type": "planning"}, "prompt"),
        (ESTIMATE, {"operation_type": "nope", "prompt": "x"}, "operation_type"),
        (ESTIMATE, {"operation_type": "planning", "prompt": "x", "providers": []}, "providers"),
        (
            ESTIMATE,
            {"operation_type": "planning", "prompt": "x", "custom_preset": {"max_tokens": -3}},
            "custom_preset.max_tokens",
        ),
    ],
)
def test_bad_input_is_a_400_with_field_details(api_client, provider, path, body, field):
    response = api_client.post(path, body, format="json")
    answer = response.json()
    assert response.status_code == 400, answer
    assert answer["error_code"] == "invalid_request"
    assert field in answer["details"]["fields"]


@pytest.mark.parametrize("path", [OPTIMIZE, EXPLAIN, ESTIMATE])
def test_malformed_json_is_a_400(api_client, path):
    response = api_client.generic("POST", path, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error_code"] == "invalid_request"


@pytest.mark.parametrize("path", [OPTIMIZE, EXPLAIN, ESTIMATE])
def test_a_key_is_required(client, path):
    response = client.post(path, {}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error_code"] == "unauthorized"


def test_unknown_provider_is_a_400(api_client, provider):
    response = api_client.post(
        OPTIMIZE, {"operation_type": "planning", "provider": "nobody"}, format="json"
    )
    assert response.status_code == 400
    assert "nobody" in response.json()["error_message"]


def test_unknown_model_in_an_estimate_is_a_404(api_client, provider):
    response = api_client.post(
        ESTIMATE, {"operation_type": "planning", "prompt": "x", "model": "gpt-9"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error_code"] == "model_not_found"


@THREADED_DB
def test_unsatisfiable_constraints_are_a_422_saying_why(api_client, provider):
    response = api_client.post(
        OPTIMIZE,
        {"operation_type": "planning", "constraints": {"max_cost": "0.0001"}},
        format="json",
    )
    body = response.json()
    assert response.status_code == 422, body
    assert body["error_code"] == "constraints_unsatisfiable"
    assert body["error_message"].startswith("max_cost $0.000100 is below the cost of a typical")


def test_the_endpoints_are_in_the_openapi_schema(api_client):
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    paths = response.json()["paths"]
    assert {"/api/v1/optimize", "/api/v1/optimize/explain", "/api/v1/estimate"} <= paths.keys()
    assert "422" in paths["/api/v1/optimize"]["post"]["responses"]
