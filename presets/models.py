from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from presets.operation_types import OperationType


class OperationPreset(models.Model):
    """The parameters an operation type runs with unless a request overrides them."""

    operation_type = models.CharField(max_length=32, choices=OperationType.choices, unique=True)
    description = models.CharField(max_length=200, blank=True)
    temperature = models.FloatField(validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    top_p = models.FloatField(validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    max_tokens = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(1_000_000)]
    )
    timeout_seconds = models.FloatField(
        validators=[MinValueValidator(1.0), MaxValueValidator(600.0)]
    )
    max_retries = models.PositiveSmallIntegerField(validators=[MaxValueValidator(10)])
    cache_enabled = models.BooleanField(
        "cache by default", help_text="Requests that do not say otherwise are cached."
    )
    cache_ttl_seconds = models.PositiveIntegerField(
        "cache TTL (s)", validators=[MinValueValidator(1), MaxValueValidator(30 * 86400)]
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )

    class Meta:
        ordering = ["operation_type"]

    def __str__(self) -> str:
        return self.get_operation_type_display()
