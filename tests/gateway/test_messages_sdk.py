"""`POST /v1/messages` driven by the official Anthropic SDK against a real `manage.py
serve`: plain and streamed answers, a tool round trip, an image, fallback across kinds,
budgets, bad input, both ways to pass the key, count_tokens. Every call leaves one row."""

import base64
import time
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from aura_orchestrator.catalog.models import LlmModel
from aura_orchestrator.money import MICROS
from aura_orchestrator.simulator import Fault
from budgets.models import BudgetConstraint, LlmSession
from telemetry.models import OperationTelemetry
from tests.gateway.test_anthropic_tools import ATTEMPTS, claude
from tests.gateway.test_sdk import wait_for_telemetry

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {
    "name": "weather",
    "description": "The forecast for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


@pytest.fixture
def client(live_server_url, api_key, provider):
    """The official Anthropic SDK (x-api-key) against a real server, no retries."""
    return anthropic.Anthropic(base_url=live_server_url, api_key=api_key.raw_key, max_retries=0)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_plain_message_answers_in_anthropic_shape_with_usage_and_one_row(client, fake_upstream):
    raw = client.messages.with_raw_response.create(
        model="sim-gpt", max_tokens=300, system="You are terse.", messages=ask("Name a colour")
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].text == "Simulated answer to: Name a colour"
    assert message.stop_reason == "end_turn"
    sent = fake_upstream.requests[-1]
    assert sent["max_tokens"] == 300
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    row = OperationTelemetry.objects.get(operation_id=raw.headers["x-aura-operation-id"])
    assert message.id == "msg_" + row.operation_id.hex
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        row.tokens_in,
        row.tokens_out,
    )
    assert raw.headers["x-aura-cache"] == "miss"


def test_a_streamed_message_builds_the_final_message_with_the_sdk_helper(client):
    with client.messages.stream(
        model="sim-gpt",
        max_tokens=300,
        messages=ask("Tell me about the tides of the sea"),
        extra_headers={"X-Aura-Session-Id": "m-stream"},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Simulated answer to: Tell me about the tides of the sea"
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    row = wait_for_telemetry(final.id.removeprefix("msg_"))
    assert (row.streamed, row.success, row.session_id) == (True, True, "m-stream")
    assert final.usage.output_tokens == row.tokens_out > 0
    assert final.usage.input_tokens == row.tokens_in > 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_round_trip(client, stream):
    """tool_use out, tool_result back in, a final text; streamed: input_json_delta."""
    first = _create(client, stream, messages=ask("Weather in Paris?"), tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "weather" and isinstance(call.input, dict) and "city" in call.input
    messages = [
        *ask("Weather in Paris?"),
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "12°C, rain"}],
        },
    ]
    second = _create(client, stream, messages=messages, tools=[WEATHER])
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "Tool results: 12°C, rain"
    assert OperationTelemetry.objects.count() == 2


def _create(client, stream: bool, **kwargs):
    if not stream:
        return client.messages.create(model="sim-gpt", max_tokens=200, **kwargs)
    with client.messages.stream(model="sim-gpt", max_tokens=200, **kwargs) as events:
        return events.get_final_message()


def test_an_image_reaches_the_provider_as_a_data_url(client, fake_upstream):
    image = {"type": "base64", "media_type": "image/png", "data": PNG}
    content = [{"type": "image", "source": image}, {"type": "text", "text": "What is it?"}]
    message = client.messages.create(
        model="sim-gpt", max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    assert message.content[0].text.endswith("[images: 1]")
    part = fake_upstream.requests[-1]["messages"][0]["content"][0]
    assert part["image_url"]["url"] == f"data:image/png;base64,{PNG}"


def test_an_anthropic_route_failing_falls_back_to_the_openai_kind_one(client, fake_upstream):
    """claude (Anthropic-kind, first in the chain) fails every attempt: primary answers."""
    claude(fake_upstream, model="sim-gpt", make_default=True)
    fake_upstream.enqueue(*[Fault(status=500)] * ATTEMPTS)
    raw = client.messages.with_raw_response.create(
        model="sim-gpt", max_tokens=100, extra_body={"top_k": 5}, messages=ask("Hi")
    )
    assert raw.parse().content[0].text == "Simulated answer to: Hi"
    row = OperationTelemetry.objects.get(operation_id=raw.headers["x-aura-operation-id"])
    assert row.provider_name == "primary"
    assert [a["provider"] for a in row.attempts] == ["claude"] * ATTEMPTS + ["primary"]
    assert fake_upstream.path_counts["/v1/messages"] == ATTEMPTS


def test_an_anthropic_route_gets_top_k_and_thinking(client, fake_upstream):
    claude(fake_upstream, model="sim-gpt", make_default=True)
    thinking = {"type": "enabled", "budget_tokens": 1024}
    client.messages.create(
        model="claude/sim-gpt",
        max_tokens=2000,
        extra_body={"top_k": 5},
        thinking=thinking,
        messages=ask("Hi"),
    )
    sent = fake_upstream.requests[-1]
    assert (sent["top_k"], sent["thinking"]) == (5, thinking)
    assert "temperature" not in sent


def test_thinking_is_refused_by_an_openai_kind_route(client, fake_upstream):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="sim-gpt",
            max_tokens=2000,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=ask("Hi"),
        )
    assert caught.value.body["error"]["param"] == "thinking"
    assert fake_upstream.request_count == 0


