"""Default prices from the bundled genai-prices catalogue (offline; never auto-updated)."""

import logging
from dataclasses import dataclass
from decimal import Decimal

from genai_prices import Usage, calc_price

from aura_orchestrator.providers.registry import KINDS, kind_spec

logger = logging.getLogger(__name__)

_MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class CataloguePrice:
    input_price: Decimal
    output_price: Decimal
    cached_input_price: Decimal | None
    cache_write_price: Decimal | None = None


def catalogue_price(*, model: str, provider_kind: str | None = None) -> CataloguePrice | None:
    """USD per million tokens for `model`, or None when the catalogue does not know it.

    Looked up under the catalogue the provider kind declares first, then by model name alone.
    """
    provider_id = kind_spec(provider_kind).price_catalogue if provider_kind in KINDS else None
    name = model.rsplit("/", 1)[-1]
    for provider in (provider_id, None) if provider_id else (None,):
        try:
            full = calc_price(
                Usage(input_tokens=_MILLION, output_tokens=_MILLION),
                model_ref=name,
                provider_id=provider,
            )
            cached = calc_price(
                Usage(input_tokens=_MILLION, cache_read_tokens=_MILLION, output_tokens=0),
                model_ref=name,
                provider_id=provider,
            )
            # genai-prices counts cache writes inside input_tokens, like Usage.tokens_in;
            # a model without a write rate prices them as input.
            written = calc_price(
                Usage(input_tokens=_MILLION, cache_write_tokens=_MILLION, output_tokens=0),
                model_ref=name,
                provider_id=provider,
            )
        except LookupError:
            continue
        except Exception:  # the catalogue is advisory: a bad entry must not break config
            logger.warning("price catalogue failed for %s", name, exc_info=True)
            return None
        return CataloguePrice(
            input_price=Decimal(full.input_price),
            output_price=Decimal(full.output_price),
            cached_input_price=Decimal(cached.input_price),
            cache_write_price=Decimal(written.input_price),
        )
    return None
