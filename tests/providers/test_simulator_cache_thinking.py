"""The fake upstream's prompt-cache usage, Anthropic's extended thinking and its
`/v1/messages/count_tokens`, over HTTP."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator

import httpx
import pytest

from aura_orchestrator.simulator import (
    ANTHROPIC_PATH,
    COUNT_TOKENS_PATH,
    OPENAI_PATH,
    FakeUpstream,
    Fault,
)

PROMPT = "Summarise the quarterly report [[cache:1200,300]]"
THINKING = {"type": "enabled", "budget_tokens": 1024}
TOOLS = [
    {
        "name": "weather",
        "description": "Current weather",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


@pytest.fixture(scope="module")
def sim_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def sim(sim_server: FakeUpstream) -> FakeUpstream:
    sim_server.reset()
    return sim_server


def post(sim: FakeUpstream, path: str, body: dict) -> dict:
    """The JSON answer, or {"events": [...]} for a stream."""
    response = httpx.post(sim.url + path, json=body)
    assert response.status_code == 200, response.text
    if not body.get("stream"):
        return response.json()
    data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    return {"events": [json.loads(item) for item in data if item != "[DONE]"]}


def messages(sim: FakeUpstream, content: str | list = PROMPT, **body: object) -> dict:
    turns = body.pop("messages", [{"role": "user", "content": content}])
    return post(
        sim, ANTHROPIC_PATH, {"model": "sim-claude", "max_tokens": 200, "messages": turns, **body}
    )


def chat(sim: FakeUpstream, content: str = PROMPT, **body: object) -> dict:
    turns = [{"role": "user", "content": content}]
    return post(sim, OPENAI_PATH, {"model": "sim-gpt", "messages": turns, **body})


def reassemble(events: list[dict]) -> list[dict]:
    """The content blocks a stream's events build, in index order."""
    blocks: dict[int, dict] = {}
    json_parts: dict[int, str] = defaultdict(str)
    for event in events:
        if event["type"] == "content_block_start":
            blocks[event["index"]] = dict(event["content_block"])
        elif event["type"] == "content_block_delta":
            block, delta = blocks[event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            else:
                json_parts[event["index"]] += delta["partial_json"]
    for index, text in json_parts.items():
        blocks[index]["input"] = json.loads(text)
    return [blocks[index] for index in sorted(blocks)]


# -- prompt-cache usage ------------------------------------------------------------------------


def test_anthropic_cache_marker_reports_reads_and_writes_outside_input_tokens(sim):
    blocks = [
        {"type": "text", "text": "Summarise the quarterly report"},
        {"type": "text", "text": " [[cache:1200,300]]"},
    ]
    answers = [messages(sim, PROMPT), messages(sim, blocks)]

    for answer in answers:
        assert answer["usage"]["input_tokens"] == len(PROMPT) // 4  # no cache tokens in it
        assert answer["usage"]["cache_read_input_tokens"] == 1200
        assert answer["usage"]["cache_creation_input_tokens"] == 300


def test_anthropic_stream_reports_the_cache_in_message_start_and_message_delta(sim):
    answer = messages(sim)
    events = messages(sim, stream=True)["events"]

    (start,) = [e["message"]["usage"] for e in events if e["type"] == "message_start"]
    (final,) = [e["usage"] for e in events if e["type"] == "message_delta"]
    assert start == {**answer["usage"], "output_tokens": 1}
    assert final == answer["usage"]


def test_openai_cache_marker_reports_cached_tokens_within_prompt_tokens(sim):
    answer = chat(sim)
    events = chat(sim, stream=True, stream_options={"include_usage": True})["events"]

    usage = answer["usage"]
    assert usage["prompt_tokens"] == len(PROMPT) // 4 + 1200  # writes ignored
    assert usage["prompt_tokens_details"] == {"cached_tokens": 1200}
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert events[-1]["usage"] == usage


def test_without_the_marker_the_cache_counts_are_zero(sim):
    anthropic = messages(sim, "Summarise the quarterly report")["usage"]
    openai = chat(sim, "Summarise the quarterly report")["usage"]

    assert anthropic["cache_read_input_tokens"] == anthropic["cache_creation_input_tokens"] == 0
    assert openai["prompt_tokens_details"] == {"cached_tokens": 0}


def test_cache_control_reaches_the_upstream_verbatim(sim):
    system = [{"type": "text", "text": "You summarise.", "cache_control": {"type": "ephemeral"}}]
    content = [
        {"type": "text", "text": "Report", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    messages(sim, content, system=system)

    (body,) = sim.requests
    assert body["system"] == system
    assert body["messages"][0]["content"] == content


# -- extended thinking ---------------------------------------------------------------------------


def test_thinking_opens_the_answer_and_counts_as_output(sim):
    plain = messages(sim, "Why is the sky blue on clear afternoons in June?")
    sim.reset()
    answer = messages(sim, "Why is the sky blue on clear afternoons in June?", thinking=THINKING)

    thinking = "Simulated reasoning about: Why is the sky blue on clear afternoons "  # 40
    assert answer["content"] == [
        {"type": "thinking", "thinking": thinking, "signature": "sig_sim_1"},
        *plain["content"],
    ]
    assert (
        answer["usage"]["output_tokens"] == plain["usage"]["output_tokens"] + len(thinking) // 4 + 1
    )
    assert answer["usage"]["input_tokens"] == plain["usage"]["input_tokens"]


def test_thinking_comes_before_tool_use(sim):
    answer = messages(sim, "Weather in Oslo?", thinking=THINKING, tools=TOOLS)

    assert [block["type"] for block in answer["content"]] == ["thinking", "text", "tool_use"]
    assert answer["stop_reason"] == "tool_use"


@pytest.mark.parametrize("tools", [None, TOOLS])
def test_a_thinking_stream_reassembles_to_the_answer(sim, tools):
    extra = {"tools": tools} if tools else {}
    answer = messages(sim, "Weather in Oslo?", thinking=THINKING, **extra)
    sim.reset()
    events = messages(sim, "Weather in Oslo?", thinking=THINKING, stream=True, **extra)["events"]

    assert reassemble(events) == answer["content"]
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert starts[0]["index"] == 0 and starts[0]["content_block"] == {
        "type": "thinking",
        "thinking": "",
    }
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta" and e["index"] == 0]
    assert len(deltas) > 2 and {d["type"] for d in deltas[:-1]} == {"thinking_delta"}
    assert deltas[-1] == {"type": "signature_delta", "signature": "sig_sim_1"}
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert stops == list(range(len(answer["content"])))
    (final,) = [e for e in events if e["type"] == "message_delta"]
    assert final["usage"]["output_tokens"] == answer["usage"]["output_tokens"]


def test_thinking_blocks_passed_back_are_accepted_and_ignored(sim):
    first = {"role": "user", "content": "Weather in Oslo?"}
    reply = {"type": "text", "text": "It is mild."}
    thought = {"type": "thinking", "thinking": "Long private reasoning " * 20, "signature": "sig_x"}
    again = {"role": "user", "content": "And tomorrow?"}

    def turns(*assistant: dict) -> list[dict]:
        return [first, {"role": "assistant", "content": list(assistant)}, again]

    without = messages(sim, messages=turns(reply), thinking=THINKING)
    passed_back = messages(sim, messages=turns(thought, reply), thinking=THINKING)

    assert passed_back["usage"]["input_tokens"] == without["usage"]["input_tokens"]
    assert passed_back["content"][1:] == without["content"][1:]


def test_without_thinking_enabled_there_is_no_thinking_block(sim):
    disabled = messages(sim, "Weather in Oslo?", thinking={"type": "disabled"})

    assert [block["type"] for block in disabled["content"]] == ["text"]


# -- count_tokens --------------------------------------------------------------------------------


def test_count_tokens_equals_the_input_tokens_of_the_same_messages_body(sim):
    body = {
        "model": "sim-claude",
        "system": [
            {
                "type": "text",
                "text": "You are a weather bot.",
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": "Weather in Oslo? [[cache:10,5]]"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Oslo"}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "18C"}],
            },
        ],
    }

    counted = post(sim, COUNT_TOKENS_PATH, body)
    answered = post(sim, ANTHROPIC_PATH, {**body, "max_tokens": 100})

    assert counted == {"input_tokens": answered["usage"]["input_tokens"]}
    assert counted["input_tokens"] > len(json.dumps(TOOLS)) // 4  # the tools count
    assert sim.requests[0] == body
    assert sim.path_counts == {COUNT_TOKENS_PATH: 1, ANTHROPIC_PATH: 1}
    assert sim.request_count == 1  # completions only


def test_count_tokens_rejects_a_body_without_messages_as_anthropic_does(sim):
    response = httpx.post(sim.url + COUNT_TOKENS_PATH, json={"model": "sim-claude"})

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "messages: Field required"},
    }
    assert sim.path_counts == {COUNT_TOKENS_PATH: 1}


def test_count_tokens_takes_faults_like_other_requests(sim):
    sim.enqueue(Fault(status=529), Fault(usage=(42, 0)))
    body = {"model": "sim-claude", "messages": [{"role": "user", "content": "Hi"}]}

    overloaded = httpx.post(sim.url + COUNT_TOKENS_PATH, json=body)
    assert overloaded.status_code == 529
    assert overloaded.json()["error"]["type"] == "overloaded_error"
    assert post(sim, COUNT_TOKENS_PATH, body) == {"input_tokens": 42}
