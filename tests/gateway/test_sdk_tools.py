"""Tool use through the official OpenAI SDK against a real `manage.py serve`: a round trip
(call, result, answer), streamed calls, parallel calls, legacy functions and cached calls.

The fake upstream calls tools when it is offered some and the user spoke last; it answers
the `tool` messages that end a conversation with "Tool results: r1 | r2".
"""

import json

import httpx
import pytest

from aura_orchestrator.api.chat import parse_messages, parse_tools
from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.catalog.tokens import count_chat_tokens, count_tokens
from aura_orchestrator.simulator import Fault
from budgets.models import LlmSession
from telemetry.models import OperationTelemetry
from tests.gateway.sdk_support import (
    TIME,
    WEATHER,
    image_part,
    rows_of,
    streamed_tool_calls,
)

pytestmark = pytest.mark.django_db(transaction=True)

ASK_WEATHER = {"role": "user", "content": "What is the weather in Paris?"}


def test_a_tool_round_trip_reaches_the_upstream_verbatim_and_is_recorded(client, fake_upstream):
    """The model calls the tool (finish tool_calls, arguments a JSON string); the SDK's own
    message goes back with the tool's result and the model answers from it. The upstream
    received the assistant's call and the tool message as sent; telemetry keeps the call."""
    headers = {"X-Aura-Session-Id": "tools-round"}
    first = client.chat.completions.with_raw_response.create(
        model="sim-gpt", messages=[ASK_WEATHER], tools=[WEATHER], extra_headers=headers
    )
    choice = first.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_sim_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "x"}

    result = {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}
    second = client.chat.completions.create(
        model="sim-gpt",
        messages=[ASK_WEATHER, choice.message, result],  # the SDK's message object, as documented
        tools=[WEATHER],
        extra_headers=headers,
    )
    assert second.choices[0].message.content == "Tool results: 18C and sunny"
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.tool_calls is None

    sent = fake_upstream.requests[-1]["messages"]
    assert sent[0] == ASK_WEATHER
    assert sent[1]["role"] == "assistant"
    assert sent[1]["tool_calls"] == [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": call.function.arguments},
        }
    ]
    assert sent[2] == result
    assert fake_upstream.requests[-1]["tools"] == [WEATHER]

    row = OperationTelemetry.objects.get(operation_id=first.headers["x-aura-operation-id"])
    assert (row.tools_sent, row.images_sent, row.choices) == (1, 0, 1)
    assert row.tool_calls == [{"name": "get_weather", "arguments": call.function.arguments}]
    answered = OperationTelemetry.objects.exclude(pk=row.pk).get(session_id="tools-round")
    assert (answered.tools_sent, answered.tool_calls, answered.success) == (1, [], True)


def test_a_streamed_tool_call_is_reassembled_from_its_fragments(client, fake_upstream):
    """Streamed, the call comes as deltas (id and name once, the arguments in several
    fragments); joined by index they are the call, the last finish is tool_calls, and the
    SDK's stream helper builds the same final message. Telemetry has the whole call."""
    stream = client.chat.completions.create(
        model="sim-gpt",
        messages=[ASK_WEATHER],
        tools=[WEATHER],
        stream=True,
        extra_headers={"X-Aura-Session-Id": "tools-stream"},
    )
    calls, finish, fragments = streamed_tool_calls(stream)
    assert finish == "tool_calls"
    assert fragments > 1
    assert list(calls) == [0]
    assert calls[0]["id"].startswith("call_sim_") and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "x"}
    (row,) = rows_of("tools-stream", 1)
    assert (row.streamed, row.success, row.tools_sent) == (True, True, 1)
    assert row.tool_calls == [{"name": "get_weather", "arguments": calls[0]["arguments"]}]

    with client.chat.completions.stream(
        model="sim-gpt", messages=[ASK_WEATHER], tools=[WEATHER]
    ) as helper:
        final = helper.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    (call,) = final.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "x"},
    )


