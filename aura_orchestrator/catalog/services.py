"""Writes: configure providers and models (idempotent)."""

from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from aura_orchestrator.catalog.models import LlmModel, Provider, ProviderKind
from aura_orchestrator.catalog.pricing import catalogue_price
from aura_orchestrator.catalog.secrets import env_refusal


@dataclass(frozen=True, slots=True)
class ProviderConfigured:
    provider: Provider
    model: LlmModel
    provider_created: bool
    model_created: bool


@transaction.atomic
def provider_configure(
    *,
    name: str,
    kind: str,
    base_url: str,
    api_key_env: str,
    model: str,
    input_price: Decimal | None = None,
    output_price: Decimal | None = None,
    make_default: bool = False,
    api_key: str | None = None,
) -> ProviderConfigured:
    """Create or update a provider and one of its models; the model becomes its default.

    Prices given here are the operator's (`manual`); otherwise the bundled catalogue's,
    and `unknown` when the catalogue does not know the model. `api_key` is stored
    encrypted ("" removes it; None keeps the stored one). A variable `api_key_env` may
    not name is a ValidationError on `api_key_env` (catalog/secrets.py).
    """
    if kind not in ProviderKind.values:
        raise ValueError(f"kind must be one of {', '.join(ProviderKind.values)}")
    refusal = env_refusal(api_key_env) if api_key_env else None
    if refusal is not None:
        raise ValidationError({"api_key_env": [refusal]})
    if make_default:
        Provider.objects.filter(is_default=True).exclude(name=name).update(is_default=False)
    defaults = {"kind": kind, "base_url": base_url, "api_key_env": api_key_env, "enabled": True}
    if make_default:
        defaults["is_default"] = True
    if api_key is not None:
        defaults["api_key"] = api_key
    provider, provider_created = Provider.objects.update_or_create(name=name, defaults=defaults)

    model_defaults: dict = {"enabled": True, "is_default": True}
    if input_price is not None or output_price is not None:
        model_defaults.update(
            input_price=input_price,
            output_price=output_price,
            price_source=LlmModel.PriceSource.MANUAL,
        )
    else:
        existing = LlmModel.objects.filter(provider=provider, name=model).first()
        if existing is None or existing.price_source != LlmModel.PriceSource.MANUAL:
            price = catalogue_price(model=model, provider_kind=kind)
            if price is not None:
                model_defaults.update(
                    input_price=price.input_price,
                    output_price=price.output_price,
                    cached_input_price=price.cached_input_price,
                    cache_write_price=price.cache_write_price,
                    price_source=LlmModel.PriceSource.CATALOGUE,
                )
    LlmModel.objects.filter(provider=provider, is_default=True).exclude(name=model).update(
        is_default=False
    )
    llm_model, model_created = LlmModel.objects.update_or_create(
        provider=provider, name=model, defaults=model_defaults
    )
    return ProviderConfigured(
        provider=provider,
        model=llm_model,
        provider_created=provider_created,
        model_created=model_created,
    )


def model_apply_catalogue_price(*, llm_model: LlmModel) -> bool:
    """Reset a model's prices to the catalogue's; False when the catalogue lacks it."""
    price = catalogue_price(model=llm_model.name, provider_kind=llm_model.provider.kind)
    if price is None:
        return False
    llm_model.input_price = price.input_price
    llm_model.output_price = price.output_price
    llm_model.cached_input_price = price.cached_input_price
    llm_model.cache_write_price = price.cache_write_price
    llm_model.price_source = LlmModel.PriceSource.CATALOGUE
    llm_model.save(
        update_fields=[
            "input_price",
            "output_price",
            "cached_input_price",
            "cache_write_price",
            "price_source",
        ]
    )
    return True
