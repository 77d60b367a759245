"""Spend limits beyond the session: budgets per project, API key and end user, per period.

A `SpendBudget` says who is limited (its scope), over which period and by which caps.
Its ledger for one period (and, for end users, one end user: the `subject`) is not one
row: it is a `SpendPeriod` holding the part of the cap no shard holds yet (the pool), and
up to `AURA["SPEND_SHARDS"]` `SpendShard` rows, each holding an allotment of the cap and
what was charged and reserved against it. A request reserves on one shard only, so a
project's traffic never queues on one row; a shard short of room is given more from the
pool, and when the pool is dry every shard's unused allotment is taken back first, so a
refusal happens only when the whole budget, summed, cannot take the request
(budgets/spending.py has the protocol; docs/ARCHITECTURE.md, why it holds).
"""

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from aura_orchestrator.crypto import EncryptedTextField
from aura_orchestrator.money import micros_to_usd, usd_to_micros

if TYPE_CHECKING:
    from budgets.limit_models import RateLimit


class Scope(models.TextChoices):
    PROJECT = "project", "project"
    API_KEY = "api_key", "API key"
    END_USER = "end_user", "end user"
    DEFAULT_END_USER = "default_end_user", "every end user (default)"


def scope_problems(rule: "SpendBudget | RateLimit") -> dict[str, str]:
    """What is wrong with a scoped rule's who (a spend budget's, a rate limit's): its key
    and end user must match its scope, its key its project. By field, for the forms."""
    problems: dict[str, str] = {}
    if (rule.scope == Scope.API_KEY) != (rule.api_key_id is not None):
        problems["api_key"] = "An API key is set for scope 'API key', and only for it."
    if (rule.scope == Scope.END_USER) != bool(rule.end_user):
        problems["end_user"] = "An end user is named for scope 'end user', and only for it."
    if rule.api_key is not None and rule.api_key.project_id != rule.project_id:
        problems["api_key"] = "This key belongs to another project."
    return problems


class Period(models.TextChoices):
    NONE = "none", "none (lifetime)"
    DAY = "day", "day"
    WEEK = "week", "week"
    MONTH = "month", "month"


DEFAULT_THRESHOLDS = "50,80,100"


def parse_thresholds(text: str) -> list[int]:
    """`"50,80,100"` → [50, 80, 100]: whole percents, 1..1000, sorted, no repeats."""
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 1000:
            raise ValidationError(f"thresholds: {part!r} is not a whole percent from 1 to 1000")
        values.add(int(part))
    return sorted(values)


def validate_thresholds(text: str) -> None:
    parse_thresholds(text)