def test_a_client_gone_mid_tool_call_is_charged_its_prompt_and_the_call_so_far(
    live_server_url, api_key, provider, fake_upstream, slow_stream
):
    """The client leaves while the call's arguments stream, before the upstream's usage:
    the gateway counts the usage itself, the prompt with its image and tool definitions
    (as its worst case did) and the call's name and arguments received, not text alone."""
    slow_stream(0.2)
    image = image_part("https://example.com/cat.png", detail="low")
    body = {
        "model": "sim-gpt",
        "stream": True,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather?"}, image]}],
        "tools": [WEATHER],
    }
    headers = {"Authorization": f"Bearer {api_key.raw_key}", "X-Aura-Session-Id": "tools-gone"}
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST", f"{live_server_url}/v1/chat/completions", json=body, headers=headers
        ) as r,
    ):
        assert r.status_code == 200
        for line in r.iter_lines():
            if '"arguments":"{' in line:  # the first fragment of the arguments
                break

    (row,) = rows_of("tools-gone", 1)
    assert (row.success, row.error_code) == (False, "client_disconnected")
    prompt = count_chat_tokens(
        parse_messages(body["messages"]),
        tools=parse_tools(body["tools"]),
        model="sim-gpt",
        kind="openai",
    )
    assert row.tokens_in == prompt
    assert row.tokens_out > count_tokens("get_weather", model="sim-gpt")
    session = LlmSession.objects.get(session_id="tools-gone")
    assert session.tokens_used == row.tokens_in + row.tokens_out
    assert session.tokens_reserved == 0


def test_parallel_tool_calls_have_distinct_ids_unless_parallel_calls_are_off(client, fake_upstream):
    """`[[tool_calls:3]]` asks the upstream for 3 calls in one answer, cycling through the
    tools; each has its own id. With parallel_tool_calls false (passed on) there is one."""
    ask = {"role": "user", "content": "Weather and time, please [[tool_calls:3]]"}
    parallel = client.chat.completions.create(
        model="sim-gpt", messages=[ask], tools=[WEATHER, TIME]
    )
    calls = parallel.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time", "get_weather"]
    assert len({c.id for c in calls}) == 3
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "x"},
        {"zone": "x"},
        {"city": "x"},
    ]

    single = client.chat.completions.create(
        model="sim-gpt", messages=[ask], tools=[WEATHER, TIME], parallel_tool_calls=False
    )
    assert len(single.choices[0].message.tool_calls) == 1
    assert fake_upstream.requests[-1]["parallel_tool_calls"] is False


def test_a_forced_tool_choice_is_passed_on(client, fake_upstream):
    forced = {"type": "function", "function": {"name": "get_time"}}
    completion = client.chat.completions.create(
        model="sim-gpt", messages=[ASK_WEATHER], tools=[WEATHER, TIME], tool_choice=forced
    )
    assert [c.function.name for c in completion.choices[0].message.tool_calls] == ["get_time"]
    assert fake_upstream.requests[-1]["tool_choice"] == forced

    none = client.chat.completions.create(
        model="sim-gpt", messages=[ASK_WEATHER], tools=[WEATHER], tool_choice="none"
    )
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].finish_reason == "stop"


def test_legacy_functions_are_answered_with_function_call(client, fake_upstream):
    """Legacy `functions` + `function_call`: the answer is `message.function_call` with
    finish_reason function_call, as OpenAI answers them; the legacy `function` message
    that hands back the result is answered from it."""
    function = WEATHER["function"]
    completion = client.chat.completions.create(
        model="sim-gpt",
        messages=[ASK_WEATHER],
        functions=[function],
        function_call={"name": "get_weather"},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_weather"
    assert json.loads(choice.message.function_call.arguments) == {"city": "x"}
    sent = fake_upstream.requests[-1]
    assert sent["tools"] == [WEATHER]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}

    answered = client.chat.completions.create(
        model="sim-gpt",
        messages=[
            ASK_WEATHER,
            choice.message,
            {"role": "function", "name": "get_weather", "content": "rain"},
        ],
        functions=[function],
    )
    assert answered.choices[0].message.content == "Tool results: rain"
    assert answered.choices[0].message.function_call is None


