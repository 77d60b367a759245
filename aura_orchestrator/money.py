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


def micros_to_usd(micros: int) -> Decimal:
    return (Decimal(micros) * MICROS).quantize(MICROS)


def cost_micros(
    *,
    tokens_in: int,
    tokens_out: int,
    input_price: Decimal,
    output_price: Decimal,
    cached_in: int = 0,
    cached_input_price: Decimal | None = None,
) -> int:
    """Cost of a call in micro-dollars (prices in USD per million tokens), rounded up.
    `cached_in` is the part of `tokens_in` read from the provider's prompt cache, priced
    at `cached_input_price` when the model has one (else as any input token)."""
    raw = Decimal(tokens_in) * input_price + Decimal(tokens_out) * output_price
    if cached_in and cached_input_price is not None:
        raw -= Decimal(min(cached_in, tokens_in)) * (input_price - cached_input_price)
    return int(raw.to_integral_value(rounding=ROUND_CEILING))
