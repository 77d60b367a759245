"""Reads: which provider and model serve a request, with the model's prices."""

from dataclasses import dataclass, field
from decimal import Decimal

from aura_orchestrator.caching.config_cache import memoized
from aura_orchestrator.catalog.models import LlmModel, Provider
from aura_orchestrator.crypto import Sealed
from aura_orchestrator.errors import InvalidRequest, UnknownModel


@dataclass(frozen=True, slots=True)
class Route:
    """One step of a fallback chain: a provider and the model it is asked for."""

    provider_name: str
    kind: str
    base_url: str
    api_key_env: str
    model_name: str
    input_price: Decimal | None
    output_price: Decimal | None
    cached_input_price: Decimal | None
    cache_write_price: Decimal | None = None
    # The stored key, still encrypted: decrypted only by `pipeline.wire.provider_config`,
    # when an adapter is given it; out of repr (and a Sealed prints as …abcd at most).
    api_key: Sealed | None = field(default=None, repr=False, compare=False)

    @property
    def priced(self) -> bool:
        return self.input_price is not None and self.output_price is not None

    @property
    def worst_input_price(self) -> Decimal | None:
        """What a worst case prices each prompt token at. Not the input price alone: a
        prompt the provider writes to its cache costs the write price (Anthropic's, 1.25x
        input), so a worst case below it would let the charge pass the reservation and the
        hard cap. A cache read only lowers the charge, so the worst case assumes none."""
        if self.input_price is None or self.cache_write_price is None:
            return self.input_price
        return max(self.input_price, self.cache_write_price)


def _route(provider: Provider, model: LlmModel) -> Route:
    return Route(
        provider_name=provider.name,
        kind=provider.kind,
        base_url=provider.base_url,
        api_key_env=provider.api_key_env,
        model_name=model.name,
        input_price=model.input_price,
        output_price=model.output_price,
        cached_input_price=model.cached_input_price,
        cache_write_price=model.cache_write_price,
        api_key=provider.api_key or None,
    )


def _default_model(provider: Provider) -> LlmModel | None:
    models = [m for m in provider.models.all() if m.enabled]
    return next((m for m in models if m.is_default), models[0] if models else None)


def route_chain_resolve(*, provider_names: list[str] | None, model: str | None) -> list[Route]:
    """The fallback chain for a request, first choice first (see `_route_chain`).
    Memoized per process and invalidated on save (see caching.config_cache); errors are
    not memoized."""
    names = tuple(provider_names) if provider_names else None
    chain = memoized(("routes", names, model), lambda: tuple(_route_chain(names, model)))
    return list(chain)


def _route_chain(provider_names: tuple[str, ...] | None, model: str | None) -> list[Route]:
    """The fallback chain for a request, first choice first.

    `provider_names` is the request's `providers` (in its order), else every enabled
    provider by default flag and priority. `model` is a configured model name or
    `provider/model`; providers that do not serve it are left out of the chain.
    """
    providers = list(
        Provider.objects.filter(enabled=True)
        .prefetch_related("models")
        .order_by("-is_default", "priority", "name")
    )
    by_name = {p.name: p for p in providers}
    if provider_names:
        unknown = [n for n in provider_names if n not in by_name]
        if unknown:
            raise InvalidRequest(
                f"Unknown or disabled provider(s): {', '.join(unknown)}.",
                details={"field": "providers"},
            )
        providers = [by_name[n] for n in dict.fromkeys(provider_names)]
    if not providers:
        raise InvalidRequest(
            "No provider is configured: run `manage.py configure_provider` or add one in the admin."
        )
    if model:
        head, sep, tail = model.partition("/")
        if sep and head in by_name:
            if provider_names and head not in provider_names:
                raise InvalidRequest(f"Model '{model}' names a provider outside `providers`.")
            providers, model = [by_name[head]], tail
        chain = [
            _route(p, m) for p in providers for m in p.models.all() if m.enabled and m.name == model
        ]
        if not chain:
            raise UnknownModel(f"Model '{model}' is not configured on any provider in the chain.")
        return chain
    chain = []
    for provider in providers:
        default = _default_model(provider)
        if default is not None:
            chain.append(_route(provider, default))
    if not chain:
        raise InvalidRequest("No enabled model is configured for the providers in the chain.")
    return chain


def models_list() -> list[LlmModel]:
    return list(
        LlmModel.objects.filter(enabled=True, provider__enabled=True)
        .select_related("provider")
        .order_by("provider__name", "name")
    )
