from django.db import models
from django.utils import timezone


class CacheEntry(models.Model):
    """A cached completion, scoped to a project. Expired rows are never served."""

    project = models.ForeignKey(
        "tenancy.Project", on_delete=models.CASCADE, related_name="cache_entries"
    )
    key_hash = models.CharField(max_length=64)
    operation_type = models.CharField(max_length=32)
    provider_name = models.CharField(max_length=64)
    model_name = models.CharField(max_length=200)
    content = models.TextField()
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    payload = models.JSONField(
        null=True,
        blank=True,
        help_text="Choices, tool calls and provider fields, when the answer is more than its text.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    hit_count = models.PositiveIntegerField(default=0)
    last_hit_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "cache entries"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "key_hash"], name="unique_cache_key")
        ]
        indexes = [models.Index(fields=["expires_at"], name="cache_expires_idx")]

    def __str__(self) -> str:
        return f"{self.operation_type} {self.key_hash[:12]}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()
