"""The fake upstream's tools, images, choices and logprobs, in both wire formats, over HTTP."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator

import httpx
import jsonschema
import pytest

from aura_orchestrator.simulator import IMAGE_TOKENS, LOW_DETAIL_IMAGE_TOKENS, FakeUpstream

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 3}},
    "required": ["city", "days"],
}
TIME = {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]}
OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "time", "parameters": TIME}},
]
ANTHROPIC_TOOLS = [
    {"name": "weather", "description": "Forecast", "input_schema": WEATHER},
    {"name": "time", "input_schema": TIME},
]
ARGUMENTS = {"weather": {"city": "x", "days": 3}, "time": {"zone": "UTC"}}


@pytest.fixture(scope="module")
def sim_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def sim(sim_server: FakeUpstream) -> FakeUpstream:
    sim_server.reset()
    return sim_server


def chat(sim: FakeUpstream, prompt: str | list = "Weather in Oslo?", **body: object) -> dict:
    """POST /v1/chat/completions; the JSON answer, or the stream's chunks when streamed."""
    messages = body.pop("messages", [{"role": "user", "content": prompt}])
    return _post(sim, "/v1/chat/completions", {"model": "sim-gpt", "messages": messages, **body})


def messages(sim: FakeUpstream, prompt: str | list = "Weather in Oslo?", **body: object) -> dict:
    """POST /v1/messages; the JSON answer, or the stream's events when streamed."""
    turns = body.pop("messages", [{"role": "user", "content": prompt}])
    body = {"model": "sim-claude", "max_tokens": 200, "messages": turns, **body}
    return _post(sim, "/v1/messages", body)


def _post(sim: FakeUpstream, path: str, body: dict) -> dict:
    response = httpx.post(sim.url + path, json=body)
    assert response.status_code == 200, response.text
    if not body.get("stream"):
        return response.json()
    data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    return {"events": [json.loads(item) for item in data if item != "[DONE]"]}


# -- OpenAI tools ----------------------------------------------------------------------------


def test_openai_calls_the_first_tool_with_arguments_that_fit_its_schema(sim):
    answer = chat(sim, tools=OPENAI_TOOLS)

    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"] == "call_sim_1_0"
    assert call["type"] == "function"
    assert call["function"]["name"] == "weather"
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, WEATHER)
    assert arguments == ARGUMENTS["weather"]


def test_openai_named_tool_choice_and_parallel_calls(sim):
    named = {"type": "function", "function": {"name": "time"}}
    forced = chat(sim, tools=OPENAI_TOOLS, tool_choice=named)["choices"][0]["message"]
    parallel = chat(sim, "both [[tool_calls:3]]", tools=OPENAI_TOOLS)["choices"][0]["message"]
    single = chat(sim, "[[tool_calls:3]]", tools=OPENAI_TOOLS, parallel_tool_calls=False)

    assert [c["function"]["name"] for c in forced["tool_calls"]] == ["time"]
    assert [c["function"]["name"] for c in parallel["tool_calls"]] == ["weather", "time", "weather"]
    assert [c["id"] for c in parallel["tool_calls"]] == [f"call_sim_2_{i}" for i in range(3)]
    assert len(single["choices"][0]["message"]["tool_calls"]) == 1


