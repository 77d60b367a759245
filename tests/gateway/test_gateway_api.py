"""The gateway in-process (httpx against the ASGI app): validation, error shapes, models,
Anthropic streams, retries and fallback before the first chunk, failures after it."""

import json

import pytest
from django.conf import settings

from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.catalog.tokens import count_tokens
from aura_orchestrator.db import db
from aura_orchestrator.pipeline import chain
from aura_orchestrator.providers import ProviderUnavailable, StreamChunk, get_adapter
from aura_orchestrator.simulator import Fault
from budgets.models import BudgetConstraint, LlmSession
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import prompt_tokens

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

CHAT = "/v1/chat/completions"


def chat(**extra) -> dict:
    return {"model": "sim-gpt", "messages": [{"role": "user", "content": "Hello"}], **extra}


def sse_data(text: str) -> list:
    """The `data:` payloads of an SSE body, JSON-decoded except `[DONE]`."""
    payloads = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(n=0), "n"),
        (chat(model=""), "model"),
        (chat(messages=[]), "messages"),
        (chat(temperature=3), "temperature"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        # The bad tool inputs the gateway-surface issue names: a tool without a name,
        # arguments that are not a string, a tool message without tool_call_id, an image
        # URL that is neither http(s) nor data:.
        (chat(tools=[{"type": "function", "function": {}}]), "tools[0].function.name"),
        (
            chat(
                messages=[
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": {}},
                            }
                        ],
                    },
                ]
            ),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (chat(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id"),
        (chat(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role"),
        (
            chat(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}],
                    }
                ]
            ),
            "messages[0].content[0].image_url.url",
        ),
        (
            chat(messages=[{"role": "user", "content": [{"type": "video", "video": "x"}]}]),
            "messages[0].content[0].type",
        ),
        (chat(tool_choice="auto"), "tool_choice"),
        (
            chat(
                tools=[{"type": "function", "function": {"name": "f"}}],
                tool_choice={"type": "function", "function": {"name": "g"}},
            ),
            "tool_choice.function.name",
        ),
        (chat(logprobs="yes"), "logprobs"),
        (chat(top_logprobs=21), "top_logprobs"),
        (chat(response_format={"type": "yaml"}), "response_format"),
        (
            chat(response_format={"type": "json_schema", "json_schema": {"schema": {"type": 5}}}),
            "response_format.json_schema",
        ),
        (chat(metadata={"operation_type": "dreaming"}), "metadata.operation_type"),
        (chat(metadata={"session_id": 5}), "metadata"),
        ([1, 2], "body"),
    ],
)
async def test_bad_requests_are_400_in_openai_error_shape_naming_the_parameter(
    asgi_client, provider, fake_upstream, body, param
):
    response = await asgi_client.post(CHAT, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_request",
        param,
    )
    assert fake_upstream.request_count == 0


