"""Management commands: create_api_key and configure_provider."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core import serializers
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from aura_orchestrator.catalog.models import LlmModel, Provider
from aura_orchestrator.tenancy.models import ApiKey

SECRET = "sk-live-do-not-store-4c2b1a"


def _run(*args) -> str:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


def test_create_api_key_prints_the_key_alone_on_the_last_line(db):
    """The last stdout line is the key and nothing else; it authenticates."""
    out = _run("create_api_key", "render-service", "--project", "studio-b")
    raw_key = out.strip().splitlines()[-1]
    assert raw_key.startswith("aura_") and " " not in raw_key
    key = ApiKey.objects.get(name="render-service")
    assert key.project.name == "studio-b"
    assert raw_key not in key.hashed_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert client.get("/api/v1/presets/").status_code == 200


def test_create_api_key_uses_the_default_project(db, settings):
    """Without --project the key belongs to the default project."""
    _run("create_api_key", "svc")
    assert ApiKey.objects.get(name="svc").project.name == settings.AURA["DEFAULT_PROJECT"]


def test_create_api_key_rejects_a_blank_name(db):
    with pytest.raises(CommandError):
        _run("create_api_key", "   ")


def _configure(*extra) -> str:
    return _run(
        "configure_provider",
        "openai-main",
        "--kind",
        "openai",
        "--base-url",
        "https://api.example.com/v1",
        "--api-key-env",
        "CMD_TEST_API_KEY",
        *extra,
    )


def test_configure_provider_is_idempotent_and_stores_manual_prices(db, monkeypatch):
    """Running it twice leaves one provider and one model, with the latest values; given
    prices are stored as the operator's (`manual`)."""
    monkeypatch.setenv("CMD_TEST_API_KEY", SECRET)
    _configure("--model", "house-model", "--input-price", "1.5", "--output-price", "6")
    out = _configure(
        "--model", "house-model", "--input-price", "0.5", "--output-price", "2", "--default"
    )
    assert "Updated provider 'openai-main'" in out
    provider = Provider.objects.get()
    model = LlmModel.objects.get()
    assert provider.is_default is True
    assert provider.api_key_env == "CMD_TEST_API_KEY"
    assert (model.input_price, model.output_price) == (Decimal("0.5"), Decimal("2"))
    assert model.price_source == LlmModel.PriceSource.MANUAL


def test_configure_provider_takes_catalogue_prices_for_a_known_model(db):
    """Without prices, a model the bundled catalogue knows gets its catalogue price."""
    _configure("--model", "gpt-4o-mini")
    model = LlmModel.objects.get(name="gpt-4o-mini")
    assert model.price_source == LlmModel.PriceSource.CATALOGUE
    assert model.input_price == Decimal("0.15")
    assert model.output_price == Decimal("0.6")


def test_configure_provider_keeps_a_manual_price_when_rerun_without_prices(db):
    """Re-running without prices does not overwrite what an operator set."""
    _configure("--model", "gpt-4o-mini", "--input-price", "9", "--output-price", "9")
    _configure("--model", "gpt-4o-mini")
    model = LlmModel.objects.get(name="gpt-4o-mini")
    assert (model.input_price, model.price_source) == (Decimal("9"), "manual")


def test_configure_provider_never_stores_the_secret(db, monkeypatch):
    """The secret stays in the environment: no column of any catalogue row holds it."""
    monkeypatch.setenv("CMD_TEST_API_KEY", SECRET)
    _configure("--model", "gpt-4o-mini")
    dump = serializers.serialize("json", [*Provider.objects.all(), *LlmModel.objects.all()])
    assert "CMD_TEST_API_KEY" in dump
    assert SECRET not in dump


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base-url", "not a url"], "--base-url"),
        (["--base-url", "ftp://example.com"], "--base-url"),
        (["--input-price", "cheap", "--output-price", "1"], "Not a price"),
        (["--input-price", "-1", "--output-price", "1"], "non-negative"),
        (["--input-price", "NaN", "--output-price", "1"], "non-negative"),
        (["--input-price", "1", "--output-price", "1e12"], "non-negative"),
        (["--input-price", "1"], "both"),
    ],
)
def test_configure_provider_rejects_bad_input(db, args, message):
    """A bad URL or price is a CommandError naming the problem; nothing is stored."""
    base = ["configure_provider", "p1", "--kind", "openai", "--model", "m"]
    if "--base-url" not in args:
        base += ["--base-url", "https://api.example.com/v1"]
    with pytest.raises(CommandError, match=message):
        _run(*base, *args)
    assert not Provider.objects.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["p1", "--kind", "bedrock", "--base-url", "https://x.example", "--model", "m"],
        ["Not A Slug", "--kind", "openai", "--base-url", "https://x.example", "--model", "m"],
    ],
)
def test_configure_provider_rejects_bad_kind_or_name(db, args):
    with pytest.raises(CommandError):
        _run("configure_provider", *args)
    assert not Provider.objects.exists()
