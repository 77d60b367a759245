"""The rest of the chat surface through the official OpenAI SDK against a real
`manage.py serve`: images (https and data: URLs), n choices, logprobs, fields this
gateway does not know, and bad input answered in OpenAI's error shape.

The fake upstream ends its default answer with " [images: N]" when images reached it,
gives `n` choices (streamed interleaved) and logprobs per word piece.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from aura_orchestrator.api.chat import MAX_IMAGE_URL_CHARS, parse_messages, parse_tools
from aura_orchestrator.catalog.tokens import count_chat_tokens
from budgets.models import BudgetConstraint, LlmSession
from telemetry.models import OperationTelemetry
from tests.gateway.sdk_support import WEATHER, data_url, image_part, png, rows_of

pytestmark = pytest.mark.django_db(transaction=True)


def user_with(*parts: dict, text: str = "What is in this picture?") -> dict:
    return {"role": "user", "content": [{"type": "text", "text": text}, *parts]}


@pytest.mark.parametrize(
    "part",
    [
        image_part("https://example.com/cat.png", detail="low"),
        image_part(data_url(png(64, 64)), detail="high"),
        image_part(data_url(png(1, 1))),
    ],
    ids=["https-low", "data-png-high", "data-png-auto"],
)
def test_an_image_reaches_the_upstream_verbatim_and_is_counted(client, fake_upstream, part):
    """The part goes on as sent (url and detail; an https URL is never fetched here), the
    upstream saw one image, its tokens are billed, telemetry counts one image."""
    message = user_with(part)
    raw = client.chat.completions.with_raw_response.create(model="sim-gpt", messages=[message])
    completion = raw.parse()
    assert completion.choices[0].message.content.endswith(" [images: 1]")
    assert fake_upstream.requests[-1]["messages"] == [message]
    image_tokens = 85 if part["image_url"].get("detail") == "low" else 765  # the upstream's rule
    assert completion.usage.prompt_tokens > image_tokens
    row = OperationTelemetry.objects.get(operation_id=raw.headers["x-aura-operation-id"])
    assert (row.images_sent, row.tokens_in) == (1, completion.usage.prompt_tokens)


def test_n_gives_every_choice_also_streamed(client, fake_upstream):
    """n=2: two choices, indexes 0 and 1, both answers; streamed, the chunks of both
    indexes come (interleaved) and each ends with its own finish."""
    ask = {"model": "sim-gpt", "messages": [{"role": "user", "content": "Two ideas"}], "n": 2}
    completion = client.chat.completions.create(**ask, extra_headers={"X-Aura-Session-Id": "n-two"})
    assert [c.index for c in completion.choices] == [0, 1]
    assert {c.message.content for c in completion.choices} == {"Simulated answer to: Two ideas"}
    assert fake_upstream.requests[-1]["n"] == 2

    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    stream = client.chat.completions.create(
        **ask,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Aura-Session-Id": "n-two"},
    )
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert texts == {0: "Simulated answer to: Two ideas", 1: "Simulated answer to: Two ideas"}
    assert finishes == {0: "stop", 1: "stop"}
    rows = rows_of("n-two", 2)
    assert [r.choices for r in rows] == [2, 2]
    assert rows[0].tokens_out == completion.usage.completion_tokens


def test_logprobs_with_top_logprobs_also_streamed(client, fake_upstream):
    ask = {
        "model": "sim-gpt",
        "messages": [{"role": "user", "content": "Count the waves"}],
        "logprobs": True,
        "top_logprobs": 2,
    }
    completion = client.chat.completions.create(**ask)
    content = completion.choices[0].logprobs.content
    assert len(content[0].top_logprobs) == 2
    assert content[0].top_logprobs[0].token == content[0].token
    assert "".join(t.token for t in content).strip() == completion.choices[0].message.content
    sent = fake_upstream.requests[-1]
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)

    streamed = []
    for chunk in client.chat.completions.create(**ask, stream=True):
        for choice in chunk.choices:
            if choice.logprobs and choice.logprobs.content:
                streamed += choice.logprobs.content
    assert [t.token for t in streamed] == [t.token for t in content]
    assert all(len(t.top_logprobs) == 2 for t in streamed)


def test_fields_the_gateway_does_not_know_reach_the_upstream_unchanged(client, fake_upstream):
    client.chat.completions.create(
        model="sim-gpt",
        messages=[{"role": "user", "content": "Hello"}],
        extra_body={"future_field": {"a": [1, 2]}, "seed": 7},
    )
    sent = fake_upstream.requests[-1]
    assert sent["future_field"] == {"a": [1, 2]}
    assert sent["seed"] == 7


def test_the_answer_keeps_the_providers_fingerprint_and_usage_details(client, fake_upstream):
    completion = client.chat.completions.create(
        model="sim-gpt", messages=[{"role": "user", "content": "Hello"}]
    )
    assert completion.system_fingerprint == "fp_sim"
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0
    # Streamed: each chunk as the provider sent it, the usage chunk with its details.
    chunks = list(
        client.chat.completions.create(
            model="sim-gpt",
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {chunk.system_fingerprint for chunk in chunks[:-1]} == {"fp_sim"}
    usage = chunks[-1].usage
    assert usage.completion_tokens > 0
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0


# --- Bad input -----------------------------------------------------------------------------

TOOL_WITHOUT_NAME = {"type": "function", "function": {"parameters": {"type": "object"}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [TOOL_WITHOUT_NAME]}, "tools[0].function.name"),
        (
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {**CALL, "function": {**CALL["function"], "arguments": {"city": "x"}}}
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": "sun"},
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {**CALL, "function": {**CALL["function"], "arguments": "{}"}}
                        ],
                    },
                    {"role": "tool", "content": "sun"},
                ]
            },
            "messages[2].tool_call_id",
        ),
        (
            {"messages": [{"role": "user", "content": [image_part("ftp://x")]}]},
            "messages[0].content[0].image_url.url",
        ),
        ({"tool_choice": "auto"}, "tool_choice"),
    ],
    ids=[
        "tool-without-name",
        "arguments-not-a-string",
        "tool-message-without-id",
        "ftp-image",
        "tool-choice-without-tools",
    ],
)
def test_bad_input_is_a_400_in_openais_shape_naming_the_field(client, fake_upstream, fields, param):
    ask = {"model": "sim-gpt", "messages": [{"role": "user", "content": "Hi"}], **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**ask)
    assert caught.value.status_code == 400
    body = caught.value.body
    assert body["type"] == "invalid_request_error"
    assert body["param"] == param
    assert param in body["message"] or body["message"]
    assert fake_upstream.request_count == 0


def test_an_image_over_20_mb_is_a_400_naming_it_not_a_413(client, fake_upstream):
    """A 30 MB data URL fits the body limit (images up to 20 MB must) but not the image
    limit: a 400 naming the part's url."""
    url = "data:image/png;base64," + "A" * (30 * 1024 * 1024)
    assert len(url) > MAX_IMAGE_URL_CHARS
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="sim-gpt", messages=[{"role": "user", "content": [image_part(url)]}]
        )
    assert caught.value.body["param"] == "messages[0].content[0].image_url.url"
    assert fake_upstream.request_count == 0


