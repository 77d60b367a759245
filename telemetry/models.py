import uuid

from django.db import models


class OperationTelemetry(models.Model):
    """One row per operation: successes, failures, budget refusals and cache hits alike."""

    operation_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(
        "tenancy.Project", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey(
        "tenancy.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    session_id = models.CharField(max_length=200)
    operation_type = models.CharField(max_length=32)
    provider_name = models.CharField(max_length=64, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    retry_count = models.PositiveSmallIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    success = models.BooleanField(default=False)
    cache_hit = models.BooleanField(default=False)
    estimated_cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField()
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.JSONField(
        default=list, blank=True, help_text="Every provider attempt: provider, model, outcome."
    )
    source = models.CharField(max_length=16, default="api")  # api | gateway
    streamed = models.BooleanField(default=False)

    class Meta:
        verbose_name = "operation"
        verbose_name_plural = "operations"
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["started_at"], name="telemetry_started_idx"),
            models.Index(
                fields=["project", "session_id", "started_at"], name="telemetry_session_idx"
            ),
            models.Index(fields=["provider_name", "started_at"], name="telemetry_provider_idx"),
            models.Index(fields=["operation_type", "started_at"], name="telemetry_type_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.operation_type} {self.operation_id}"

    @property
    def total_tokens(self) -> int:
        return self.tokens_in + self.tokens_out
