"""Prompt caching end to end: the upstream reports cache reads and writes (the simulator's
`[[cache:R,W]]`), the gateway charges each at the model's rate and the row keeps them."""

import json
from decimal import ROUND_CEILING, Decimal

import pytest

from aura_orchestrator.catalog.models import LlmModel
from aura_orchestrator.money import MICROS
from telemetry.models import OperationTelemetry
from tests.gateway.test_anthropic_tools import claude

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

CHAT = "/v1/chat/completions"
READ, WRITTEN = 1_200, 700
# USD per million tokens: (input, output, cache read, cache write).
PRICES = {
    "sim-claude": (Decimal(3), Decimal(15), Decimal("0.3"), Decimal("3.75")),
    "sim-gpt": (Decimal("2.5"), Decimal(10), Decimal("1.25"), None),
}


async def priced(name: str) -> tuple[Decimal, Decimal, Decimal, Decimal | None]:
    input_price, output_price, read_price, write_price = PRICES[name]
    await LlmModel.objects.filter(name=name).aupdate(
        input_price=input_price,
        output_price=output_price,
        cached_input_price=read_price,
        cache_write_price=write_price,
    )
    return PRICES[name]


@pytest.fixture
def both_kinds(provider, fake_upstream):
    """`primary` (OpenAI-compatible, sim-gpt) and `claude` (Anthropic, sim-claude)."""
    claude(fake_upstream, make_default=False)


def usage_of(response_text: str, *, stream: bool) -> dict:
    """The answer's usage: the body's, or the stream's usage chunk."""
    if not stream:
        return json.loads(response_text)["usage"]
    chunks = [json.loads(line[6:]) for line in response_text.splitlines() if line[:7] == "data: {"]
    return next(chunk["usage"] for chunk in reversed(chunks) if chunk.get("usage"))


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_cache_reads_and_writes_are_charged_and_recorded(
    asgi_client, both_kinds, kind, stream
):
    if kind == "anthropic":
        model, written = "claude/sim-claude", WRITTEN
    else:
        model, written = "primary/sim-gpt", 0  # OpenAI reports no cache writes
    input_price, output_price, read_price, write_price = await priced(model.split("/")[1])
    content = f"Summarise the handbook ({kind}, {stream}) [[cache:{READ},{written}]]"
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream_options"] = {"include_usage": True}

    response = await asgi_client.post(CHAT, json={**body, "stream": stream})

    assert response.status_code == 200, response.text
    usage = usage_of(response.text, stream=stream)
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    assert prompt > READ + written  # reads and writes are parts of the prompt, whatever the kind
    write_rate = write_price if write_price is not None else input_price
    expected = (
        (prompt - READ - written) * input_price
        + READ * read_price
        + written * write_rate
        + completion * output_price
    )
    row = await OperationTelemetry.objects.aget(
        operation_id=response.headers["x-aura-operation-id"]
    )
    assert (row.tokens_in, row.tokens_out) == (prompt, completion)
    assert (row.cache_read_tokens, row.cache_write_tokens) == (READ, written)
    micros = int(expected.to_integral_value(rounding=ROUND_CEILING))
    assert row.estimated_cost == (Decimal(micros) * MICROS).quantize(MICROS)
    saved = READ * (input_price - read_price) - written * (write_rate - input_price)
    assert row.cache_savings == (saved * MICROS).quantize(MICROS)
