"""A tool conversation through the gateway with an Anthropic-kind provider on the fake
upstream (its /v1/messages in Anthropic's wire format), complete and streamed; a
conversation falling back from an OpenAI-kind provider to it mid-way; and what an
Anthropic route cannot take (skipped in a chain, a 400 alone)."""

import json

import pytest

from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.providers.chunks import ChoicesAssembler
from aura_orchestrator.simulator import Fault
from telemetry.models import OperationTelemetry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

CHAT = "/v1/chat/completions"
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "strict": True,
    },
}
CLOCK = {"type": "function", "function": {"name": "clock"}}
ATTEMPTS = 3  # on one route: the completion preset's max_retries (2) + 1


def claude(upstream, *, model: str = "sim-claude", make_default: bool = True, priority=None):
    configured = provider_configure(
        name="claude",
        kind="anthropic",
        base_url=upstream.anthropic_base_url,
        api_key_env="TEST_PRIMARY_API_KEY",
        model=model,
        input_price=1,
        output_price=2,
        make_default=make_default,
    )
    if priority is not None:
        configured.provider.priority = priority
        configured.provider.save()
    return configured


@pytest.fixture
def anthropic_provider(db, fake_upstream):
    """Provider `claude` alone in the chain of model sim-claude."""
    return claude(fake_upstream)


@pytest.fixture
def anthropic_backup(provider, fake_upstream):
    """Provider `claude` serving sim-gpt too, after `primary` (OpenAI-kind) in its chain."""
    return claude(fake_upstream, model="sim-gpt", make_default=False, priority=200)


def ask(messages: list, **extra) -> dict:
    return {"model": "claude/sim-claude", "messages": messages, "tools": [WEATHER, CLOCK], **extra}


def streamed(sse_body: str) -> dict:
    """Choice 0 as an SSE body adds up to (as the SDKs assemble it)."""
    assert sse_body.rstrip().endswith("data: [DONE]")
    lines = sse_body.splitlines()
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assembler = ChoicesAssembler()
    for chunk in chunks:
        assembler.feed(chunk)
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    text = "".join(d["delta"].get("content") or "" for d in deltas)
    plain = {"message": {"content": text}, "finish_reason": deltas[-1]["finish_reason"]}
    return next(iter(assembler.choices()), plain)  # () for one plain text choice


async def post(client, body: dict, *, stream: bool = False) -> dict:
    """The answer's choice 0, from the JSON body or reassembled from the stream."""
    response = await client.post(CHAT, json={**body, "stream": stream})
    assert response.status_code == 200, response.text
    return streamed(response.text) if stream else response.json()["choices"][0]


def results_turn(question: dict, choice: dict, results: list[str]) -> list:
    """The conversation so far, the assistant's calls, then one tool message per call."""
    message = choice["message"]
    calls = message["tool_calls"]
    assert len(calls) == len(results)
    return [
        question,
        {"role": "assistant", "content": message["content"], "tool_calls": calls},
        *(
            {"role": "tool", "tool_call_id": call["id"], "content": result}
            for call, result in zip(calls, results, strict=True)
        ),
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
async def test_a_tool_conversation_with_an_anthropic_provider(
    asgi_client, anthropic_provider, fake_upstream, stream
):
    """tools → tool calls (finish_reason tool_calls) → the results → a final text answer."""
    question = {"role": "user", "content": f"Weather in Oslo? ({stream})"}
    choice = await post(asgi_client, ask([question]), stream=stream)

    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll call weather."
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("toolu_sim_")
    assert call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "x"}
    sent = fake_upstream.requests[-1]
    assert sent["tools"][0] == {
        "name": "weather",
        "description": "The forecast for a city.",
        "input_schema": WEATHER["function"]["parameters"],
    }

    messages = results_turn(question, choice, ["12°C, rain"])
    final = await post(asgi_client, ask(messages), stream=stream)

    assert final["message"]["content"] == "Tool results: 12°C, rain"
    assert final["finish_reason"] == "stop"
    assert not final["message"].get("tool_calls")
    sent = fake_upstream.requests[-1]
    assert sent["messages"][1]["content"][-1]["type"] == "tool_use"
    assert sent["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "12°C, rain"}],
    }
    assert fake_upstream.path_counts["/v1/messages"] == 2


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
async def test_parallel_calls_are_answered_in_one_user_turn(
    asgi_client, anthropic_provider, fake_upstream, stream
):
    """Three calls at once; their three results reach Anthropic as one user turn."""
    question = {"role": "user", "content": f"Weather and time? [[tool_calls:3]] ({stream})"}
    choice = await post(asgi_client, ask([question]), stream=stream)
    names = [c["function"]["name"] for c in choice["message"]["tool_calls"]]
    assert names == ["weather", "clock", "weather"]
    assert choice["finish_reason"] == "tool_calls"

    messages = results_turn(question, choice, ["rain", "14:05", "sun"])
    final = await post(asgi_client, ask(messages), stream=stream)

    assert final["message"]["content"] == "Tool results: rain | 14:05 | sun"
    assert len(fake_upstream.requests[-1]["messages"]) == 3


