"""Settlement prices cached input at the model's cache-read price, where it has one."""

from decimal import Decimal

from aura_orchestrator.catalog.selectors import Route
from aura_orchestrator.money import cost_micros
from aura_orchestrator.pipeline.chain import usage_of
from aura_orchestrator.providers.base import ChatMessage, CompletionResult, Usage


def route(cached_price: Decimal | None) -> Route:
    return Route("p", "openai", "http://x", "", "m", Decimal(2), Decimal(8), cached_price)


def answer(usage: Usage) -> CompletionResult:
    return CompletionResult(content="ok", usage=usage, model="m", finish_reason="stop", raw={})


def test_cached_prompt_tokens_are_charged_at_the_cache_read_price():
    usage = Usage(tokens_in=1_000_000, tokens_out=0, cached_tokens_in=400_000)
    charged = usage_of(answer(usage), route(Decimal("0.5")), [ChatMessage("user", "hi")], ())
    # 600k at $2/M + 400k at $0.50/M = $1.40
    assert charged.cost_micros == 1_400_000
    assert charged.tokens_in == 1_000_000  # the ledger's tokens are all tokens still


def test_without_a_cache_read_price_cached_tokens_cost_as_any_input():
    usage = Usage(tokens_in=1_000_000, tokens_out=10, cached_tokens_in=400_000)
    charged = usage_of(answer(usage), route(None), [ChatMessage("user", "hi")], ())
    assert charged.cost_micros == 2_000_000 + 80


def test_a_cached_count_above_the_prompt_never_makes_a_negative_charge():
    cost = cost_micros(
        tokens_in=10,
        tokens_out=0,
        input_price=Decimal(1),
        output_price=Decimal(1),
        cached_in=50,
        cached_input_price=Decimal(0),
    )
    assert cost == 0
