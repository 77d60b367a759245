from collections.abc import Iterable

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from aura_orchestrator.catalog.secrets import validate_api_key_env
from aura_orchestrator.crypto import EncryptedTextField
from aura_orchestrator.providers.base import ProviderKindSpec
from aura_orchestrator.providers.registry import SPECS


def provider_kind_choices(specs: Iterable[ProviderKindSpec]) -> type[models.TextChoices]:
    """The TextChoices class of the kinds `specs` declare, in their order: member
    KIND.upper() = (kind, label)."""
    # Enum's functional API (a class from (name, value) pairs); django-stubs type only
    # the member lookup TextChoices(value).
    return models.TextChoices(  # type: ignore[call-overload]
        "ProviderKind", [(spec.kind.upper(), (spec.kind, spec.label)) for spec in specs]
    )


# The kinds the provider adapters declare (providers/registry.py), in their order: adding
# an adapter adds a choice here. Values, labels and order are what migrations recorded;
# a change to any of them needs a migration (makemigrations --check says so).
ProviderKind = provider_kind_choices(SPECS)


class Provider(models.Model):
    """An upstream. Its key is either stored here, encrypted (`api_key`, aura_orchestrator/
    crypto.py), or read at call time from an allowed environment variable it names
    (`api_key_env`, catalog/secrets.py); the stored one wins when both are given."""

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    base_url = models.URLField(max_length=500)
    api_key_env = models.CharField(
        "API key variable",
        max_length=100,
        blank=True,
        help_text="Name of the environment variable that holds the secret (e.g. OPENAI_API_KEY); "
        "only variables allowed by AURA_PROVIDER_SECRET_ENV.",
        validators=[validate_api_key_env],
    )
    api_key = EncryptedTextField("API key", blank=True, default="")
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(
        default=False, help_text="First in the fallback chain when a request names none."
    )
    priority = models.PositiveSmallIntegerField(
        default=100, help_text="Lower comes first in the default fallback chain."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_default", "priority", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_provider"
            )
        ]

    def __str__(self) -> str:
        return self.name


class LlmModel(models.Model):
    """A model served by a provider, with its prices in USD per million tokens."""

    class PriceSource(models.TextChoices):
        CATALOGUE = "catalogue", "Price catalogue (genai-prices)"
        MANUAL = "manual", "Set by an operator"
        UNKNOWN = "unknown", "Unknown"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=200)
    is_default = models.BooleanField(default=False, help_text="The provider's default model.")
    enabled = models.BooleanField(default=True)
    input_price = models.DecimalField(
        "input $/M tokens",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    output_price = models.DecimalField(
        "output $/M tokens",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    cached_input_price = models.DecimalField(
        "cached input $/M tokens",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    # Writing the prompt to the provider's cache (Anthropic's cache_creation_input_tokens,
    # 1.25x its input price); None: written tokens are priced as input.
    cache_write_price = models.DecimalField(
        "cache write $/M tokens",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    price_source = models.CharField(
        max_length=16, choices=PriceSource.choices, default=PriceSource.UNKNOWN
    )
    context_window = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "-is_default", "name"]
        verbose_name = "model"
        constraints = [
            models.UniqueConstraint(fields=["provider", "name"], name="unique_model_per_provider")
        ]

    def __str__(self) -> str:
        return f"{self.provider.name}/{self.name}"

    @property
    def has_price(self) -> bool:
        return self.input_price is not None and self.output_price is not None
