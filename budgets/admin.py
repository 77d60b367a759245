from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from aura_orchestrator.admin import (
    AuraModelAdmin,
    ExpiryFilter,
    short_id,
    usage_bar,
    usd,
    usd_decimal,
)
from budgets.caps import CAPS, Cap, Counts, capped_q, caps_counting, usage_shares
from budgets.models import BudgetConstraint, BudgetReservation, LlmSession
from budgets.reserving import Reservation
from budgets.services import budget_release, session_clear

if TYPE_CHECKING:  # generic for the type checker only (no runtime __class_getitem__)
    _LedgerFormBase = forms.ModelForm[LlmSession]
    _ReservationInlineBase = admin.TabularInline[BudgetReservation, LlmSession]
    _ReservationAdminBase = admin.ModelAdmin[BudgetReservation]
else:
    _LedgerFormBase = forms.ModelForm
    _ReservationInlineBase = admin.TabularInline
    _ReservationAdminBase = admin.ModelAdmin

_OPERATION_CAPS = caps_counting(Counts.OPERATION)
_LEDGER_CAPS = caps_counting(Counts.LEDGER)


def _public_column(cap: Cap) -> Callable[[BudgetConstraint], str]:
    """A money cap's list column, in USD (token caps are the model's field itself)."""

    @admin.display(description=cap.label, ordering=cap.field)
    def column(obj: BudgetConstraint) -> str:
        return usd_decimal(getattr(obj, cap.field))

    column.__name__ = cap.field
    return column