def test_openai_answers_text_without_tools_choice_or_after_tool_results(sim):
    declined = chat(sim, tools=OPENAI_TOOLS, tool_choice="none")["choices"][0]
    turns = [
        {"role": "user", "content": "Weather and time?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "9:00"}]},
    ]
    after = chat(sim, messages=turns, tools=OPENAI_TOOLS)["choices"][0]

    assert declined["message"]["content"] == "Simulated answer to: Weather in Oslo?"
    assert declined["finish_reason"] == "stop"
    message = {"role": "assistant", "content": "Tool results: 18C | 9:00", "refusal": None}
    assert after["message"] == message
    assert after["finish_reason"] == "stop"


def test_tool_definitions_cost_prompt_tokens(sim):
    plain = chat(sim)["usage"]["prompt_tokens"]
    with_tools = chat(sim, tools=OPENAI_TOOLS)["usage"]["prompt_tokens"]
    assert with_tools - plain == len(json.dumps(OPENAI_TOOLS)) // 4


def test_openai_streams_tool_calls_as_openai_does(sim):
    body = {"tools": OPENAI_TOOLS, "stream": True, "stream_options": {"include_usage": True}}
    events = chat(sim, "[[tool_calls:2]]", **body)["events"]
    whole = chat(sim, "[[tool_calls:2]]", tools=OPENAI_TOOLS)

    deltas = [event["choices"][0]["delta"] for event in events if event["choices"]]
    assert deltas[0] == {"role": "assistant", "content": None, "refusal": None}
    calls: dict[int, dict] = defaultdict(lambda: {"arguments": ""})
    for delta in deltas:
        for part in delta.get("tool_calls", []):
            call = calls[part["index"]]
            if "id" in part:  # the first chunk of a call: its id, type and name
                assert part["function"]["arguments"] == ""
                call.update(id=part["id"], name=part["function"]["name"])
            call["arguments"] += part["function"]["arguments"]
    assert [(c["id"], c["name"]) for c in calls.values()] == [
        ("call_sim_1_0", "weather"),
        ("call_sim_1_1", "time"),
    ]
    assert [json.loads(c["arguments"]) for c in calls.values()] == list(ARGUMENTS.values())
    fragments = [d for d in deltas if "tool_calls" in d and "id" not in d["tool_calls"][0]]
    assert len(fragments) > 2  # the arguments came in pieces
    finish = [e["choices"][0] for e in events if e["choices"] and e["choices"][0]["finish_reason"]]
    assert [(c["delta"], c["finish_reason"]) for c in finish] == [({}, "tool_calls")]
    assert events[-1]["choices"] == [] and events[-1]["usage"] == whole["usage"]


# -- Anthropic tools -------------------------------------------------------------------------


def test_anthropic_answers_tool_use_blocks(sim):
    answer = messages(sim, tools=ANTHROPIC_TOOLS)

    assert answer["stop_reason"] == "tool_use"
    assert answer["content"] == [
        {"type": "text", "text": "I'll call weather."},
        {
            "type": "tool_use",
            "id": "toolu_sim_1_0",
            "name": "weather",
            "input": ARGUMENTS["weather"],
        },
    ]
    assert answer["usage"]["cache_creation_input_tokens"] == 0
    assert answer["usage"]["cache_read_input_tokens"] == 0


def test_anthropic_tool_choice_and_parallel_calls(sim):
    def names(**body: object) -> list[str]:
        blocks = messages(sim, "[[tool_calls:2]]", tools=ANTHROPIC_TOOLS, **body)["content"]
        return [block["name"] for block in blocks if block["type"] == "tool_use"]

    assert names() == ["weather", "time"]
    assert names(tool_choice={"type": "any", "disable_parallel_tool_use": True}) == ["weather"]
    assert names(tool_choice={"type": "tool", "name": "time"}) == ["time", "time"]
    assert names(tool_choice={"type": "none"}) == []


def test_anthropic_streams_tool_use_as_anthropic_does(sim):
    events = messages(sim, "[[tool_calls:2]]", tools=ANTHROPIC_TOOLS, stream=True)["events"]

    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts == [
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "toolu_sim_1_0", "name": "weather", "input": {}},
        {"type": "tool_use", "id": "toolu_sim_1_1", "name": "time", "input": {}},
    ]
    json_parts: dict[int, list[str]] = defaultdict(list)
    for event in events:
        if event["type"] == "content_block_delta" and event["delta"]["type"] == "input_json_delta":
            json_parts[event["index"]].append(event["delta"]["partial_json"])
    assert [json.loads("".join(parts)) for parts in json_parts.values()] == list(ARGUMENTS.values())
    assert all(len(parts) > 1 for parts in json_parts.values())
    assert [e["index"] for e in events if e["type"] == "content_block_stop"] == [0, 1, 2]
    (delta,) = [e for e in events if e["type"] == "message_delta"]
    assert delta["delta"]["stop_reason"] == "tool_use"