async def test_malformed_json_and_bad_headers_are_400(asgi_client, provider):
    """Not JSON at all, an unknown operation type header, a non-boolean cache header."""
    response = await asgi_client.post(
        CHAT, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
    for header, value in (("X-Aura-Operation-Type", "dreaming"), ("X-Aura-Enable-Cache", "maybe")):
        response = await asgi_client.post(CHAT, json=chat(), headers={header: value})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == header


async def test_a_missing_or_wrong_key_is_401_in_openai_error_shape(asgi_client, provider):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}):
        response = await asgi_client.post(CHAT, json=chat(), headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.json()["error"]["code"] == "unauthorized"


async def test_get_on_chat_completions_is_405_and_unknown_paths_404(asgi_client, provider):
    response = await asgi_client.get(CHAT)
    assert response.status_code == 405 and "error" in response.json()
    response = await asgi_client.get("/v1/images/generations")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


async def test_models_lists_bare_names_once_and_every_provider_model_pair(
    asgi_client, provider, backup_provider
):
    """Both providers serve sim-gpt: one bare `sim-gpt` (routed over both), then one id
    per provider; each id can be retrieved, an unknown one is model_not_found."""
    response = await asgi_client.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == ["sim-gpt", "backup/sim-gpt", "primary/sim-gpt"]
    assert {m["owned_by"] for m in body["data"][1:]} == {"backup", "primary"}
    response = await asgi_client.get("/v1/models/primary/sim-gpt")
    assert response.status_code == 200 and response.json()["owned_by"] == "primary"
    response = await asgi_client.get("/v1/models/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


async def test_metadata_names_the_session_and_operation_type_when_no_header_does(
    asgi_client, provider, fake_upstream
):
    """metadata.session_id / operation_type apply; the preset of that type fills what the
    request leaves out (planning: max_tokens 2000, temperature 0.7)."""
    response = await asgi_client.post(
        CHAT, json=chat(metadata={"session_id": "meta-1", "operation_type": "Planning"})
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-aura-session-id"] == "meta-1"
    row = await OperationTelemetry.objects.aget(session_id="meta-1")
    assert row.operation_type == "planning"
    sent = fake_upstream.requests[-1]
    assert (sent["max_tokens"], sent["temperature"]) == (2000, 0.7)


@pytest.fixture
def anthropic_provider(db, fake_upstream):
    """Provider `claude` (Anthropic Messages API) on the fake upstream, model sim-claude."""
    return provider_configure(
        name="claude",
        kind="anthropic",
        base_url=fake_upstream.anthropic_base_url,
        api_key_env="TEST_PRIMARY_API_KEY",
        model="sim-claude",
        input_price=1,
        output_price=2,
        make_default=True,
    )


async def test_an_anthropic_stream_is_translated_to_openai_chunks_with_usage(
    asgi_client, anthropic_provider, fake_upstream
):
    response = await asgi_client.post(
        CHAT,
        json=chat(model="claude/sim-claude", stream=True, stream_options={"include_usage": True}),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_data(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Simulated answer to: Hello"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    usage = chunks[-1]["usage"]
    row = await OperationTelemetry.objects.aget(
        operation_id=response.headers["x-aura-operation-id"]
    )
    assert (row.provider_name, row.streamed) == ("claude", True)
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (row.tokens_in, row.tokens_out)
    assert fake_upstream.path_counts["/v1/messages"] == 1


async def test_a_stream_is_retried_and_falls_back_before_its_first_chunk(
    asgi_client, provider, backup_provider, fake_upstream
):
    """primary answers 500 then 400 (not retryable): the stream comes from backup, the
    client sees one clean stream, telemetry shows the three attempts."""
    fake_upstream.enqueue(Fault(status=500), Fault(status=400))
    response = await asgi_client.post(CHAT, json=chat(stream=True))
    assert response.status_code == 200, response.text
    assert sse_data(response.text)[-1] == "[DONE]"
    row = await OperationTelemetry.objects.aget(
        operation_id=response.headers["x-aura-operation-id"]
    )
    assert (row.provider_name, row.retry_count, row.success) == ("backup", 2, True)
    assert [a["outcome"] for a in row.attempts] == [
        "ProviderUnavailable",
        "ProviderRequestRejected",
        "ok",
    ]


async def test_a_stream_whose_every_attempt_fails_before_a_chunk_is_an_http_error(
    asgi_client, provider, fake_upstream
):
    fake_upstream.enqueue(*[Fault(status=400)])
    response = await asgi_client.post(CHAT, json=chat(stream=True))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "provider_error"
    assert response.headers["x-should-retry"] == "false"


class _BreaksAfterTwoChunks:
    """An adapter whose stream sends two text chunks, then loses the provider."""

    async def stream(self, client, config, request):
        yield StreamChunk("Once ", raw=None)
        yield StreamChunk("upon ", raw=None)
        raise ProviderUnavailable("upstream went away", provider=config.name)


async def test_a_provider_failing_mid_stream_ends_it_with_an_error_event(
    asgi_client, provider, fake_upstream, monkeypatch
):
    """No retry after the first chunk: the client gets the two chunks then an OpenAI error
    event (no [DONE]); the ledger is charged what was consumed and nothing stays reserved."""
    monkeypatch.setattr(chain, "get_adapter", lambda kind: _BreaksAfterTwoChunks())
    response = await asgi_client.post(
        CHAT, json=chat(stream=True), headers={"X-Aura-Session-Id": "broken-1"}
    )
    assert response.status_code == 200
    events = sse_data(response.text)
    assert "[DONE]" not in events
    assert events[-1]["error"]["code"] == "provider_error"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "Once upon "
    row = await OperationTelemetry.objects.aget(session_id="broken-1")
    counted = count_tokens("Once upon ", model="sim-gpt")  # the provider sent no usage
    assert (row.success, row.error_code, row.tokens_out) == (False, "provider_error", counted)
    session = await LlmSession.objects.aget(session_id="broken-1")
    assert session.tokens_reserved == 0
    assert session.tokens_used == row.tokens_in + row.tokens_out
    assert get_adapter("openai") is not None  # the real registry is untouched


async def test_an_oversized_body_is_413_and_lone_surrogates_are_400_never_500(
    asgi_client, provider, fake_upstream
):
    """A body over DATA_UPLOAD_MAX_MEMORY_SIZE, and JSON escaping a lone surrogate that no
    provider request could carry, are the client's fault: clear 4xx, no provider call."""
    huge = chat(messages=[{"role": "user", "content": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE}])
    response = await asgi_client.post(CHAT, json=huge)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    response = await asgi_client.post(
        CHAT,
        content=b'{"model": "sim-gpt", "messages": [{"role": "user", "content": "\\ud800"}]}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].content"
    assert fake_upstream.request_count == 0


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}}


async def test_a_streamed_json_schema_answer_is_validated_at_the_end(
    asgi_client, provider, fake_upstream
):
    """A valid streamed document ends with [DONE]; an invalid one ends with a
    schema_validation_failed error event (it was already sent, so no corrective retry)
    and is not cached."""
    ask = chat(stream=True, response_format=JSON_SCHEMA_FORMAT)
    headers = {"X-Aura-Enable-Cache": "true", "X-Aura-Session-Id": "schema-stream"}
    fake_upstream.enqueue(Fault(content='{"n": "not a number"}'))
    response = await asgi_client.post(CHAT, json=ask, headers=headers)
    assert response.status_code == 200
    events = sse_data(response.text)
    assert events[-1]["error"]["code"] == "schema_validation_failed"
    assert "[DONE]" not in events

    response = await asgi_client.post(CHAT, json=ask, headers=headers)
    assert response.headers["x-aura-cache"] == "miss"  # the invalid answer was not stored
    events = sse_data(response.text)
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert json.loads(text) == {"n": 1}
    assert fake_upstream.request_count == 2


async def test_a_capped_stream_reports_the_budget_left_after_its_reservation(
    asgi_client, provider, fake_upstream
):
    """Headers leave before the cost is known: remaining tokens are the cap minus the
    worst case held for this stream; without include_usage no chunk carries usage."""
    await db(
        lambda: BudgetConstraint.objects.create(name="stream-cap", max_tokens_per_session=5000)
    )
    response = await asgi_client.post(
        CHAT,
        json=chat(stream=True, max_tokens=100),
        headers={"X-Aura-Budget": "stream-cap", "X-Aura-Session-Id": "capped-stream"},
    )
    assert response.status_code == 200
    reserved = prompt_tokens("Hello") + 100
    assert int(response.headers["x-aura-budget-remaining-tokens"]) == 5000 - reserved
    assert "x-aura-cost" not in response.headers
    events = sse_data(response.text)
    assert events[-1] == "[DONE]" and all("usage" not in e for e in events[:-1])