@admin.register(BudgetConstraint)
class BudgetConstraintAdmin(AuraModelAdmin):
    list_display = [
        "name",
        *(_public_column(cap) if cap.unit.money else cap.field for cap in CAPS),
        "enforce_hard_limits",
    ]
    list_filter = ["enforce_hard_limits"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description"]}),
        (
            "Per operation",
            {
                "fields": [cap.field for cap in _OPERATION_CAPS],
                "description": "Worst case of one call: prompt tokens + max_tokens, priced.",
            },
        ),
        (
            "Per session",
            {
                "fields": [cap.field for cap in _LEDGER_CAPS],
                "description": "Accrued + reserved over the whole session.",
            },
        ),
        ("Enforcement", {"fields": ["enforce_hard_limits"]}),
        ("Audit", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]


class HasCapsFilter(admin.SimpleListFilter):
    title = "caps"
    parameter_name = "has_caps"

    def lookups(
        self, request: HttpRequest, model_admin: "admin.ModelAdmin[Any]"
    ) -> list[tuple[str, str]]:
        return [("yes", "Has caps"), ("no", "No caps")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[LlmSession]
    ) -> QuerySet[LlmSession]:
        any_cap = capped_q()
        if self.value() == "yes":
            return queryset.filter(any_cap)
        if self.value() == "no":
            return queryset.exclude(any_cap)
        return queryset


_MONEY_CAPS = tuple(cap for cap in CAPS if cap.unit.money)


class _LedgerCapsForm(_LedgerFormBase):
    """Money caps edited in USD (form fields named by the public field); the ledger keeps
    exact integer micro-dollars."""

    class Meta:
        model = LlmSession
        fields = [
            "constraint",
            *(cap.column for cap in CAPS if not cap.unit.money),
            "enforce_hard_limits",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for cap in _MONEY_CAPS:
            self.initial[cap.field] = cap.public_value(self.instance)

    def save(self, commit: bool = True) -> LlmSession:
        for cap in _MONEY_CAPS:
            amount = self.cleaned_data.get(cap.field)
            setattr(
                self.instance, cap.column, None if amount is None else cap.unit.to_ledger(amount)
            )
        return super().save(commit)


def _usd_field(cap: Cap) -> forms.DecimalField:
    return forms.DecimalField(
        label=f"{cap.field.replace('_', ' ').capitalize()} (USD)",
        required=False,
        min_value=Decimal(0),
        max_digits=14,
        decimal_places=6,
    )


# Declared fields must exist when the class is made (the admin's form factory checks).
LlmSessionForm = type(
    "LlmSessionForm", (_LedgerCapsForm,), {cap.field: _usd_field(cap) for cap in _MONEY_CAPS}
)


class ReservationInline(_ReservationInlineBase):
    """In-flight reservations of the session (read-only: release them from the list)."""

    model = BudgetReservation
    fields = ["operation_id", "tokens", "cost", "created_at", "expires_at"]
    readonly_fields = fields  # type: ignore[assignment]  # the stubs' list types are invariant
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: LlmSession | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LlmSession | None = None) -> bool:
        return False

    @admin.display(description="cost")
    def cost(self, obj: BudgetReservation) -> str:
        return usd(obj.cost_micros)


def _usage_fraction(session: LlmSession) -> float | None:
    """The largest share of a session cap in use (used + reserved), None without caps."""
    shares = usage_shares(session)
    return max(shares) if shares else None


@admin.register(LlmSession)
class LlmSessionAdmin(AuraModelAdmin):
    form = LlmSessionForm
    # Reserved amounts and the hard-limit flag are on the change page (and a filter).
    list_display = [
        "session",
        "project_name",
        "tokens_used",
        "cost_accrued_usd",
        "usage",
        "operation_count",
        "last_activity_at",
    ]
    list_filter = [
        "project",
        ("enforce_hard_limits", admin.BooleanFieldListFilter),
        HasCapsFilter,
        "constraint",
    ]
    list_select_related = ["project"]
    search_fields = ["session_id"]
    date_hierarchy = "last_activity_at"
    show_full_result_count = False
    actions = ["clear_ledger"]
    inlines = [ReservationInline]
    readonly_fields = [
        "project",
        "session_id",
        "tokens_used",
        "tokens_reserved",
        "cost_accrued_usd",
        "cost_reserved_usd",
        "usage",
        "operation_count",
        "created_at",
        "last_activity_at",
    ]
    fieldsets = [
        (None, {"fields": ["project", "session_id", "constraint"]}),
        (
            "Ledger",
            {
                "fields": [
                    "tokens_used",
                    "tokens_reserved",
                    "cost_accrued_usd",
                    "cost_reserved_usd",
                    "usage",
                    "operation_count",
                    "created_at",
                    "last_activity_at",
                ]
            },
        ),
        (
            "Caps in force",
            {
                "fields": [*(cap.field for cap in CAPS), "enforce_hard_limits"],
                "description": "Copied from the constraint the session was given; edit them "
                "here for this session only. Empty = no cap.",
            },
        ),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sessions are opened by the API

    @admin.display(description="session id", ordering="session_id")
    def session(self, obj: LlmSession) -> str:
        return short_id(obj.session_id, chars=24)

    @admin.display(description="project", ordering="project__name")
    def project_name(self, obj: LlmSession) -> str:
        return short_id(obj.project.name, chars=20)

    @admin.display(description="cost accrued", ordering="cost_accrued_micros")
    def cost_accrued_usd(self, obj: LlmSession) -> str:
        return usd(obj.cost_accrued_micros)

    @admin.display(description="cost reserved", ordering="cost_reserved_micros")
    def cost_reserved_usd(self, obj: LlmSession) -> str:
        return usd(obj.cost_reserved_micros)

    @admin.display(description="usage of cap")
    def usage(self, obj: LlmSession) -> str:
        return usage_bar(_usage_fraction(obj))

    @admin.action(description="Clear ledger of selected sessions (telemetry stays)")
    def clear_ledger(self, request: HttpRequest, queryset: QuerySet[LlmSession]) -> None:
        sessions = list(queryset.select_related("project"))
        # Django iterates what it is given; the list spares a second read of the sessions.
        self.log_deletions(request, sessions)  # type: ignore[arg-type]
        cleared = sum(
            session_clear(project_id=s.project_id, session_id=s.session_id) for s in sessions
        )
        self.message_user(request, f"Cleared the ledger of {cleared} session(s).", messages.SUCCESS)


class ExpiredFilter(ExpiryFilter):
    live_label = "In flight"
    expired_label = "Expired (worker gone)"


@admin.register(BudgetReservation)
class BudgetReservationAdmin(_ReservationAdminBase):
    """Read-only: a reservation is handed back to its ledger by releasing it, never by
    deleting the row (which would leave the reserved amounts on the ledger)."""

    list_display = [
        "operation",
        "session_short",
        "tokens",
        "cost_usd",
        "created_at",
        "expires_at",
        "expired",
    ]
    list_filter = [ExpiredFilter]
    list_select_related = ["session", "session__project"]
    search_fields = ["=operation_id", "session__session_id"]
    date_hierarchy = "created_at"
    actions = ["release_now"]
    readonly_fields = ["session", "operation_id", "tokens", "cost_usd", "created_at", "expires_at"]
    fields = readonly_fields  # type: ignore[assignment]  # the stubs' list types are invariant

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: BudgetReservation | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: BudgetReservation | None = None
    ) -> bool:
        return False

    @admin.display(description="operation id", ordering="operation_id")
    def operation(self, obj: BudgetReservation) -> str:
        return short_id(obj.operation_id, chars=13)

    @admin.display(description="session", ordering="session__session_id")
    def session_short(self, obj: BudgetReservation) -> str:
        return short_id(obj.session.session_id, chars=24)

    @admin.display(description="cost", ordering="cost_micros")
    def cost_usd(self, obj: BudgetReservation) -> str:
        return usd(obj.cost_micros)

    @admin.display(boolean=True, description="expired")
    def expired(self, obj: BudgetReservation) -> bool:
        return obj.expires_at <= timezone.now()

    @admin.action(description="Release selected reservations now (hand back to the ledger)")
    def release_now(self, request: HttpRequest, queryset: QuerySet[BudgetReservation]) -> None:
        rows = list(queryset.values_list("pk", "session_id", "tokens", "cost_micros"))
        for pk, session_pk, tokens, cost_micros in rows:
            budget_release(
                reservation=Reservation(
                    id=pk, session_pk=session_pk, tokens=tokens, cost_micros=cost_micros
                )
            )
        self.message_user(request, f"Released {len(rows)} reservation(s).", messages.SUCCESS)


import budgets.admin_alerts  # noqa: E402  # registers the alert models
import budgets.admin_limits  # noqa: E402  # registers the rate limits
import budgets.admin_spend  # noqa: E402, F401  # registers the spend budgets
