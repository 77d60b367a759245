"""Anthropic-only fields in `extra` (from /v1/messages): sent in the Messages body,
refused by OpenAI-kind routes where no chat-completions server takes them; and the
adapter's token count."""

import json

import httpx
import pytest

from aura_orchestrator.providers import anthropic_messages as messages
from aura_orchestrator.providers.anthropic import count_tokens
from aura_orchestrator.providers.base import (
    ChatMessage,
    CompletionRequest,
    ProviderConfig,
    ProviderRequestRejected,
    Refusal,
)
from aura_orchestrator.providers.openai_compat import OpenAICompatAdapter

CONFIG = ProviderConfig("claude", "anthropic", "https://api.anthropic.test", "sk-ant-x")
THINKING = {"type": "enabled", "budget_tokens": 1024}


def asking(**fields: object) -> CompletionRequest:
    return CompletionRequest(model="claude-test", messages=(ChatMessage("user", "Hi"),), **fields)


def test_top_k_and_thinking_are_sent_and_thinking_sends_no_sampling():
    request = asking(temperature=0.3, max_tokens=2000, extra={"top_k": 5, "thinking": THINKING})
    body = messages.request_body(request, stream=False)
    assert (body["top_k"], body["thinking"]) == (5, THINKING)
    assert "temperature" not in body and "top_p" not in body
    assert messages.refusal(request) is None


def test_other_extra_fields_are_still_refused_by_anthropic_routes():
    assert messages.refusal(asking(extra={"seed": 1})) == Refusal(
        "seed", "The Messages API has no `seed`."
    )


def test_openai_kind_routes_refuse_thinking_and_pass_top_k():
    adapter = OpenAICompatAdapter()
    assert adapter.refusal(asking(extra={"thinking": THINKING})).param == "thinking"
    assert adapter.refusal(asking(extra={"top_k": 5})) is None


@pytest.mark.asyncio
async def test_count_tokens_posts_the_countable_body_and_reads_input_tokens():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"input_tokens": 42})

    request = asking(temperature=0.5, max_tokens=10, extra={"thinking": THINKING})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        assert await count_tokens(client, CONFIG, request) == 42
    assert str(seen[0].url) == "https://api.anthropic.test/v1/messages/count_tokens"
    assert seen[0].headers["x-api-key"] == "sk-ant-x"
    body = json.loads(seen[0].content)
    assert set(body) == {"model", "messages", "thinking"}


@pytest.mark.asyncio
async def test_count_tokens_failures_are_provider_errors():
    def handler(request: httpx.Request) -> httpx.Response:
        error = {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}
        return httpx.Response(400, json=error)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ProviderRequestRejected):
            await count_tokens(client, CONFIG, asking())
