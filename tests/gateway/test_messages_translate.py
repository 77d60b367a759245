"""/v1/messages without a server: every body is an operation or a 400; the turns'
translation; stop reasons; the SSE events built from OpenAI chunks."""

import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_orchestrator import errors
from aura_orchestrator.gateway.messages import render
from aura_orchestrator.gateway.messages.translate import messages_call_from
from aura_orchestrator.pipeline import OperationResult, OperationStream
from aura_orchestrator.providers.base import ImagePart, StreamChunk, ToolCall, ToolChoice

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["model", "max_tokens", "system", "messages", "tools", "tool_choice", "stop_sequences",
     "temperature", "top_p", "top_k", "thinking", "metadata", "stream"]
)  # fmt: skip
BASE = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}


def call(**body):
    return messages_call_from(body={**BASE, **body}, headers={}, default_session="s")


@settings(max_examples=400, deadline=None)
@given(body=st.dictionaries(FIELDS, JSON, max_size=8).map(lambda b: {**BASE, **b}) | JSON)
def test_any_json_body_is_an_operation_or_an_invalid_request(body):
    try:
        messages_call_from(body=body, headers={}, default_session="s")
    except errors.InvalidRequest as exc:
        assert exc.details["param"]


THREE_DEGREES = {"type": "text", "text": "3°C"}
TOOL_USE_BLOCK = {"role": "user", "content": [{"type": "tool_use"}]}


def test_a_conversation_with_tools_becomes_the_pipelines_messages():
    turns = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hm", "signature": "s"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Thanks"},
                {"type": "tool_result", "tool_use_id": "t1", "content": [THREE_DEGREES]},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
            ],
        },
    ]  # fmt: skip
    tools = [{"name": "weather", "input_schema": {"type": "object"}}]
    operation = call(
        system=[{"type": "text", "text": "Be brief."}],
        messages=turns,
        tools=tools,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        metadata={"user_id": "u1"},
    ).operation
    roles = [m.role for m in operation.messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assistant, result, rest = operation.messages[2:]
    assert assistant.content == "Let me look."
    assert assistant.tool_calls == (ToolCall("t1", "weather", '{"city": "Oslo"}'),)
    assert (result.tool_call_id, result.content) == ("t1", "3°C")
    assert rest.content == "Thanks" and isinstance(rest.parts[1], ImagePart)
    assert operation.tool_choice == ToolChoice("required")
    assert operation.parallel_tool_calls is False
    assert (operation.stop, operation.user) == (("END",), "u1")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"n": 2}, "n"),
        ({"tool_choice": {"type": "auto"}}, "tool_choice"),
        ({"stop_sequences": ["a"] * 5}, "stop_sequences"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2000}}, "thinking.budget_tokens"),
        ({"messages": [TOOL_USE_BLOCK]}, "messages[0].content[0].type"),
        ({"tools": [{"type": "web_search_20250305", "name": "w"}]}, "tools[0].type"),
    ],
)  # fmt: skip
def test_bad_bodies_name_their_field(body, param):
    with pytest.raises(errors.InvalidRequest) as caught:
        call(**body)
    assert caught.value.details["param"] == param


def test_stop_reasons_are_the_adapters_map_read_backwards():
    assert render.STOP_REASONS == {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "content_filter": "refusal",
    }


def chunk(delta: dict, finish: str | None = None) -> StreamChunk:
    return StreamChunk("", raw={"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_openai_chunks_become_anthropic_blocks():
    blocks = render._Blocks()
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
    events = [
        *blocks.chunk(chunk({"role": "assistant", "content": ""})),
        *blocks.chunk(chunk({"content": "Hi"})),
        *blocks.chunk(chunk({"tool_calls": [call]})),
        *blocks.chunk(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})),
        *blocks.chunk(chunk({}, "tool_calls")),
        *blocks.close(),
    ]
    parsed = [json.loads(e.split(b"data: ", 1)[1]) for e in events]
    assert [(e["type"], e.get("index")) for e in parsed] == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
    ]
    assert parsed[3]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert parsed[4]["delta"] == {"type": "input_json_delta", "partial_json": "{}"}
    assert render.stop_reason(blocks.finish) == "tool_use"


async def test_a_failure_mid_stream_ends_with_an_error_event():
    """The pipeline ends a stream whose provider failed after the first chunk with its
    result's error: the events stop there, no message_stop."""
    stream = OperationStream(
        operation_id=uuid.uuid4(), was_cached=False, provider_name="p", model_name="m", budget={}
    )

    async def chunks():
        yield chunk({"content": "Hi"})
        stream.result = OperationResult(
            operation_id=stream.operation_id,
            success=False,
            content=None,
            was_cached=False,
            error=errors.ProviderFailed("Every provider in the chain failed."),
            telemetry={},
            budget={},
        )

    stream.chunks = chunks()
    events = [event async for event in render.sse_events(stream)]
    names = [event.split(b"\n", 1)[0].removeprefix(b"event: ").decode() for event in events]
    assert names == [
        "message_start", "ping", "content_block_start", "content_block_delta", "error"
    ]  # fmt: skip
    error = json.loads(events[-1].split(b"data: ", 1)[1])
    assert error == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "Every provider in the chain failed.",
            "code": "provider_error",
        },
    }
