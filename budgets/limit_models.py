"""Rate limits per scope (issue 16): requests and tokens per minute and calls in flight,
for a project, an API key or an end user (their own, or the default every end user
gets), optionally narrowed to one model. The windows themselves live in Redis
(aura_orchestrator/ratelimit/redis_store.py), or, without Redis, in `RateEntry` rows.
"""

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from budgets.spend_models import Scope, scope_problems
from presets.operation_types import OperationType


def model_patterns(text: str) -> tuple[str, ...]:
    """`"gpt-4o-mini, claude-*"` → ("gpt-4o-mini", "claude-*"): what an allow-list holds
    (fnmatch patterns over names; empty: no list). Every allow-list is written so."""
    return tuple(p for p in (part.strip() for part in text.split(",")) if p)


def validate_model_patterns(text: str) -> None:
    for pattern in model_patterns(text):
        if len(pattern) > 200 or not pattern.isprintable():
            raise ValidationError(f"{pattern[:40]!r} is not a name or a pattern of names.")


def validate_operation_types(text: str) -> None:
    for name in model_patterns(text):
        if name not in OperationType.values:
            raise ValidationError(
                f"{name[:40]!r} is not an operation type ({', '.join(OperationType.values)})."
            )


# The allow-lists of a limit set: field → what it lists (docs, refusals).
ALLOW_LISTS = {
    "allowed_models": "models",
    "allowed_providers": "providers",
    "allowed_operation_types": "operation types",
}


class RateLimit(models.Model):
    """The limits of one scope (and model narrowing): each field unset is no limit."""

    project = models.ForeignKey(
        "tenancy.Project", on_delete=models.CASCADE, related_name="rate_limits"
    )
    scope = models.CharField(max_length=20, choices=Scope.choices, default=Scope.PROJECT)
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
    allowed_models = models.CharField(
        max_length=1000,
        blank=True,
        validators=[validate_model_patterns],
        help_text="Comma-separated models (or patterns: gpt-4o*) its calls may use; "
        "empty: every model. Others are refused (403 model_not_allowed) and hidden from "
        "GET /v1/models.",
    )
    allowed_providers = models.CharField(
        max_length=1000,
        blank=True,
        validators=[validate_model_patterns],
        help_text="Comma-separated providers (or patterns) its calls may use; empty: every "
        "provider. Routes of others leave the chain; one asked for by name is a 403.",
    )
    allowed_operation_types = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_operation_types],
        help_text="Comma-separated operation types its calls may be (planning, scripting…); "
        "empty: every type. Others are refused (403 forbidden).",
    )
    active = models.BooleanField(default=True)
    # Names its windows in Redis: unique across databases sharing one Redis (two
    # deployments, or a test database created again) where the pk is not.
    windows_id = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
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
        limits = (self.requests_per_minute, self.tokens_per_minute, self.max_in_flight)
        lists = [name for name in ALLOW_LISTS if getattr(self, name).strip()]
        if all(v is None for v in limits) and not lists:
            problems["requests_per_minute"] = (
                "Set requests per minute, tokens per minute, calls in flight or an "
                "allow-list (or several)."
            )
        for name in lists if self.model_name else ():
            problems[name] = "A limit narrowed to one model holds no allow-list."
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
