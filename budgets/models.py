import uuid
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from aura_orchestrator.money import micros_to_usd
from budgets import caps


class BudgetConstraint(models.Model):
    """A named set of caps that requests refer to with `budget: <name>`. Empty = no cap."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    max_tokens_per_operation = models.PositiveBigIntegerField(null=True, blank=True)
    max_cost_per_operation = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    max_tokens_per_session = models.PositiveBigIntegerField(null=True, blank=True)
    max_cost_per_session = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    enforce_hard_limits = models.BooleanField(
        default=True, help_text="Hard: refuse what would pass a cap. Soft: let it through, warn."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class LlmSession(models.Model):
    """The ledger of one session of one project.

    Caps are copied here from the constraint in force, so that a reservation is a single
    conditional UPDATE of this row: accrued + reserved can never pass a hard cap, however
    many workers race. Money columns are integer micro-dollars (exact on every backend).
    """

    project = models.ForeignKey(
        "tenancy.Project", on_delete=models.CASCADE, related_name="sessions"
    )
    session_id = models.CharField(max_length=200)
    constraint = models.ForeignKey(
        BudgetConstraint, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions"
    )
    max_tokens_per_operation = models.PositiveBigIntegerField(null=True, blank=True)
    max_cost_per_operation_micros = models.PositiveBigIntegerField(null=True, blank=True)
    max_tokens_per_session = models.PositiveBigIntegerField(null=True, blank=True)
    max_cost_per_session_micros = models.PositiveBigIntegerField(null=True, blank=True)
    enforce_hard_limits = models.BooleanField(default=True)
    tokens_used = models.BigIntegerField(default=0)
    cost_accrued_micros = models.BigIntegerField(default=0)
    tokens_reserved = models.BigIntegerField(default=0)
    cost_reserved_micros = models.BigIntegerField(default=0)
    operation_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    last_activity_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "session"
        ordering = ["-last_activity_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "session_id"], name="unique_session"),
            models.CheckConstraint(
                condition=models.Q(tokens_reserved__gte=0, cost_reserved_micros__gte=0),
                name="reservations_not_negative",
            ),
        ]
        indexes = [models.Index(fields=["last_activity_at"], name="session_activity_idx")]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.session_id}"

    @property
    def cost_accrued(self) -> Decimal:
        return micros_to_usd(self.cost_accrued_micros)

    @property
    def cost_reserved(self) -> Decimal:
        return micros_to_usd(self.cost_reserved_micros)

    @property
    def has_caps(self) -> bool:
        return caps.has_caps(self)


# Each cap whose ledger column is not its public field (money: micro-dollars) reads in
# public units too, under the public name: `session.max_cost_per_session` (USD).
for _cap in caps.CAPS:
    if _cap.column != _cap.field:
        setattr(LlmSession, _cap.field, property(_cap.public_value))
del _cap


class BudgetReservation(models.Model):
    """Worst-case tokens and cost held for one in-flight operation until settled.

    A reservation past `expires_at` belongs to a worker that died: the release job hands
    it back to the ledger. Whoever deletes the row (settle, release, expiry) adjusts the
    ledger, so it is adjusted exactly once.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(LlmSession, on_delete=models.CASCADE, related_name="reservations")
    operation_id = models.UUIDField()
    tokens = models.BigIntegerField()
    cost_micros = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["expires_at"]
        indexes = [models.Index(fields=["expires_at"], name="reservation_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.tokens} tokens for {self.operation_id}"

    @property
    def cost(self) -> Decimal:
        return micros_to_usd(self.cost_micros)


# Spend limits beyond the session (issue 15) live in their own module.
from budgets.limit_models import RateEntry, RateLimit  # noqa: E402  (issue 16)
from budgets.spend_models import (  # noqa: E402
    AlertDelivery,
    AlertEndpoint,
    BudgetAlert,
    SpendBudget,
    SpendHold,
    SpendPeriod,
    SpendShard,
)

__all__ = [
    "AlertDelivery",
    "AlertEndpoint",
    "BudgetAlert",
    "BudgetConstraint",
    "BudgetReservation",
    "LlmSession",
    "RateEntry",
    "RateLimit",
    "SpendBudget",
    "SpendHold",
    "SpendPeriod",
    "SpendShard",
]
