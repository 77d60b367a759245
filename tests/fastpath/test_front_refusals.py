"""A body the one parser refuses is answered by the fast front itself (Django is not
called), byte for byte as Django's view answers the same body: status, body, headers."""

import json

import pytest

from tests.fastpath import test_front
from tests.fastpath.test_front import CHAT, header_names
from tests.pipeline.helpers import EXECUTE, body

django_calls = test_front.django_calls  # the fixture: the requests handed to Django

pytestmark = pytest.mark.django_db(transaction=True)


def chat(**extra) -> dict:
    return {"model": "sim-gpt", "messages": [{"role": "user", "content": "Hi"}], **extra}


BAD = [
    # (what, path, raw body)
    ("not JSON", EXECUTE, b"{nope"),
    ("a list", EXECUTE, b"[1]"),
    ("NUL in the prompt", EXECUTE, json.dumps(body(prompt="a\x00")).encode()),
    ("no prompt", EXECUTE, json.dumps({"session_id": "s", "operation_type": "planning"}).encode()),
    ("unknown operation type", EXECUTE, json.dumps(body(operation_type="nope")).encode()),
    ("number as prompt", EXECUTE, json.dumps(body(prompt=42)).encode()),
    ("string as boolean", EXECUTE, json.dumps(body(enable_cache="true")).encode()),
    ("float as integer", EXECUTE, json.dumps(body(custom_preset={"max_retries": 5.0})).encode()),
    ("unknown field", EXECUTE, json.dumps(body(client_tag="x")).encode()),
    (
        "several at once",
        EXECUTE,
        json.dumps(
            body(
                prompt=42,
                enable_cache="true",
                budget_constraint={"max_cost_per_session": "-1", "max_tokens_per_session": "9"},
                providers=["ok", "not ok"],
                colour="blue",
            )
        ).encode(),
    ),
    ("both budgets", EXECUTE, json.dumps(body(budget="b", budget_constraint={})).encode()),
    ("bad schema", EXECUTE, json.dumps(body(response_schema={"type": 5})).encode()),
    (
        "prompt and messages",
        EXECUTE,
        json.dumps(body(messages=[{"role": "user", "content": "x"}])).encode(),
    ),
    (
        "a bad tool",
        EXECUTE,
        json.dumps(
            {
                "session_id": "s",
                "operation_type": "planning",
                "messages": [{"role": "user", "content": [{"type": "video"}]}],
                "tools": [{"type": "function", "function": {"name": "a b"}}],
                "tool_choice": "sometimes",
            }
        ).encode(),
    ),
    ("chat: not JSON", CHAT, b"{nope"),
    ("chat: no content", CHAT, json.dumps(chat(messages=[{"role": "user"}])).encode()),
    ("chat: float n", CHAT, json.dumps(chat(n=1.0)).encode()),
    ("chat: string seed", CHAT, json.dumps(chat(seed="7")).encode()),
    ("chat: no model", CHAT, json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode()),
]


@pytest.mark.parametrize(("what", "path", "raw"), BAD, ids=[b[0] for b in BAD])
async def test_a_refused_body_is_answered_by_the_front_exactly_as_django_answers(
    what,
    path,
    raw,
    asgi_client,
    django_client,
    django_calls,
    provider,
):
    await asgi_client.post(EXECUTE, json=body("warm"))  # the key is in the memo
    django_calls.clear()
    headers = {"Content-Type": "application/json"}
    fast = await asgi_client.post(path, content=raw, headers=headers)
    assert django_calls == [], f"{what}: the front answered itself"
    plain = await django_client.post(path, content=raw, headers=headers)
    assert fast.status_code == plain.status_code == 400, fast.text
    assert fast.content == plain.content
    assert fast.headers["content-length"] == plain.headers["content-length"]
    assert header_names(fast) == header_names(plain)


async def test_several_bad_fields_are_all_named_on_the_fast_path(
    asgi_client,
    django_calls,
    provider,
):
    await asgi_client.post(EXECUTE, json=body("warm"))
    django_calls.clear()
    answer = await asgi_client.post(
        EXECUTE, json=body("x", prompt=42, enable_cache="true", client_tag="x")
    )
    assert django_calls == []
    refused = answer.json()
    assert (answer.status_code, refused["error_code"]) == (400, "invalid_request")
    assert refused["operation_id"] is None and refused["telemetry"] is None
    assert refused["details"]["fields"] == {
        "prompt": ["Must be a string."],
        "enable_cache": ["Must be true or false."],
        "client_tag": ["Unknown field."],
    }
    assert refused["error_message"] == (
        "Invalid request: prompt: Must be a string. (2 more in details.fields)"
    )