def test_legacy_functions_streamed_come_as_function_call_deltas(client, fake_upstream):
    stream = client.chat.completions.create(
        model="sim-gpt", messages=[ASK_WEATHER], functions=[WEATHER["function"]], stream=True
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            assert choice.delta.tool_calls is None
            finish = choice.finish_reason or finish
            if choice.delta.function_call:
                name += choice.delta.function_call.name or ""
                arguments += choice.delta.function_call.arguments or ""
    assert (name, json.loads(arguments), finish) == ("get_weather", {"city": "x"}, "function_call")


def test_a_cached_answer_with_tool_calls_comes_back_identical_also_streamed(client, fake_upstream):
    """Asked twice with caching on, the second answer is a hit with the very same calls
    (ids and arguments) and finish; streamed, the hit replays those calls."""
    ask = {
        "model": "sim-gpt",
        "messages": [{"role": "user", "content": "Weather and time? [[tool_calls:2]]"}],
        "tools": [WEATHER, TIME],
        "extra_headers": {"X-Aura-Enable-Cache": "true", "X-Aura-Session-Id": "tools-cache"},
    }
    first = client.chat.completions.with_raw_response.create(**ask)
    second = client.chat.completions.with_raw_response.create(**ask)
    assert (first.headers["x-aura-cache"], second.headers["x-aura-cache"]) == ("miss", "hit")
    missed, hit = first.parse().choices[0], second.parse().choices[0]
    assert hit.finish_reason == missed.finish_reason == "tool_calls"
    assert hit.message.tool_calls == missed.message.tool_calls
    assert len(missed.message.tool_calls) == 2

    stream = client.chat.completions.create(stream=True, **ask)
    calls, finish, _ = streamed_tool_calls(stream)
    assert finish == "tool_calls"
    assert [(c["id"], c["name"], c["arguments"]) for c in calls.values()] == [
        (c.id, c.function.name, c.function.arguments) for c in missed.message.tool_calls
    ]
    assert fake_upstream.request_count == 1
    rows = rows_of("tools-cache", 3)
    assert [(r.cache_hit, r.streamed) for r in rows] == [
        (False, False),
        (True, False),
        (True, True),
    ]
    assert all(r.tool_calls == rows[0].tool_calls != [] for r in rows)


def test_a_tool_conversation_falls_back_from_openai_to_anthropic_through_the_sdk(
    client, fake_upstream, provider
):
    """The OpenAI-kind provider calls the tool; when the result comes back it fails on
    every attempt, and the Anthropic-kind provider of the same model finishes the
    conversation: the SDK sees one conversation, the upstream got the OpenAI call and its
    result as Anthropic `tool_use` / `tool_result` blocks."""
    backup = provider_configure(
        name="claude-backup",
        kind="anthropic",
        base_url=fake_upstream.anthropic_base_url,
        api_key_env="TEST_PRIMARY_API_KEY",
        model="sim-gpt",
        input_price=1,
        output_price=2,
        make_default=False,
    )
    backup.provider.priority = 200  # after `primary` in the chain of sim-gpt
    backup.provider.save()
    headers = {"X-Aura-Session-Id": "tools-fallback", "X-Aura-Enable-Cache": "false"}
    first = client.chat.completions.create(
        model="sim-gpt", messages=[ASK_WEATHER], tools=[WEATHER], extra_headers=headers
    )
    (call,) = first.choices[0].message.tool_calls
    assert fake_upstream.path_counts.get("/v1/messages") is None  # served by primary

    fake_upstream.enqueue(*[Fault(status=500)] * 3)  # every attempt on primary
    result = {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}
    second = client.chat.completions.with_raw_response.create(
        model="sim-gpt",
        messages=[ASK_WEATHER, first.choices[0].message, result],
        tools=[WEATHER],
        extra_headers=headers,
    )
    answer = second.parse()
    assert answer.choices[0].message.content == "Tool results: 18C and sunny"
    sent = fake_upstream.requests[-1]
    assert fake_upstream.path_counts["/v1/messages"] == 1
    assert sent["messages"][1]["content"][-1] == {
        "type": "tool_use",
        "id": call.id,
        "name": "get_weather",
        "input": json.loads(call.function.arguments),
    }
    assert sent["messages"][2]["content"][0]["type"] == "tool_result"
    assert sent["messages"][2]["content"][0]["tool_use_id"] == call.id
    assert sent["tools"][0]["name"] == "get_weather" and "input_schema" in sent["tools"][0]
    row = rows_of("tools-fallback", 2)[1]
    assert str(row.operation_id) == second.headers["x-aura-operation-id"]
    assert row.provider_name == "claude-backup"
    assert [a["outcome"] for a in row.attempts][-1] == "ok"
    assert {a["provider"] for a in row.attempts} == {"primary", "claude-backup"}