def test_an_image_of_almost_20_mb_is_taken(client, fake_upstream):
    """A data URL just under the image limit goes through (the body limit allows it)."""
    image = png(8, 8)
    padding = MAX_IMAGE_URL_CHARS - len(data_url(image)) - 64
    url = data_url(image) + "A" * (padding - padding % 4)
    completion = client.chat.completions.create(
        model="sim-gpt", messages=[{"role": "user", "content": [image_part(url, detail="low")]}]
    )
    assert completion.choices[0].message.content.endswith(" [images: 1]")
    assert json.dumps(fake_upstream.requests[-1]["messages"][0]["content"][0]["image_url"]) == (
        json.dumps({"url": url, "detail": "low"})
    )


def test_tools_without_a_user_turn_are_answered_in_text(client, fake_upstream):
    """Not a tool call when the last message is the assistant's (the upstream's rule): the
    gateway relays a plain answer with tools present."""
    completion = client.chat.completions.create(
        model="sim-gpt",
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        tools=[WEATHER],
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None


# --- A hard cap under concurrency ----------------------------------------------------------


@pytest.fixture
def slow_upstream(fake_upstream):
    """The upstream answers after `seconds`; restored afterwards (shared server)."""

    def set_latency(seconds: float) -> None:
        fake_upstream.latency = seconds

    yield set_latency
    fake_upstream.latency = 0.0


def test_a_hard_session_cap_admits_exactly_the_worst_cases_it_can_hold(
    client, fake_upstream, slow_upstream
):
    """Each call carries an image and a tool: its worst case is its prompt counted with
    them (an https image of unknown size counts as the largest) + n x max_tokens. With
    every call in flight at once, a hard token cap admits exactly floor(cap / worst case)
    of 12; the others get 402 budget_exceeded. Settled on actual usage, the session ends
    within its cap, nothing reserved, one telemetry row per call, and the ledger's total
    is the rows' total."""
    body = {
        "model": "sim-gpt",
        "messages": [user_with(image_part("https://example.com/cat.png"), text="Weather here?")],
        "tools": [WEATHER],
        "max_tokens": 50,
        "n": 2,
    }
    prompt = count_chat_tokens(
        parse_messages(body["messages"]),
        tools=parse_tools(body["tools"]),
        model="sim-gpt",
        kind="openai",
    )
    worst = prompt + 2 * 50
    admits = 4
    cap = admits * worst + worst // 2
    BudgetConstraint.objects.create(name="images-and-tools", max_tokens_per_session=cap)

    # The server's own worst case: what an open stream holds on a session of its own.
    probe = {"X-Aura-Session-Id": "cap-probe", "X-Aura-Budget": "images-and-tools"}
    with client.chat.completions.with_streaming_response.create(
        stream=True, extra_headers=probe, **body
    ) as streamed:
        assert cap - int(streamed.headers["x-aura-budget-remaining-tokens"]) == worst

    slow_upstream(2.0)  # every admitted call holds its reservation 2 s
    headers = {"X-Aura-Session-Id": "cap-many", "X-Aura-Budget": "images-and-tools"}

    def call(_: int) -> tuple[int, str, float]:
        try:
            raw = client.chat.completions.with_raw_response.create(extra_headers=headers, **body)
            status, response = raw.status_code, raw
        except openai.APIStatusError as exc:
            assert exc.body["code"] == "budget_exceeded", exc.body
            status, response = exc.status_code, exc.response
        return status, response.headers["x-aura-operation-id"], time.monotonic()

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(call, range(12)))

    admitted = [o for o in outcomes if o[0] == 200]
    refused = [o for o in outcomes if o[0] == 402]
    assert (len(admitted), len(refused)) == (admits, 12 - admits)
    # All were in flight at once: every refusal came before the first admitted answer.
    assert max(o[2] for o in refused) < min(o[2] for o in admitted)

    session = LlmSession.objects.get(session_id="cap-many")
    rows = rows_of("cap-many", 12)
    assert {str(r.operation_id) for r in rows} == {o[1] for o in outcomes}
    assert sorted(r.error_code for r in rows if not r.success) == ["budget_exceeded"] * 8
    assert all(r.images_sent == 1 and r.tools_sent == 1 and r.choices == 2 for r in rows)
    assert session.tokens_reserved == 0
    assert session.operation_count == admits
    assert 0 < session.tokens_used <= cap
    assert session.tokens_used == sum(r.tokens_in + r.tokens_out for r in rows)
