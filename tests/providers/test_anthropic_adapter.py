"""Anthropic Messages adapter against httpx.MockTransport: mapping (tools, tool calls and
results, images, refusals), errors, stream translation."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from aura_orchestrator.providers import (
    ChatMessage,
    CompletionRequest,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderConfig,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
    StreamChunk,
    Usage,
)
from aura_orchestrator.providers import anthropic_messages as messages
from aura_orchestrator.providers.anthropic import AnthropicAdapter, count_tokens, messages_url
from aura_orchestrator.providers.base import (
    ImagePart,
    OtherPart,
    Refusal,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)
from aura_orchestrator.providers.chunks import ChoicesAssembler, replay_deltas
from aura_orchestrator.providers.openai_compat import message_body as openai_message_body

SECRET = "sk-ant-test-secret-456"
CONFIG = ProviderConfig("claude", "anthropic", "https://api.anthropic.test", SECRET)
REQUEST = CompletionRequest(
    model="claude-test",
    messages=(
        ChatMessage("system", "Be brief."),
        ChatMessage("system", "Answer in English."),
        ChatMessage("user", "Hello"),
        ChatMessage("assistant", "Hi"),
        ChatMessage("user", "Tell me more"),
    ),
)

Handler = Callable[[httpx.Request], httpx.Response]


def message_body(**overrides: object) -> dict:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-2025",
        "content": [{"type": "text", "text": "Hello there."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 4},
    }
    body.update(overrides)
    return body


async def complete(handler: Handler, request: CompletionRequest = REQUEST, config=CONFIG):
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await AnthropicAdapter().complete(client, config, request)


async def stream(handler: Handler, request: CompletionRequest = REQUEST) -> list[StreamChunk]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return [chunk async for chunk in AnthropicAdapter().stream(client, CONFIG, request)]


def sse(*events: dict) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def capture(seen: list[httpx.Request], body: dict | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body or message_body())

    return handler


@pytest.mark.parametrize(
    "base_url",
    ["https://api.anthropic.test", "https://api.anthropic.test/", "https://api.anthropic.test/v1"],
)
def test_messages_url_accepts_base_with_or_without_v1(base_url):
    assert messages_url(base_url) == "https://api.anthropic.test/v1/messages"


@pytest.mark.asyncio
async def test_complete_maps_the_request_to_the_messages_api():
    """System messages become `system`, max_tokens defaults, temperature is clamped to 0..1."""
    seen: list[httpx.Request] = []
    request = CompletionRequest(
        model="claude-test",
        messages=REQUEST.messages,
        temperature=1.4,
        top_p=0.9,
        stop=("END",),
        user="svc-1",
        timeout_seconds=9,
    )
    await complete(capture(seen), request)

    sent = seen[0]
    assert str(sent.url) == "https://api.anthropic.test/v1/messages"
    assert sent.headers["x-api-key"] == SECRET
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.extensions["timeout"]["read"] == 9
    assert json.loads(sent.content) == {
        "model": "claude-test",
        "max_tokens": 1024,
        "system": "Be brief.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": "Tell me more"},
        ],
        "temperature": 1.0,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "svc-1"},
    }


@pytest.mark.asyncio
async def test_top_p_is_sent_when_temperature_is_not():
    """Recent Claude models refuse both at once."""
    seen: list[httpx.Request] = []
    request = CompletionRequest(
        model="m", messages=(ChatMessage("user", "x"),), top_p=0.5, max_tokens=10
    )
    await complete(capture(seen), request)

    body = json.loads(seen[0].content)
    assert body["top_p"] == 0.5
    assert body["max_tokens"] == 10
    assert "temperature" not in body
    assert "system" not in body


@pytest.mark.asyncio
async def test_complete_joins_text_blocks_and_maps_usage_with_cache():
    body = message_body(
        content=[
            {"type": "text", "text": "Part one. "},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            {"type": "text", "text": "Part two."},
        ],
        usage={
            "input_tokens": 10,
            "output_tokens": 7,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
        },
    )
    result = await complete(lambda request: httpx.Response(200, json=body))

    assert result.content == "Part one. Part two."
    assert result.model == "claude-test-2025"
    assert result.usage == Usage(
        tokens_in=115, tokens_out=7, cached_tokens_in=100, cache_write_tokens=5
    )
    assert result.raw == body


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        (None, None),
    ],
)
async def test_stop_reason_is_mapped_to_openai_finish_reason(stop_reason, finish_reason):
    body = message_body(stop_reason=stop_reason)
    result = await complete(lambda request: httpx.Response(200, json=body))
    assert result.finish_reason == finish_reason


def anthropic_error(kind: str, message: str = "nope") -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "kind", "headers", "expected", "retry_after"),
    [
        (429, "rate_limit_error", {"retry-after": "4"}, ProviderRateLimited, 4.0),
        (529, "overloaded_error", {}, ProviderUnavailable, None),
        (500, "api_error", {}, ProviderUnavailable, None),
        (503, "unknown_future_error", {}, ProviderUnavailable, None),
        (400, "invalid_request_error", {}, ProviderRequestRejected, None),
        (404, "not_found_error", {}, ProviderRequestRejected, None),
        (413, "request_too_large", {}, ProviderRequestRejected, None),
        (401, "authentication_error", {}, ProviderAuthError, None),
        (403, "permission_error", {}, ProviderAuthError, None),
        # the error type decides over an odd status
        (400, "overloaded_error", {}, ProviderUnavailable, None),
    ],
)
async def test_errors_are_classified_by_status_and_error_type(
    status, kind, headers, expected, retry_after
):
    with pytest.raises(ProviderError) as caught:
        await complete(
            lambda request: httpx.Response(status, headers=headers, json=anthropic_error(kind))
        )

    error = caught.value
    assert type(error) is expected
    assert (error.status, error.code, error.retry_after) == (status, kind, retry_after)
    assert str(error) == f"claude: HTTP {status} from upstream: nope"


@pytest.mark.asyncio
async def test_api_key_never_appears_in_errors():
    body = anthropic_error("authentication_error", f"invalid x-api-key {SECRET}")
    with pytest.raises(ProviderAuthError) as caught:
        await complete(lambda request: httpx.Response(401, json=body))
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(CONFIG)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "response",
    [httpx.Response(200, text="<html>"), httpx.Response(200, json={"id": "msg"})],
    ids=["invalid-json", "missing-content"],
)
async def test_malformed_success_bodies_are_bad_responses(response):
    with pytest.raises(ProviderBadResponse):
        await complete(lambda request: response)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("exception", "expected"),
    [(httpx.ReadTimeout, ProviderTimeout), (httpx.ConnectError, ProviderUnavailable)],
)
async def test_transport_exceptions_are_classified(exception, expected):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception("boom", request=request)

    with pytest.raises(expected):
        await complete(handler)


STREAM_EVENTS = (
    {
        "type": "message_start",
        "message": {
            "id": "msg_42",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-2025",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {"output_tokens": 15},
    },
    {"type": "message_stop"},
)


@pytest.mark.asyncio
async def test_stream_translates_events_to_openai_chunks():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=sse(*STREAM_EVENTS))

    chunks = await stream(handler)

    assert json.loads(seen[0].content)["stream"] is True
    assert [c.delta for c in chunks] == ["", "Hel", "lo", ""]
    assert [c.finish_reason for c in chunks] == [None, None, None, "length"]
    assert chunks[-1].usage == Usage(tokens_in=30, tokens_out=15, cached_tokens_in=5)
    assert all(c.usage is None for c in chunks[:-1])

    first, text, final = chunks[0].raw, chunks[1].raw, chunks[-1].raw
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert text["object"] == "chat.completion.chunk"
    assert text["id"] == "msg_42"
    assert text["model"] == "claude-test-2025"
    assert text["choices"] == [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]
    assert final["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    assert final["usage"]["prompt_tokens"] == 30
    assert final["usage"]["completion_tokens"] == 15
    assert final["usage"]["total_tokens"] == 45


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "expected"),
    [("overloaded_error", ProviderUnavailable), ("rate_limit_error", ProviderRateLimited)],
)
async def test_error_event_mid_stream_is_classified_by_type(kind, expected):
    body = sse(STREAM_EVENTS[0], STREAM_EVENTS[3], anthropic_error(kind, "busy"))

    with pytest.raises(expected) as caught:
        await stream(lambda request: httpx.Response(200, content=body))
    assert caught.value.code == kind


@pytest.mark.asyncio
async def test_stream_error_status_raises_before_any_chunk():
    response = httpx.Response(529, json=anthropic_error("overloaded_error"))
    with pytest.raises(ProviderUnavailable):
        await stream(lambda request: response)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [sse(*STREAM_EVENTS[:4]), sse(STREAM_EVENTS[0]) + b"data: {oops\n\n"],
    ids=["cut-before-message-stop", "invalid-json"],
)
async def test_broken_streams_are_bad_responses(body):
    with pytest.raises(ProviderBadResponse):
        await stream(lambda request: httpx.Response(200, content=body))


# --- Tools, images and tool conversations -------------------------------------------------

WEATHER = Tool(
    name="get_weather",
    description="The weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    strict=True,
)
CLOCK = Tool(name="get_time")  # no description, no parameters
PNG = "data:image/png;base64,iVBORw0KGgo="


def sent_body(request: CompletionRequest) -> dict:
    return messages.request_body(request, stream=False)


def asking(*messages_: ChatMessage, **fields: object) -> CompletionRequest:
    return CompletionRequest(model="claude-test", messages=messages_, **fields)


HELLO = ChatMessage("user", "Hello")


def test_tools_become_messages_tools_with_an_input_schema_and_no_strict():
    body = sent_body(asking(HELLO, tools=(WEATHER, CLOCK)))
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body  # auto: Anthropic's default too


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("function", "get_time"), None, {"type": "tool", "name": "get_time"}),
        (ToolChoice("none"), None, {"type": "none"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            ToolChoice("function", "get_time"),
            False,
            {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
        ),
        (ToolChoice("none"), False, {"type": "none"}),  # no calls: nothing to serialise
        (ToolChoice("auto"), True, {"type": "auto"}),
    ],
)
def test_tool_choice_and_parallel_tool_calls_become_one_tool_choice(choice, parallel, expected):
    tools = (WEATHER, CLOCK)
    request = asking(HELLO, tools=tools, tool_choice=choice, parallel_tool_calls=parallel)
    assert sent_body(request)["tool_choice"] == expected


def test_no_tools_sends_no_tool_choice():
    assert "tool_choice" not in sent_body(asking(HELLO, parallel_tool_calls=False))


CALLS = (
    ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
    ToolCall("call_2", "get_time", "{}"),
)
TOOL_CONVERSATION = (
    ChatMessage("system", "Be brief."),
    ChatMessage("user", "Weather and time in Paris?"),
    ChatMessage("assistant", "Let me look.", tool_calls=CALLS),
    ChatMessage("tool", "18°C, sunny", tool_call_id="call_1"),
    ChatMessage("tool", "14:05", tool_call_id="call_2"),
    ChatMessage("user", "And in short?"),
    ChatMessage("assistant", "", tool_calls=CALLS[:1]),
    ChatMessage("tool", "19°C", tool_call_id="call_1"),
)
PARIS_USE = {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}


def test_a_tool_conversation_becomes_tool_use_and_merged_tool_result_turns():
    """Calls are tool_use blocks after the text; the results of one round and the user's
    next words are one user turn (Anthropic alternates roles); an assistant turn of calls
    alone has no empty text block."""
    body = sent_body(asking(*TOOL_CONVERSATION, tools=(WEATHER, CLOCK)))
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                PARIS_USE,
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C, sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "14:05"},
                {"type": "text", "text": "And in short?"},
            ],
        },
        {
            "role": "assistant",
            "content": [PARIS_USE],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "19°C"}],
        },
    ]


def test_consecutive_messages_of_one_role_merge_into_one_turn():
    body = sent_body(
        asking(
            ChatMessage("user", "One."),
            ChatMessage("user", "Two."),
            ChatMessage("assistant", "Three."),
            ChatMessage("assistant", "Four."),
        )
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Three."}, {"type": "text", "text": "Four."}],
        },
    ]


def test_images_become_image_blocks_in_order_without_detail():
    parts = (
        TextPart("Compare"),
        ImagePart(PNG, detail="low"),
        TextPart("with"),
        ImagePart("https://example.test/cat.jpg", detail="high"),
    )
    body = sent_body(asking(ChatMessage("user", "Compare\nwith", parts=parts)))
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "text", "text": "with"},
                {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (asking(HELLO, n=2), "n"),
        (
            asking(
                ChatMessage(
                    "user",
                    "Listen",
                    parts=(TextPart("Listen"), OtherPart("input_audio", {"type": "input_audio"})),
                )
            ),
            "messages[0].content[1]",
        ),
        (
            asking(HELLO, ChatMessage("assistant", "", parts=(OtherPart("refusal", {}),))),
            "messages[1].content[0]",
        ),
        (
            asking(ChatMessage("user", "", parts=(ImagePart("data:image/bmp;base64,Qk0="),))),
            "messages[0].content[0]",
        ),
        (
            asking(HELLO, ChatMessage("assistant", "", tool_calls=(ToolCall("c", "f", "{oops"),))),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            asking(
                HELLO,
                ChatMessage("assistant", "", tool_calls=(CALLS[0], ToolCall("c", "f", "[1, 2]"))),
            ),
            "messages[1].tool_calls[1].function.arguments",
        ),
        *(
            (asking(HELLO, extra={name: value}), name)
            for name, value in [
                ("logprobs", True),
                ("top_logprobs", 3),
                ("seed", 7),
                ("logit_bias", {"50256": -100}),
                ("presence_penalty", 0.5),
                ("frequency_penalty", 0.5),
                ("prediction", {"type": "content", "content": "x"}),
                ("service_tier", "flex"),
                ("reasoning_effort", "high"),
                ("modalities", ["text", "audio"]),
                ("next_years_field", 1),
            ]
        ),
    ],
)
def test_what_the_messages_api_cannot_carry_is_refused_naming_its_path(request_, param):
    refusal = AnthropicAdapter().refusal(request_)
    assert refusal is not None
    assert refusal.param == param
    assert "Messages API" in refusal.reason


def test_extra_fields_are_refused_because_the_messages_api_lacks_them():
    refusal = AnthropicAdapter().refusal(asking(HELLO, extra={"seed": 7}))
    assert refusal == Refusal("seed", "The Messages API has no `seed`.")


@pytest.mark.parametrize(
    "request_",
    [
        asking(*TOOL_CONVERSATION, tools=(WEATHER,), tool_choice=ToolChoice("required")),
        asking(ChatMessage("user", "", parts=(ImagePart(PNG), ImagePart("http://x.test/a.gif")))),
        asking(HELLO, extra={"modalities": ["text"], "logprobs": False, "seed": None}),
        asking(HELLO, response_format={"type": "json_object"}),
        asking(HELLO, n=1),
    ],
    ids=["tools", "images", "no-op-extra", "response-format", "n-1"],
)
def test_what_the_messages_api_can_carry_is_accepted(request_):
    assert AnthropicAdapter().refusal(request_) is None


def test_no_op_extra_fields_and_response_format_are_not_sent():
    request = asking(
        HELLO,
        extra={"modalities": ["text"], "logprobs": False},
        response_format={"type": "json_object"},
    )
    assert set(sent_body(request)) == {"model", "max_tokens", "messages"}


TOOL_ANSWER = message_body(
    content=[
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
    ],
    stop_reason="tool_use",
)
TOOL_CHOICE_BODY = {
    "index": 0,
    "message": {
        "role": "assistant",
        "content": "Checking.",
        "refusal": None,
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "toolu_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            },
        ],
    },
    "logprobs": None,
    "finish_reason": "tool_calls",
}


@pytest.mark.asyncio
async def test_tool_use_blocks_are_answered_as_openai_tool_calls():
    result = await complete(lambda request: httpx.Response(200, json=TOOL_ANSWER))

    assert result.content == "Checking."
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == (
        ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
        ToolCall("toolu_2", "get_time", "{}"),
    )
    assert result.choices == (TOOL_CHOICE_BODY,)
    assert result.usage == Usage(tokens_in=20, tokens_out=4)


@pytest.mark.asyncio
async def test_a_tool_call_alone_has_null_content_and_a_text_answer_no_choices():
    calls_only = message_body(content=TOOL_ANSWER["content"][1:2], stop_reason="tool_use")
    result = await complete(lambda request: httpx.Response(200, json=calls_only))
    assert result.content == ""
    assert result.choices[0]["message"]["content"] is None

    plain = await complete(lambda request: httpx.Response(200, json=message_body()))
    assert (plain.tool_calls, plain.choices) == ((), ())


THINKING = {"type": "thinking", "thinking": "The user wants...", "signature": "sig_1"}
REDACTED = {"type": "redacted_thinking", "data": "opaque"}
THINKING_CHOICE_BODY = {
    **TOOL_CHOICE_BODY,
    "message": {
        **TOOL_CHOICE_BODY["message"],
        "reasoning_content": "The user wants...",
        "thinking_blocks": [THINKING],
    },
}


@pytest.mark.asyncio
async def test_thinking_blocks_are_kept_verbatim_on_the_answer_with_their_text_joined():
    answer = message_body(content=[THINKING, REDACTED, {"type": "text", "text": "Hi."}])
    result = await complete(lambda request: httpx.Response(200, json=answer))
    assert result.content == "Hi."
    message = result.choices[0]["message"]
    assert message["thinking_blocks"] == [THINKING, REDACTED]
    assert message["reasoning_content"] == "The user wants..."
    assert "tool_calls" not in message


def test_a_thinking_answer_replays_as_deltas_that_reassemble_to_it():
    choice = {
        **THINKING_CHOICE_BODY,
        "message": {**THINKING_CHOICE_BODY["message"], "thinking_blocks": [THINKING, REDACTED]},
    }
    assembler = ChoicesAssembler()
    for delta in replay_deltas(choice, chunk_chars=4):
        assembler.feed({"choices": [delta]})
    assert assembler.choices() == (choice,)


@pytest.mark.asyncio
async def test_a_streamed_redacted_thinking_block_is_one_thinking_blocks_delta():
    events = (
        STREAM_EVENTS[0],
        {"type": "content_block_start", "index": 0, "content_block": REDACTED},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}},
        {"type": "message_stop"},
    )
    chunks = await stream(lambda request: httpx.Response(200, content=sse(*events)))
    assert chunks[1].raw["choices"][0]["delta"] == {"thinking_blocks": [REDACTED]}


def test_an_assistant_turns_thinking_blocks_go_back_verbatim_and_openai_drops_them():
    assistant = ChatMessage(
        "assistant",
        "",
        parts=(OtherPart("thinking", THINKING), OtherPart("redacted_thinking", REDACTED)),
        tool_calls=(ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),),
    )
    request = asking(HELLO, assistant, ChatMessage("tool", "Sunny", tool_call_id="toolu_1"))
    assert messages.refusal(request) is None
    assert sent_body(request)["messages"][1]["content"] == [
        THINKING,
        REDACTED,
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    openai = openai_message_body(assistant)
    assert openai["content"] is None and "thinking" not in json.dumps(openai)


def test_cache_control_reaches_the_messages_body_verbatim_and_openai_drops_it():
    ephemeral = {"type": "ephemeral"}
    request = asking(
        ChatMessage(
            "system",
            "Be brief.\nBe kind.",
            parts=(TextPart("Be brief."), TextPart("Be kind.", cache_control=ephemeral)),
        ),
        ChatMessage("user", "Hello", parts=(TextPart("Hello", cache_control=ephemeral),)),
        ChatMessage(
            "assistant", "", tool_calls=(ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),)
        ),
        ChatMessage("tool", "Sunny", tool_call_id="toolu_1", cache_control=ephemeral),
        ChatMessage("user", "More", parts=(ImagePart(PNG, cache_control=ephemeral),)),
        tools=(Tool("get_weather", parameters={"type": "object"}, cache_control=ephemeral),),
    )
    body = sent_body(request)
    assert body["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Be kind.", "cache_control": ephemeral},
    ]
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Hello", "cache_control": ephemeral}
    ]
    result, image = body["messages"][2]["content"]
    assert (result["cache_control"], image["cache_control"]) == (ephemeral, ephemeral)
    assert body["tools"][0]["cache_control"] == ephemeral
    openai = [openai_message_body(m) for m in request.messages]
    assert "cache_control" not in json.dumps(openai)
    assert openai[0]["content"][1] == {"type": "text", "text": "Be kind."}


def tool_stream_events() -> tuple[dict, ...]:
    """Thinking, text, then two tool_use blocks (the second streams no input)."""

    def delta(index: int, **delta: object) -> dict:
        return {"type": "content_block_delta", "index": index, "delta": delta}

    def block(index: int, **content_block: object) -> dict:
        return {"type": "content_block_start", "index": index, "content_block": content_block}

    def stop(index: int) -> dict:
        return {"type": "content_block_stop", "index": index}

    return (
        STREAM_EVENTS[0],
        block(0, type="thinking", thinking=""),
        delta(0, type="thinking_delta", thinking="The user wants..."),
        delta(0, type="signature_delta", signature="sig_1"),
        stop(0),
        block(1, type="text", text=""),
        delta(1, type="text_delta", text="Checking."),
        stop(1),
        block(2, type="tool_use", id="toolu_1", name="get_weather", input={}),
        delta(2, type="input_json_delta", partial_json=""),
        delta(2, type="input_json_delta", partial_json='{"city": '),
        delta(2, type="input_json_delta", partial_json='"Paris"}'),
        stop(2),
        block(3, type="tool_use", id="toolu_2", name="get_time", input={}),
        stop(3),
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 30},
        },
        {"type": "message_stop"},
    )


@pytest.mark.asyncio
async def test_a_stream_with_tool_use_is_translated_to_openai_tool_call_deltas():
    chunks = await stream(lambda request: httpx.Response(200, content=sse(*tool_stream_events())))

    deltas = [c.raw["choices"][0]["delta"] for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "The user wants..."},
        {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "sig_1"}]},
        {"content": "Checking."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert chunks[-1].finish_reason == "tool_calls"
    assert chunks[-1].usage == Usage(tokens_in=30, tokens_out=30, cached_tokens_in=5)
    assert "".join(c.delta for c in chunks) == "Checking."

    # Reassembled, the stream is the answer a complete call gives.
    assembler = ChoicesAssembler()
    for chunk in chunks:
        assembler.feed(chunk.raw)
    assert assembler.choices() == (THINKING_CHOICE_BODY,)


BETA = (("anthropic-beta", "prompt-caching-2024-07-31"),)


@pytest.mark.asyncio
async def test_a_requests_anthropic_beta_is_sent_on_complete_stream_and_count_tokens():
    seen: list[httpx.Request] = []
    request = CompletionRequest(model="claude-test", messages=REQUEST.messages, headers=BETA)
    await complete(capture(seen), request)

    def streaming(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        stop = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}}
        return httpx.Response(200, content=sse(stop, {"type": "message_stop"}))

    async with httpx.AsyncClient(transport=httpx.MockTransport(streaming)) as client:
        [c async for c in AnthropicAdapter().stream(client, CONFIG, request)]

    def counting(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        return httpx.Response(200, json={"input_tokens": 7})

    async with httpx.AsyncClient(transport=httpx.MockTransport(counting)) as client:
        assert await count_tokens(client, CONFIG, request) == 7
    assert [s.headers["anthropic-beta"] for s in seen] == ["prompt-caching-2024-07-31"] * 3
    assert {s.headers["anthropic-version"] for s in seen} == {"2023-06-01"}
    assert str(seen[2].url).endswith("/v1/messages/count_tokens")


@pytest.mark.asyncio
async def test_no_beta_asked_sends_none_and_only_anthropic_beta_is_passed():
    seen: list[httpx.Request] = []
    await complete(capture(seen))
    assert "anthropic-beta" not in seen[0].headers
    sneaky = (("anthropic-version", "2099-01-01"), ("x-api-key", "stolen"), ("x-other", "1"))
    request = CompletionRequest(model="claude-test", messages=REQUEST.messages, headers=sneaky)
    await complete(capture(seen), request)
    assert seen[1].headers["anthropic-version"] == "2023-06-01"
    assert seen[1].headers["x-api-key"] == SECRET
    assert "x-other" not in seen[1].headers and "anthropic-beta" not in seen[1].headers


@pytest.mark.asyncio
async def test_a_requests_beta_joins_the_providers_configured_one():
    seen: list[httpx.Request] = []
    config = ProviderConfig(
        "claude",
        "anthropic",
        "https://api.anthropic.test",
        SECRET,
        extra_headers=(("Anthropic-Beta", "output-128k-2025-02-19"),),
    )
    request = CompletionRequest(model="claude-test", messages=REQUEST.messages, headers=BETA)
    await complete(capture(seen), request, config=config)
    assert seen[0].headers.get_list("anthropic-beta") == [
        "output-128k-2025-02-19,prompt-caching-2024-07-31"
    ]
