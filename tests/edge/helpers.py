"""Hostile bodies and the checks every refusal must pass: nothing charged, nothing kept."""

import json

from budgets.models import BudgetReservation, LlmSession
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE

CHAT = "/v1/chat/completions"
JSON = {"Content-Type": "application/json"}
# The fake upstream answers exactly this, which every schema below accepts.
SCRIPTED = '[[content:{"n": 1}]]'


def raw(body: object) -> bytes:
    """JSON with every non-ASCII character escaped: lone surrogates go out as `\\ud800`
    (httpx's own encoder refuses them)."""
    return json.dumps(body, ensure_ascii=True).encode()


def nested(depth: int, *, leaf: object = None, key: str | None = None) -> object:
    """`depth` levels of arrays (or of objects under `key`) around `leaf`."""
    value = leaf
    for _ in range(depth):
        value = {key: value} if key else [value]
    return value


def nested_text(depth: int) -> str:
    """The same as text, for depths no Python encoder reaches."""
    return "[" * depth + "1" + "]" * depth


def schema_chain(levels: int) -> dict:
    """A valid schema of `levels` objects: `items` inside `items`, the keyword that costs
    jsonschema the most stack per level; it accepts any document that is not an array."""
    schema: dict = {}
    for _ in range(levels - 1):
        schema = {"items": schema}
    return schema


def execute_body(session_id: str, **extra) -> dict:
    return {"session_id": session_id, "operation_type": "planning", "prompt": "Plan", **extra}


def chat_body(**extra) -> dict:
    return {"model": "sim-gpt", "messages": [{"role": "user", "content": "Hello"}], **extra}


async def rows() -> tuple[int, int, int]:
    return (
        await OperationTelemetry.objects.acount(),
        await LlmSession.objects.acount(),
        await BudgetReservation.objects.acount(),
    )


def refused_field(response, path: str) -> str:
    """The field a 400 names, in the endpoint's own error shape."""
    assert response.status_code == 400, response.text
    body = response.json()
    if path == CHAT:
        assert body["error"]["code"] == "invalid_request"
        assert body["error"]["type"] == "invalid_request_error"
        return body["error"]["param"]
    assert path == EXECUTE
    assert (body["success"], body["error_code"]) == (False, "invalid_request")
    assert body["operation_id"] is None and body["telemetry"] is None
    (field,) = body["details"]["fields"]  # as DRF's validation errors name theirs
    return field
