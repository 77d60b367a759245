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
    end_user = models.CharField(
        max_length=256, blank=True, help_text="The app's end user (`user`, X-Aura-End-User)."
    )
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
    cache_read_tokens = models.PositiveIntegerField(
        default=0, help_text="The part of tokens_in read from the provider's prompt cache."
    )
    cache_write_tokens = models.PositiveIntegerField(
        default=0, help_text="The part of tokens_in written to the provider's prompt cache."
    )
    cache_savings = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        default=0,
        help_text="USD prompt caching saved against plain input prices (negative: its "
        "writes cost more than its reads saved).",
    )
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
    tools_sent = models.PositiveSmallIntegerField(default=0, help_text="Tool definitions sent.")
    images_sent = models.PositiveIntegerField(default=0, help_text="Images in the messages.")
    choices = models.PositiveSmallIntegerField(default=1, help_text="Choices asked for (n).")
    tool_calls = models.JSONField(
        default=list,
        blank=True,
        help_text="The tool calls answered: name and arguments (truncated).",
    )
    streamed = models.BooleanField(default=False)
    budget_overrun = models.BooleanField(
        default=False,
        help_text="Settled after its reservation had expired (a worker frozen past its "
        "deadline): charged in full, possibly beyond a hard cap.",
    )

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
            # Project-scoped statistics over a time range (the API's common query).
            models.Index(fields=["project", "started_at"], name="telemetry_project_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.operation_type} {self.operation_id}"

    @property
    def total_tokens(self) -> int:
        return self.tokens_in + self.tokens_out


# Upper bounds (ms, inclusive) of the latency histogram kept in each rollup; a last bucket
# past 60 s catches the rest. Changing them needs a re-rollup (`telemetry_rollup_backfill`).
LATENCY_BOUNDS_MS: tuple[int, ...] = (
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
)  # fmt: skip
LATENCY_BUCKETS = len(LATENCY_BOUNDS_MS) + 1


class TelemetryRollup(models.Model):
    """One hour of operations for one (project, provider, model, operation type).

    Recomputed whole from the raw rows (never incremented), so re-running the rollup of
    an hour is safe. Kept after the raw rows are pruned."""

    bucket_start = models.DateTimeField(help_text="Start of the hour (UTC).")
    project = models.ForeignKey(
        "tenancy.Project", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider_name = models.CharField(max_length=64, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    operation_type = models.CharField(max_length=32)
    operations = models.PositiveIntegerField(default=0)
    successes = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    retries = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=6, default=0)
    cache_savings = models.DecimalField(
        max_digits=18, decimal_places=6, default=0, help_text="USD prompt caching saved."
    )
    latency_sum_ms = models.PositiveBigIntegerField(default=0)
    latency_max_ms = models.PositiveIntegerField(default=0)
    latency_histogram = models.JSONField(
        default=list, help_text="Operation counts per latency bucket (LATENCY_BOUNDS_MS, +inf)."
    )

    class Meta:
        verbose_name = "hourly rollup"
        verbose_name_plural = "hourly rollups"
        ordering = ["-bucket_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["bucket_start", "project", "provider_name", "model_name", "operation_type"],
                name="telemetry_rollup_unique_bucket",
            )
        ]
        indexes = [
            models.Index(fields=["project", "bucket_start"], name="telemetry_rollup_project_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.bucket_start:%Y-%m-%d %H:00} {self.provider_name}/{self.operation_type}"


class RollupWatermark(models.Model):
    """Every hour before `complete_until` is rolled up and final (late rows have landed):
    statistics read those hours from rollups and the prune job may drop their raw rows."""

    name = models.CharField(max_length=32, unique=True)
    complete_until = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.complete_until:%Y-%m-%d %H:00}"
