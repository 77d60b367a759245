"""Provider kinds are declared by the adapters (providers/registry.py); the catalogue's
choices, prices and command derive from that list, and refuse a kind it does not hold."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from genai_prices.data_snapshot import get_snapshot

from aura_orchestrator.catalog.management.commands.configure_provider import (
    Command as ConfigureProvider,
)
from aura_orchestrator.catalog.models import Provider, ProviderKind
from aura_orchestrator.catalog.pricing import catalogue_price
from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.providers import KINDS, SPECS


def test_provider_kind_choices_are_the_registry_kinds_and_labels_in_order():
    assert ProviderKind.choices == [(spec.kind, spec.label) for spec in SPECS]
    field = Provider._meta.get_field("kind")
    assert field.choices == ProviderKind.choices
    assert all(len(kind) <= field.max_length for kind in KINDS)


def test_configure_provider_offers_exactly_the_registered_kinds():
    parser = ConfigureProvider().create_parser("manage.py", "configure_provider")
    (kind,) = [action for action in parser._actions if "--kind" in action.option_strings]
    assert list(kind.choices) == list(KINDS)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.kind)
def test_each_kind_names_a_price_catalogue_the_bundle_has_or_none(spec):
    """`price_catalogue` is a genai-prices provider id, or an explicit None (no catalogue
    of its own: prices by model name alone)."""
    catalogues = {provider.id for provider in get_snapshot().providers}
    assert spec.price_catalogue is None or spec.price_catalogue in catalogues


def test_a_kind_outside_the_registry_is_priced_by_model_name_alone():
    """As before the registry: an unknown kind is no error for the advisory price lookup."""
    assert catalogue_price(model="gpt-4o-mini", provider_kind="bedrock") == catalogue_price(
        model="gpt-4o-mini", provider_kind="openai"
    )


def test_an_unknown_kind_is_refused_by_the_service_the_command_and_the_model(db):
    with pytest.raises(ValueError, match="kind must be one of openai, anthropic"):
        provider_configure(
            name="p1", kind="bedrock", base_url="https://x.example", api_key_env="", model="m"
        )
    with pytest.raises(CommandError, match="invalid choice: 'bedrock'"):
        call_command(
            "configure_provider",
            "p1",
            "--kind=bedrock",
            "--base-url=https://x.example",
            "--model=m",
            stdout=StringIO(),
            stderr=StringIO(),
        )
    with pytest.raises(ValidationError) as caught:
        Provider(name="p1", kind="bedrock", base_url="https://x.example").full_clean()
    assert "kind" in caught.value.message_dict
    assert not Provider.objects.exists()
