"""`/execute` with the chat format: `messages` instead of `prompt`, `tools` and
`tool_choice` (parsed by the gateway's parser, api/chat.py), answered with `tool_calls`."""

import json

import pytest

from tests.pipeline.helpers import EXECUTE

pytestmark = [pytest.mark.django_db(transaction=True)]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def chat_body(messages: list[dict], **extra) -> dict:
    return {"session_id": "chat-1", "operation_type": "completion", "messages": messages, **extra}


async def test_messages_replace_prompt_and_reach_the_provider(asgi_client, provider, fake_upstream):
    messages = [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Plan a video about tides"},
    ]
    response = await asgi_client.post(EXECUTE, json=chat_body(messages))
    data = response.json()
    assert response.status_code == 200, data
    assert data["success"] is True and data["content"]
    assert data["tool_calls"] == []
    sent = fake_upstream.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[-1]["content"] == "Plan a video about tides"


async def test_the_simple_form_answers_no_tool_calls(asgi_client, provider, fake_upstream):
    response = await asgi_client.post(
        EXECUTE, json={"session_id": "s", "operation_type": "planning", "prompt": "Hi"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["tool_calls"] == []
    assert "tools" not in fake_upstream.requests[-1]


async def test_tools_round_trip(asgi_client, provider, fake_upstream):
    """The model asks for a call; the call and its result go back as messages; the model
    answers from the result."""
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    first = await asgi_client.post(
        EXECUTE, json=chat_body(ask, tools=[WEATHER], tool_choice="required")
    )
    data = first.json()
    assert first.status_code == 200, data
    sent = fake_upstream.requests[-1]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == "required"
    (call,) = data["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"]), dict)
    assert call["id"]

    follow_up = [
        *ask,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 C"},
    ]
    second = await asgi_client.post(EXECUTE, json=chat_body(follow_up, tools=[WEATHER]))
    data = second.json()
    assert second.status_code == 200, data
    assert data["tool_calls"] == []
    assert "Sunny, 21 C" in data["content"]
    sent = fake_upstream.requests[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call["id"]
    assert sent[2] == {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 C"}


@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        (
            {"prompt": "Hi"},
            {"messages": ["Give only one of `prompt`, `messages`."]},
        ),
        (
            {"system_prompt": "Be terse."},
            {"system_prompt": ["With `messages`, give the system message among them."]},
        ),
        (
            {"tool_choice": "auto"},
            {"tool_choice": ["`tool_choice` is only allowed with `tools`."]},
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            {"tool_choice.function.name": ["No tool named 'x' in `tools`."]},
        ),
    ],
    ids=[
        "prompt and messages",
        "system_prompt and messages",
        "choice without tools",
        "no such tool",
    ],
)
async def test_the_fields_together_are_checked(asgi_client, provider, fake_upstream, extra, fields):
    response = await asgi_client.post(
        EXECUTE, json=chat_body([{"role": "user", "content": "Hi"}], **extra)
    )
    data = response.json()
    assert response.status_code == 400, data
    assert data["details"]["fields"] == fields
    assert data["tool_calls"] == [] and data["content"] is None
    assert fake_upstream.request_count == 0


async def test_every_bad_field_is_named_by_its_path(asgi_client, provider, fake_upstream):
    bad_tool = {"type": "function", "function": {"name": "no spaces"}}
    response = await asgi_client.post(
        EXECUTE,
        json=chat_body(
            [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "x"}],
            tools=[WEATHER, bad_tool],
            enable_cache="yes",
        ),
    )
    data = response.json()
    assert response.status_code == 400, data
    assert data["details"]["fields"] == {
        "messages[1].tool_call_id": [
            "`messages[1].tool_call_id` is required: the id of the tool call it answers."
        ],
        "tools[1].function.name": [
            "`tools[1].function.name` must be 1 to 64 letters, digits, '_' or '-'."
        ],
        "enable_cache": ["Must be true or false."],
    }
    assert fake_upstream.request_count == 0


async def test_neither_prompt_nor_messages_names_prompt(asgi_client, provider):
    response = await asgi_client.post(
        EXECUTE, json={"session_id": "s", "operation_type": "planning"}
    )
    assert response.status_code == 400
    assert response.json()["details"]["fields"] == {"prompt": ["This field is required."]}