def test_a_hard_session_cap_is_a_402_billing_error(client, fake_upstream):
    BudgetConstraint.objects.create(name="tight", max_tokens_per_session=150)
    headers = {"X-Aura-Session-Id": "m-budget", "X-Aura-Budget": "tight"}
    messages = ask("Go [[tokens_out:100]]")
    client.messages.create(
        model="sim-gpt", max_tokens=100, messages=messages, extra_headers=headers
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(
            model="sim-gpt", max_tokens=100, messages=messages, extra_headers=headers
        )
    assert caught.value.status_code == 402
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "billing_error"
    assert caught.value.body["error"]["code"] == "budget_exceeded"
    assert fake_upstream.request_count == 1
    assert OperationTelemetry.objects.filter(session_id="m-budget").count() == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "sim-gpt", "messages": ask("Hi")}, "max_tokens"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
            "messages[0].content[0].tool_use_id",
        ),
        ({"messages": ask("Hi"), "frequency_penalty": 1}, "frequency_penalty"),
        ({"messages": ask("Hi"), "temperature": 1.5}, "temperature"),
    ],
)
def test_bad_input_is_a_400_invalid_request_error_naming_the_field(
    live_server_url, api_key, provider, fake_upstream, body, param
):
    body = {"model": "sim-gpt", "max_tokens": 10, **body} if "max_tokens" not in param else body
    response = httpx.post(
        f"{live_server_url}/v1/messages", json=body, headers={"x-api-key": api_key.raw_key}
    )
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == param and param in error["error"]["message"]
    assert fake_upstream.request_count == 0


