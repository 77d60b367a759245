"""Prompt caching is charged at the catalogue's rates, reads and writes alike, and the
worst case never falls below what a cache write can cost."""

from decimal import ROUND_CEILING, Decimal

import pytest
from genai_prices import Usage as CatalogueUsage
from genai_prices import calc_price

from aura_orchestrator.catalog.pricing import catalogue_price
from aura_orchestrator.catalog.selectors import Route
from aura_orchestrator.pipeline.chain import usage_of
from aura_orchestrator.pipeline.plan import worst_cost
from aura_orchestrator.providers import anthropic_messages, openai_compat
from aura_orchestrator.providers.base import ChatMessage, CompletionResult, Usage

PROMPT = [ChatMessage("user", "hi")]


def catalogue_route(kind: str, model: str) -> Route:
    price = catalogue_price(model=model, provider_kind=kind)
    assert price is not None
    return Route(
        "p",
        kind,
        "http://x",
        "",
        model,
        price.input_price,
        price.output_price,
        price.cached_input_price,
        price.cache_write_price,
    )


def answer(usage: Usage | None) -> CompletionResult:
    return CompletionResult(content="ok", usage=usage, model="m", finish_reason="stop", raw={})


def catalogue_micros(model: str, provider: str, usage: Usage) -> int:
    """genai-prices' own price of the usage (its input_tokens include reads and writes)."""
    priced = calc_price(
        CatalogueUsage(
            input_tokens=usage.tokens_in,
            cache_read_tokens=usage.cached_tokens_in,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.tokens_out,
        ),
        model_ref=model,
        provider_id=provider,
    )
    micros = priced.total_price * 1_000_000
    return int(micros.to_integral_value(rounding=ROUND_CEILING))


def test_anthropic_reads_and_writes_are_charged_at_the_catalogue_rates():
    raw = {
        "input_tokens": 1_234,
        "output_tokens": 567,
        "cache_read_input_tokens": 40_000,
        "cache_creation_input_tokens": 9_001,
    }
    usage = anthropic_messages.parse_usage(raw)
    assert usage == Usage(50_235, 567, 40_000, cache_write_tokens=9_001)
    route = catalogue_route("anthropic", "claude-sonnet-4")
    assert route.cache_write_price is not None
    assert route.input_price is not None and route.cache_write_price > route.input_price

    charged = usage_of(answer(usage), route, PROMPT, ())

    assert charged.cost_micros == catalogue_micros("claude-sonnet-4", "anthropic", usage)
    assert (charged.cache_read_tokens, charged.cache_write_tokens) == (40_000, 9_001)
    assert route.cached_input_price is not None
    saved = 40_000 * (route.input_price - route.cached_input_price) - 9_001 * (
        route.cache_write_price - route.input_price
    )
    assert charged.cache_savings_micros == saved


def test_openai_cached_tokens_are_part_of_the_prompt_at_the_cached_rate():
    raw = {
        "prompt_tokens": 30_000,
        "completion_tokens": 700,
        "prompt_tokens_details": {"cached_tokens": 12_800},
    }
    usage = openai_compat.parse_usage(raw)
    assert usage is not None and usage.cache_write_tokens == 0
    route = catalogue_route("openai", "gpt-4o")

    charged = usage_of(answer(usage), route, PROMPT, ())

    assert charged.cost_micros == catalogue_micros("gpt-4o", "openai", usage)
    assert (charged.tokens_in, charged.cache_read_tokens, charged.cache_write_tokens) == (
        30_000,
        12_800,
        0,
    )


def test_without_a_write_price_writes_cost_as_input():
    route = Route("p", "anthropic", "http://x", "", "m", Decimal(3), Decimal(15), None, None)
    charged = usage_of(answer(Usage(1_000, 0, 0, cache_write_tokens=1_000)), route, PROMPT, ())
    assert charged.cost_micros == 3_000
    assert charged.cache_savings_micros == 0


@pytest.mark.parametrize("written", [0, 500, 1_000])
def test_the_worst_case_covers_a_prompt_written_to_the_cache(written):
    """Writes cost 1.25x input: a worst case at the input price would be below the charge."""
    route = catalogue_route("anthropic", "claude-sonnet-4")
    usage = Usage(1_000, 200, 0, cache_write_tokens=written)
    charged = usage_of(answer(usage), route, PROMPT, ())
    worst = worst_cost(route, tokens_in=1_000, tokens_out=200)
    assert worst is not None and charged.cost_micros <= worst
    if written == 1_000:
        assert charged.cost_micros == worst