async def test_parallel_tool_calls_false_and_a_forced_tool_reach_anthropic(
    asgi_client, anthropic_provider, fake_upstream
):
    question = {"role": "user", "content": "Time? [[tool_calls:3]]"}
    body = ask(
        [question],
        parallel_tool_calls=False,
        tool_choice={"type": "function", "function": {"name": "clock"}},
    )
    choice = await post(asgi_client, body)

    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["clock"]
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {}
    assert fake_upstream.requests[-1]["tool_choice"] == {
        "type": "tool",
        "name": "clock",
        "disable_parallel_tool_use": True,
    }


async def test_a_tool_conversation_falls_back_from_openai_to_anthropic_midway(
    asgi_client, anthropic_backup, fake_upstream
):
    """The OpenAI-kind provider makes the call; it then fails, and the Anthropic-kind one
    takes the conversation over with the OpenAI call and result translated."""
    question = {"role": "user", "content": "Weather in Oslo?"}
    body = {"model": "sim-gpt", "tools": [WEATHER]}
    first = await asgi_client.post(CHAT, json={**body, "messages": [question]})
    choice = first.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert fake_upstream.path_counts == {"/v1/chat/completions": 1}

    fake_upstream.enqueue(*[Fault(status=500)] * ATTEMPTS)  # every attempt on primary
    messages = results_turn(question, choice, ["12°C, rain"])
    response = await asgi_client.post(CHAT, json={**body, "messages": messages})

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Tool results: 12°C, rain"
    row = await OperationTelemetry.objects.aget(
        operation_id=response.headers["x-aura-operation-id"]
    )
    assert row.provider_name == "claude"
    assert [a["outcome"] for a in row.attempts] == ["ProviderUnavailable"] * ATTEMPTS + ["ok"]
    call_id = choice["message"]["tool_calls"][0]["id"]
    sent = fake_upstream.requests[-1]
    assert sent["messages"][1]["content"][-1]["id"] == call_id
    assert sent["messages"][2]["content"][0]["tool_use_id"] == call_id


async def test_an_anthropic_route_that_cannot_take_the_request_is_skipped(
    asgi_client, anthropic_backup, fake_upstream
):
    """logprobs: the Anthropic route of the chain is skipped (telemetry says why), so the
    answer is the OpenAI provider's failure."""
    fake_upstream.enqueue(*[Fault(status=500)] * ATTEMPTS)
    body = {"model": "sim-gpt", "messages": [{"role": "user", "content": "Hi"}], "logprobs": True}
    response = await asgi_client.post(CHAT, json=body)

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "provider_error"
    assert fake_upstream.path_counts.get("/v1/messages", 0) == 0
    row = await OperationTelemetry.objects.aget(
        operation_id=response.headers["x-aura-operation-id"]
    )
    assert row.attempts[0] == {
        "provider": "claude",
        "model": "sim-gpt",
        "latency_ms": 0,
        "outcome": "skipped",
        "status": None,
        "error": "logprobs: The Messages API has no `logprobs`.",
    }
    assert [a["outcome"] for a in row.attempts[1:]] == ["ProviderUnavailable"] * ATTEMPTS


async def test_a_request_no_anthropic_route_can_take_is_a_400_naming_the_param(
    asgi_client, anthropic_provider, fake_upstream
):
    body = ask([{"role": "user", "content": "Hi"}], logprobs=True)
    response = await asgi_client.post(CHAT, json=body)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "logprobs"
    assert "The Messages API has no `logprobs`." in error["message"]
    assert fake_upstream.request_count == 0


async def test_a_chat_text_parts_cache_control_reaches_an_anthropic_route(
    asgi_client, anthropic_provider, fake_upstream
):
    """LiteLLM's convention: `cache_control` on a chat-completions text part."""
    ephemeral = {"type": "ephemeral"}
    system = [{"type": "text", "text": "A long prefix.", "cache_control": ephemeral}]
    question = {"role": "user", "content": "Hi"}
    await post(asgi_client, ask([{"role": "system", "content": system}, question]))
    assert fake_upstream.requests[-1]["system"] == system