def test_bearer_and_x_api_key_are_both_accepted_and_a_bad_key_is_an_authentication_error(
    live_server_url, api_key, provider
):
    bearer = anthropic.Anthropic(
        base_url=live_server_url, auth_token=api_key.raw_key, max_retries=0
    )
    assert bearer.messages.create(model="sim-gpt", max_tokens=50, messages=ask("Hi")).content
    wrong = anthropic.Anthropic(base_url=live_server_url, api_key="aura_wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        wrong.messages.create(model="sim-gpt", max_tokens=50, messages=ask("Hi"))
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_count_tokens_is_our_estimate_for_an_openai_kind_model(client, fake_upstream):
    count = client.messages.count_tokens(model="sim-gpt", messages=ask("Hello there"))
    assert count.input_tokens > 0
    raw = client.messages.with_raw_response.count_tokens(model="sim-gpt", messages=ask("Hi"))
    assert raw.http_response.json()["estimate"] is True
    assert fake_upstream.request_count == 0


def test_a_cached_answer_is_replayed_as_a_message_and_as_a_stream(client, fake_upstream):
    headers = {"X-Aura-Enable-Cache": "true", "X-Aura-Session-Id": "m-cache"}
    ask_ = {"model": "sim-gpt", "max_tokens": 100, "messages": ask("What is a tide?")}
    first = client.messages.create(**ask_, extra_headers=headers)
    raw = client.messages.with_raw_response.create(**ask_, extra_headers=headers)
    with client.messages.stream(**ask_, extra_headers=headers) as stream:
        replayed = stream.get_final_message()
    assert raw.headers["x-aura-cache"] == "hit"
    texts = {m.content[0].text for m in (first, raw.parse(), replayed)}
    assert texts == {"Simulated answer to: What is a tide?"}
    assert raw.parse().usage.input_tokens == 0 == replayed.usage.output_tokens
    assert fake_upstream.request_count == 1
    assert OperationTelemetry.objects.filter(session_id="m-cache").count() == 3


def test_count_tokens_asks_an_anthropic_kind_provider_for_its_exact_count(client, fake_upstream):
    """claude serves the model first: its count_tokens answers what its /v1/messages
    reports as input tokens."""
    claude(fake_upstream, model="sim-gpt", make_default=True)
    messages = ask("Count these words, please")
    raw = client.messages.with_raw_response.count_tokens(model="sim-gpt", messages=messages)
    assert raw.http_response.json()["estimate"] is False
    assert fake_upstream.path_counts["/v1/messages/count_tokens"] == 1
    message = client.messages.create(model="sim-gpt", max_tokens=50, messages=messages)
    assert raw.parse().input_tokens == message.usage.input_tokens


THINK = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture
def thinker(fake_upstream):
    """`claude` (Anthropic-kind) serves sim-gpt first."""
    return claude(fake_upstream, model="sim-gpt", make_default=True)


def assert_thinks_first(message, about: str) -> None:
    thinking, text = message.content[0], message.content[1]
    assert thinking.type == "thinking" and thinking.signature.startswith("sig_sim_")
    assert thinking.thinking == f"Simulated reasoning about: {about}"
    assert text.type == "text" and text.text == f"Simulated answer to: {about}"


def test_a_thinking_answer_returns_its_signed_thinking_block_first(client, thinker):
    message = client.messages.create(
        model="sim-gpt", max_tokens=2000, thinking=THINK, messages=ask("Why is the sky blue")
    )
    assert_thinks_first(message, "Why is the sky blue")


def test_a_streamed_thinking_answer_streams_its_thinking_block_first(client, thinker):
    with client.messages.stream(
        model="sim-gpt", max_tokens=2000, thinking=THINK, messages=ask("Why is grass green")
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds
    assert_thinks_first(final, "Why is grass green")


def test_an_assistant_thinking_block_goes_back_verbatim_with_the_tool_result(
    client, thinker, fake_upstream
):
    thinking = {"type": "thinking", "thinking": "Need the weather.", "signature": "sig_abc"}
    call = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Snow"}
    client.messages.create(
        model="sim-gpt",
        max_tokens=2000,
        thinking=THINK,
        tools=[WEATHER],
        messages=[
            *ask("Weather in Oslo?"),
            {"role": "assistant", "content": [thinking, call]},
            {"role": "user", "content": [result]},
        ],
    )
    sent = fake_upstream.requests[-1]
    assert sent["messages"][1] == {"role": "assistant", "content": [thinking, call]}
    assert sent["messages"][2]["content"] == [result]


def test_cache_control_reaches_an_anthropic_route_verbatim(client, thinker, fake_upstream):
    ephemeral = {"type": "ephemeral"}
    system = [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "A long shared prefix.", "cache_control": ephemeral},
    ]
    question = {"type": "text", "text": "Weather?", "cache_control": ephemeral}
    client.messages.create(
        model="sim-gpt",
        max_tokens=300,
        system=system,
        tools=[{**WEATHER, "cache_control": ephemeral}],
        messages=[{"role": "user", "content": [question]}],
    )
    sent = fake_upstream.requests[-1]
    assert sent["system"] == system
    assert sent["messages"][0]["content"] == [question]
    assert sent["tools"][0]["cache_control"] == ephemeral


def test_cache_control_and_thinking_blocks_are_dropped_for_an_openai_kind_route(
    client, fake_upstream
):
    thinking = {"type": "thinking", "thinking": "Hm.", "signature": "sig_abc"}
    client.messages.create(
        model="sim-gpt",
        max_tokens=300,
        system=[{"type": "text", "text": "Terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            *ask("Hi"),
            {"role": "assistant", "content": [thinking, {"type": "text", "text": "Hello"}]},
            *ask("Bye"),
        ],
    )
    sent = fake_upstream.requests[-1]
    assert "cache_control" not in str(sent) and "sig_abc" not in str(sent)
    assert sent["messages"][2] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello"}],
    }


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_prompt_cache_reads_and_writes_are_reported_as_anthropic_counts_them(
    client, thinker, stream
):
    """The provider's cache reads and writes come back apart from `input_tokens`, as the
    row recorded them; `message_delta`'s usage carries them in a stream."""
    kwargs = {"model": "sim-gpt", "max_tokens": 100, "messages": ask("Handbook [[cache:900,300]]")}
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    usage = message.usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (900, 300)
    row = OperationTelemetry.objects.get(operation_id=message.id.removeprefix("msg_"))
    assert (row.cache_read_tokens, row.cache_write_tokens) == (900, 300)
    assert usage.input_tokens == row.tokens_in - 900 - 300 > 0


def wait_for_settled(session_id: str, timeout: float = 10.0) -> LlmSession:
    """The session once its reservation is handed back (the ledger settles after the row)."""
    deadline = time.monotonic() + timeout
    while True:
        session = LlmSession.objects.get(session_id=session_id)
        if session.tokens_reserved == 0 or time.monotonic() > deadline:
            return session
        time.sleep(0.05)


@pytest.mark.parametrize("route", ["anthropic", "openai"])
def test_a_client_that_disconnects_mid_stream_is_charged_what_it_consumed(
    request, client, fake_upstream, slow_stream, route
):
    """The SDK's stream is closed after a few text deltas while the upstream (either kind)
    is still streaming: the row says client_disconnected, the reservation is handed back,
    and the ledger holds exactly what the row charged, more than nothing."""
    if route == "anthropic":
        request.getfixturevalue("thinker")  # claude (Anthropic-kind) serves sim-gpt first
    slow_stream(0.1)
    words = " ".join(f"word{i}" for i in range(60))
    session_id = f"m-gone-{route}"
    received = 0
    operation_id = None
    with client.messages.stream(
        model="sim-gpt",
        max_tokens=500,
        messages=ask(f"[[content:{words}]]"),
        extra_headers={"X-Aura-Session-Id": session_id},
    ) as stream:
        for event in stream:
            if event.type == "message_start":
                operation_id = event.message.id.removeprefix("msg_")
            elif event.type == "text":
                received += 1
                if received == 3:
                    break
    assert operation_id is not None and received == 3

    row = wait_for_telemetry(operation_id)
    assert (row.success, row.error_code, row.streamed) == (False, "client_disconnected", True)
    assert row.tokens_in > 0 and 0 < row.tokens_out < 500
    assert row.estimated_cost > 0
    session = wait_for_settled(session_id)
    assert session.tokens_reserved == 0 and session.cost_reserved_micros == 0
    assert session.tokens_used == row.tokens_in + row.tokens_out
    assert session.cost_accrued_micros * MICROS == row.estimated_cost
    assert fake_upstream.request_count == 1


@pytest.mark.parametrize("front", ["messages", "chat"])
def test_a_stream_whose_usage_arrives_only_in_message_delta_is_charged_exactly(
    client, thinker, fake_upstream, live_server_url, api_key, front
):
    """The Anthropic upstream's message_start carries zeros; message_delta alone reports
    the input and output tokens: the row and the ledger hold exactly those, at the
    model's prices, and the client is told the same usage."""
    LlmModel.objects.filter(provider__name="claude", name="sim-gpt").update(
        input_price=Decimal(3), output_price=Decimal(15)
    )
    tokens_in, tokens_out = 1_234, 567
    fake_upstream.enqueue(Fault(usage=(tokens_in, tokens_out), usage_at_end_only=True))
    session_id = f"m-late-usage-{front}"
    headers = {"X-Aura-Session-Id": session_id}
    if front == "messages":
        with client.messages.stream(
            model="sim-gpt", max_tokens=2000, messages=ask("Late usage"), extra_headers=headers
        ) as stream:
            final = stream.get_final_message()
        assert final.id == "msg_" + OperationTelemetry.objects.get().operation_id.hex
        reported = (final.usage.input_tokens, final.usage.output_tokens)
    else:
        chat = openai.OpenAI(
            base_url=f"{live_server_url}/v1", api_key=api_key.raw_key, max_retries=0
        )
        chunks = list(
            chat.chat.completions.create(
                model="sim-gpt",
                messages=ask("Late usage"),
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=headers,
            )
        )
        usage = chunks[-1].usage
        reported = (usage.prompt_tokens, usage.completion_tokens)
    assert fake_upstream.requests[-1]["model"] == "sim-gpt"
    assert fake_upstream.path_counts.get("/v1/messages") == 1  # the Anthropic route served it

    assert reported == (tokens_in, tokens_out)
    row = OperationTelemetry.objects.get(session_id=session_id)
    assert row.success and (row.tokens_in, row.tokens_out) == (tokens_in, tokens_out)
    micros = tokens_in * 3 + tokens_out * 15  # USD per million tokens = micro-dollars each
    assert row.estimated_cost == Decimal(micros) * MICROS
    session = wait_for_settled(session_id)
    assert session.tokens_reserved == 0
    assert session.tokens_used == tokens_in + tokens_out
    assert session.cost_accrued_micros == micros


PROMPT_CACHING = {"anthropic-beta": "prompt-caching-2024-07-31"}


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_anthropic_beta_reaches_an_anthropic_route(client, thinker, fake_upstream, stream):
    kwargs = {"messages": ask("Hi"), "extra_headers": {**PROMPT_CACHING, "anthropic-version": "x"}}
    _create(client, stream, **kwargs)
    sent = fake_upstream.request_headers[-1]
    assert sent["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert sent["anthropic-version"] == "2023-06-01"  # the adapter's own
    client.messages.create(model="sim-gpt", max_tokens=50, messages=ask("Hi again"))
    assert "anthropic-beta" not in fake_upstream.request_headers[-1]


def test_several_betas_reach_an_anthropic_route_as_one_list(client, thinker, fake_upstream):
    betas = {"anthropic-beta": "prompt-caching-2024-07-31, token-efficient-tools-2025-02-19"}
    client.messages.create(model="sim-gpt", max_tokens=50, messages=ask("Hi"), extra_headers=betas)
    sent = fake_upstream.request_headers[-1]["anthropic-beta"]
    assert sent == "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19"


def test_anthropic_beta_is_not_sent_to_an_openai_kind_route(client, fake_upstream):
    message = client.messages.create(
        model="sim-gpt", max_tokens=50, messages=ask("Hi"), extra_headers=PROMPT_CACHING
    )
    assert message.content[0].text == "Simulated answer to: Hi"
    assert fake_upstream.request_count == 1
    assert "anthropic-beta" not in fake_upstream.request_headers[-1]


@pytest.mark.parametrize(
    "value",
    ["", "prompt caching", "a,,b", "a;b", "x" * 513, "caf\u00e9"],
    ids=["empty", "space", "empty-name", "semicolon", "too-long", "non-ascii"],
)
def test_a_bad_anthropic_beta_is_a_400_naming_the_header(
    live_server_url, api_key, thinker, fake_upstream, value
):
    response = httpx.post(
        f"{live_server_url}/v1/messages",
        json={"model": "sim-gpt", "max_tokens": 10, "messages": ask("Hi")},
        headers={"x-api-key": api_key.raw_key, "anthropic-beta": value.encode("latin-1")},
    )
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == "anthropic-beta"
    assert "anthropic-beta" in error["error"]["message"]
    assert fake_upstream.request_count == 0


def test_a_bad_anthropic_beta_is_an_sdk_bad_request_on_count_tokens_too(client, thinker):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.count_tokens(
            model="sim-gpt", messages=ask("Hi"), extra_headers={"anthropic-beta": "a;b"}
        )
    assert caught.value.body["error"]["param"] == "anthropic-beta"


def test_an_anthropic_beta_is_part_of_the_cache_key(client, thinker, fake_upstream):
    """A beta may change the answer: the same question under another beta is a miss."""
    ask_ = {"model": "sim-gpt", "max_tokens": 100, "messages": ask("What is a neap tide?")}

    def cache_of(beta: str) -> str:
        headers = {"X-Aura-Enable-Cache": "true", "anthropic-beta": beta}
        raw = client.messages.with_raw_response.create(**ask_, extra_headers=headers)
        return raw.headers["x-aura-cache"]

    assert [cache_of("beta-a"), cache_of("beta-a"), cache_of("beta-b")] == ["miss", "hit", "miss"]
    assert fake_upstream.request_count == 2
