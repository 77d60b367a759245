"""Money is exact: Decimal USD at the edges, integer micro-dollars in the ledger.

Prices are USD per million tokens, so a price is also micro-dollars per token, and a
cost in micro-dollars is `tokens * price`, rounded up to a whole micro-dollar so that a
reservation is never smaller than what it covers.
"""

from decimal import ROUND_CEILING, ROUND_DOWN, Decimal

MICROS = Decimal("0.000001")


def usd_to_micros(amount: Decimal) -> int:
    """A cap in USD as whole micro-dollars, rounded down (a cap never grows by rounding)."""
    return int((amount / MICROS).to_integral_value(rounding=ROUND_DOWN))


def micros_to_usd(micros: int | Decimal) -> Decimal:
    return (Decimal(micros) * MICROS).quantize(MICROS)


def cost_micros(
    *,
    tokens_in: int,
    tokens_out: int,
    input_price: Decimal,
    output_price: Decimal,
    cached_in: int = 0,
    cached_input_price: Decimal | None = None,
    cache_written: int = 0,
    cache_write_price: Decimal | None = None,
) -> int:
    """Cost of a call in micro-dollars (prices in USD per million tokens), rounded up.
    `cached_in` is the part of `tokens_in` read from the provider's prompt cache, priced
    at `cached_input_price`; `cache_written` the part written to it, priced at
    `cache_write_price` (each, when the model has no such price, as any input token)."""
    raw = Decimal(tokens_in) * input_price + Decimal(tokens_out) * output_price
    raw -= cache_adjustment(
        tokens_in=tokens_in,
        input_price=input_price,
        cached_in=cached_in,
        cached_input_price=cached_input_price,
        cache_written=cache_written,
        cache_write_price=cache_write_price,
    )
    return int(raw.to_integral_value(rounding=ROUND_CEILING))


def cache_adjustment(
    *,
    tokens_in: int,
    input_price: Decimal,
    cached_in: int,
    cached_input_price: Decimal | None,
    cache_written: int,
    cache_write_price: Decimal | None,
) -> Decimal:
    """What prompt caching took off a prompt priced as plain input, in micro-dollars:
    reads save (input - read price) each, writes cost (write - input price) each more, so
    it can be negative. The one rule of both the charge and the savings telemetry keeps."""
    read = min(cached_in, tokens_in)
    written = min(cache_written, tokens_in - read)
    saved = Decimal(0)
    if read and cached_input_price is not None:
        saved += Decimal(read) * (input_price - cached_input_price)
    if written and cache_write_price is not None:
        saved -= Decimal(written) * (cache_write_price - input_price)
    return saved