def test_anthropic_answers_text_after_tool_results(sim):
    turns = [
        {"role": "user", "content": "Weather and time?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather"}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "t2",
                    "content": [{"type": "text", "text": "9:00"}],
                },
            ],
        },
    ]
    answer = messages(sim, messages=turns, tools=ANTHROPIC_TOOLS)
    assert answer["content"] == [{"type": "text", "text": "Tool results: 18C | 9:00"}]
    assert answer["stop_reason"] == "end_turn"


# -- images ----------------------------------------------------------------------------------


def test_images_reach_the_upstream_and_cost_fixed_tokens(sim):
    text = {"type": "text", "text": "Describe"}
    low = {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}}
    high = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    plain = chat(sim, "Describe")
    pictured = chat(sim, [text, low, high])

    content = pictured["choices"][0]["message"]["content"]
    assert content == "Simulated answer to: Describe [images: 2]"
    added = pictured["usage"]["prompt_tokens"] - plain["usage"]["prompt_tokens"]
    assert added == LOW_DETAIL_IMAGE_TOKENS + IMAGE_TOKENS == 85 + 765
    assert sim.requests[1]["messages"][0]["content"][1] == low  # verbatim


def test_anthropic_images_are_counted(sim):
    inline = {"type": "base64", "media_type": "image/png", "data": "AAAA"}
    parts = [
        {"type": "image", "source": inline},
        {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}},
        {"type": "text", "text": "Describe"},
    ]
    plain = messages(sim, "Describe")
    pictured = messages(sim, parts)

    assert pictured["content"][0]["text"] == "Simulated answer to: Describe [images: 2]"
    added = pictured["usage"]["input_tokens"] - plain["usage"]["input_tokens"]
    assert added == 2 * IMAGE_TOKENS


# -- several choices, logprobs, OpenAI's extra fields ---------------------------------------


def test_n_streams_every_choice_with_its_own_finish_and_usage_counts_them_all(sim):
    body = {"n": 3, "stream": True, "stream_options": {"include_usage": True}}
    events = chat(sim, max_tokens=100, **body)["events"]
    whole = chat(sim, max_tokens=100)

    texts: dict[int, str] = defaultdict(str)
    finishes: dict[int, list[str]] = defaultdict(list)
    for event in events:
        for choice in event["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
            if choice["finish_reason"]:
                finishes[choice["index"]].append(choice["finish_reason"])
    content = whole["choices"][0]["message"]["content"]
    assert texts == {0: content, 1: content, 2: content}
    assert finishes == {0: ["stop"], 1: ["stop"], 2: ["stop"]}
    usage = events[-1]["usage"]
    assert usage["completion_tokens"] == 3 * whole["usage"]["completion_tokens"]


def test_logprobs_cover_every_piece_in_answers_and_streams(sim):
    answer = chat(sim, logprobs=True, top_logprobs=2, n=2)
    streamed = chat(sim, logprobs=True, top_logprobs=2, stream=True)["events"]

    for choice in answer["choices"]:
        logprobs = choice["logprobs"]
        assert logprobs["refusal"] is None
        entries = logprobs["content"]
        assert "".join(e["token"] for e in entries) == choice["message"]["content"]
        assert [e["logprob"] for e in entries[:3]] == [-0.1, -0.2, -0.3]
        assert all(e["bytes"] == list(e["token"].encode()) for e in entries)
        assert all(len(e["top_logprobs"]) == 2 for e in entries)
        assert entries[0]["top_logprobs"][0]["token"] == entries[0]["token"]
    pieces = [c for e in streamed for c in e["choices"] if c["delta"].get("content")]
    assert [c["logprobs"]["content"] for c in pieces] == [
        [entry] for entry in answer["choices"][0]["logprobs"]["content"]
    ]
    assert chat(sim)["choices"][0]["logprobs"] is None


def test_openai_answers_carry_its_extra_fields_and_unknown_fields_arrive_verbatim(sim):
    answer = chat(sim, seed=7, metadata={"k": ["v"]}, unknown_field={"a": 1})

    assert answer["system_fingerprint"] == "fp_sim"
    assert answer["choices"][0]["message"]["refusal"] is None
    assert answer["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert answer["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert sim.requests[0]["unknown_field"] == {"a": 1}
    assert sim.requests[0]["metadata"] == {"k": ["v"]}