class AlertEndpoint(models.Model):
    """Where a project's budget alerts are POSTed, signed with this endpoint's secret
    (`X-Aura-Signature: sha256=<hex HMAC-SHA256 of the body>`)."""

    project = models.ForeignKey(
        "tenancy.Project", on_delete=models.CASCADE, related_name="alert_endpoints"
    )
    url = models.URLField(max_length=500)
    # Encrypted at rest (aura_orchestrator/crypto.py): `secret.reveal()` signs.
    secret = EncryptedTextField(help_text="Signs every delivery; never shown again after saving.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["project_id", "url"]
        constraints = [
            models.UniqueConstraint(fields=["project", "url"], name="unique_alert_endpoint")
        ]

    def __str__(self) -> str:
        return self.url


class SpendBudget(models.Model):
    """A spend limit: a scope (the project, one of its API keys, one of its end users, or
    every end user not given a budget of their own), optionally narrowed to a provider or
    a model, a period, and caps in tokens and/or USD, hard or soft."""

    project = models.ForeignKey(
        "tenancy.Project", on_delete=models.CASCADE, related_name="spend_budgets"
    )
    scope = models.CharField(max_length=20, choices=Scope.choices, default=Scope.PROJECT)
    api_key = models.ForeignKey(
        "tenancy.ApiKey",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="spend_budgets",
        help_text="Scope 'API key' only.",
    )
    end_user = models.CharField(
        max_length=256, blank=True, help_text="Scope 'end user' only: the `user` the app sends."
    )
    provider = models.ForeignKey(
        "catalog.Provider",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="spend_budgets",
        help_text="Optional: count only calls served by this provider.",
    )
    model_name = models.CharField(
        max_length=200, blank=True, help_text="Optional: count only calls served by this model."
    )
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    max_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    max_cost = models.DecimalField(
        "max cost (USD)",
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    enforce_hard_limits = models.BooleanField(
        default=True, help_text="Hard: refuse what would pass a cap. Soft: let it through, warn."
    )
    thresholds = models.CharField(
        max_length=100,
        default=DEFAULT_THRESHOLDS,
        validators=[validate_thresholds],
        help_text="Alert when this many percent of a cap is spent, once per period each.",
    )
    alert_emails = models.CharField(
        max_length=500, blank=True, help_text="Comma-separated addresses; alerts also go here."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "spend budget"
        ordering = ["project_id", "scope", "id"]
        indexes = [models.Index(fields=["project", "active"], name="spend_budget_project_idx")]

    def __str__(self) -> str:
        return f"{self.scope_label} {self.period}"

    @property
    def max_cost_micros(self) -> int | None:
        return None if self.max_cost is None else usd_to_micros(Decimal(self.max_cost))

    @property
    def scope_label(self) -> str:
        """How refusals and the usage API name it: `project:search`, `api_key:ingest`,
        `end_user:u-42`, `end_user:*` (the default), `/model:M` when narrowed."""
        from budgets.spending import scope_label  # one definition (also for memo entries)

        return scope_label(self)

    def clean(self) -> None:
        problems = scope_problems(self)
        if self.max_tokens is None and self.max_cost is None:
            problems["max_cost"] = "Set a cost cap, a token cap, or both."
        if problems:
            raise ValidationError(problems)


class SpendPeriod(models.Model):
    """One budget's period (for end-user budgets, one end user's): the caps in force and
    the pool, the part of each cap no shard holds. Created by the first request of the
    period, so a period starts without a job."""

    budget = models.ForeignKey(SpendBudget, on_delete=models.CASCADE, related_name="periods")
    subject = models.CharField(max_length=256, blank=True)  # the end user, for end-user scopes
    period_start = models.DateTimeField()
    max_tokens = models.BigIntegerField(null=True, blank=True)
    max_cost_micros = models.BigIntegerField(null=True, blank=True)
    pool_tokens = models.BigIntegerField(default=0)
    pool_cost_micros = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "spend period"
        ordering = ["-period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "subject", "period_start"], name="unique_spend_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.budget_id}/{self.subject or '-'}/{self.period_start:%Y-%m-%d}"


class SpendShard(models.Model):
    """A slice of one period's ledger: its allotment (None: that unit is not capped, or
    the budget is soft), and what was charged and is reserved against it."""

    budget = models.ForeignKey(SpendBudget, on_delete=models.CASCADE, related_name="shards")
    subject = models.CharField(max_length=256, blank=True)
    period_start = models.DateTimeField()
    shard = models.PositiveSmallIntegerField()
    allot_tokens = models.BigIntegerField(null=True, blank=True)
    allot_cost_micros = models.BigIntegerField(null=True, blank=True)
    tokens_used = models.BigIntegerField(default=0)
    cost_accrued_micros = models.BigIntegerField(default=0)
    tokens_reserved = models.BigIntegerField(default=0)
    cost_reserved_micros = models.BigIntegerField(default=0)
    operation_count = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "spend shard"
        ordering = ["budget_id", "subject", "period_start", "shard"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "subject", "period_start", "shard"], name="unique_spend_shard"
            ),
            models.CheckConstraint(
                condition=models.Q(tokens_reserved__gte=0, cost_reserved_micros__gte=0),
                name="spend_reservations_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.budget_id}/{self.subject or '-'}/{self.period_start:%Y-%m-%d}#{self.shard}"


class SpendHold(models.Model):
    """What one in-flight operation holds on the shards of every budget that applies:
    the same worst case on each. Whoever deletes the row (settle, release, expiry)
    adjusts the shards, so they are adjusted exactly once. `shards`: the shard pks, one
    per budget (which a narrowed budget charges is known to the operation's finish:
    a hold found by the expiry job is released, never charged)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    operation_id = models.UUIDField()
    shards = models.JSONField()
    tokens = models.BigIntegerField()
    cost_micros = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = "spend hold"
        ordering = ["expires_at"]
        indexes = [models.Index(fields=["expires_at"], name="spend_hold_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.tokens} tokens for {self.operation_id}"

    @property
    def cost(self) -> Decimal:
        return micros_to_usd(self.cost_micros)


class BudgetAlert(models.Model):
    """A threshold crossed in one period: created once (the unique constraint decides who
    delivers it), then delivered to the project's endpoints and the budget's addresses."""

    budget = models.ForeignKey(SpendBudget, on_delete=models.CASCADE, related_name="alerts")
    subject = models.CharField(max_length=256, blank=True)
    period_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField()
    unit = models.CharField(max_length=8)  # tokens | cost: the cap that crossed
    used = models.BigIntegerField()  # ledger units: tokens or micro-dollars
    cap = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "subject", "period_start", "threshold"],
                name="unique_budget_alert",
            )
        ]

    def __str__(self) -> str:
        return f"{self.threshold}% of {self.budget}"


class AlertDelivery(models.Model):
    """One alert (or a test alert) to one webhook endpoint or e-mail address: the log."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook", "webhook"
        EMAIL = "email", "e-mail"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed"

    alert = models.ForeignKey(
        BudgetAlert, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    endpoint = models.ForeignKey(
        AlertEndpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    channel = models.CharField(max_length=8, choices=Channel.choices)
    target = models.CharField(max_length=500)  # the URL or the address
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "alert deliveries"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.channel} to {self.target}: {self.status}"
