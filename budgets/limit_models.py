"""Rate limits per scope (issue 16): requests and tokens per minute and calls in flight,
for a project, an API key or an end user (their own, or the default every end user
gets), optionally narrowed to one model. The windows themselves live in Redis
(aura_orchestrator/ratelimit/redis_store.py), or, without Redis, in `RateEntry` rows.
"""

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from budgets.spend_models import Scope, scope_problems


class RateLimit(models.Model):
    """The limits of one scope (and model narrowing): each field unset is no limit."""

    project = models.ForeignKey(
        "tenancy.Project", on_delete=models.CASCADE, related_name="rate_limits"
    )
    scope = models.CharField(max_length=20, choices=Scope.choices, default=Scope.API_KEY)
    api_key = models.ForeignKey(
        "tenancy.ApiKey",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rate_limits",
        help_text="Scope 'API key' only.",
    )
    end_user = models.CharField(
        max_length=256, blank=True, help_text="Scope 'end user' only: the `user` the app sends."
    )
    model_name = models.CharField(
        max_length=200, blank=True, help_text="Optional: only calls whose chain has this model."
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    tokens_per_minute = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Held at a call's worst case (prompt + max_tokens), corrected to its usage.",
    )
    max_in_flight = models.PositiveIntegerField(
        "calls in flight",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Calls admitted and not yet ended, across every worker.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "rate limit"
        ordering = ["project_id", "scope", "id"]
        indexes = [models.Index(fields=["project", "active"], name="rate_limit_project_idx")]

    def __str__(self) -> str:
        return self.scope_label

    @property
    def scope_label(self) -> str:
        from budgets.spending import scope_label

        return scope_label(self)

    def clean(self) -> None:
        problems = scope_problems(self)
        if (
            self.requests_per_minute is None
            and self.tokens_per_minute is None
            and self.max_in_flight is None
        ):
            problems["requests_per_minute"] = (
                "Set requests per minute, tokens per minute, calls in flight, or several."
            )
        if problems:
            raise ValidationError(problems)


class RateEntry(models.Model):
    """One admitted call in one window, for deployments without Redis: its time and cost
    (requests: 1; tokens: the worst case, then the usage), or its expiry when the window
    counts calls in flight. Rows leave the window as the minute passes."""

    key = models.CharField(max_length=300)
    call_id = models.UUIDField()
    at = models.DateTimeField()
    cost = models.BigIntegerField()
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "rate window entry"
        indexes = [models.Index(fields=["key", "at"], name="rate_entry_key_at_idx")]
        constraints = [
            models.UniqueConstraint(fields=["key", "call_id"], name="rate_entry_once_per_call")
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.call_id}"
