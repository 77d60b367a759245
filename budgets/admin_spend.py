"""Spend budgets in the console: the budgets (with their current period's spend), and
read-only views of their ledgers (periods, shards) and of the holds in flight.

The changelist reads the spend of its whole page in one aggregate query
(`budgets.spend_selectors.current_spend`), attached to the rows before they render.
"""

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from aura_orchestrator.admin import (
    AuraModelAdmin,
    ExpiryFilter,
    short_id,
    usage_bar,
    usd,
)
from aura_orchestrator.tenancy.models import ApiKey
from budgets.spend_models import Scope, SpendBudget, SpendHold, SpendPeriod, SpendShard
from budgets.spend_selectors import CurrentSpend, current_spend, recent_periods
from budgets.spending import spend_recap

if TYPE_CHECKING:  # generic for the type checker only (no runtime __class_getitem__)
    _BudgetFormBase = forms.ModelForm[SpendBudget]
    _ReadOnlyBase = admin.ModelAdmin[Any]
    _KeyChoiceBase = forms.ModelChoiceField[ApiKey]
else:
    _BudgetFormBase = forms.ModelForm
    _ReadOnlyBase = admin.ModelAdmin
    _KeyChoiceBase = forms.ModelChoiceField

# What spend_recap re-balances the periods for.
_CAP_FIELDS = ("max_tokens", "max_cost", "enforce_hard_limits")


class _KeyChoice(_KeyChoiceBase):
    def label_from_instance(self, obj: ApiKey) -> str:
        return f"{obj.project.name} / {obj.name}"


class SpendBudgetForm(_BudgetFormBase):
    """API keys offered: unrevoked ones, of the budget's project once it has one (the
    key already chosen stays, revoked or not, so an old budget still saves)."""

    class Meta:
        model = SpendBudget
        fields = [
            "project",
            "scope",
            "api_key",
            "end_user",
            "provider",
            "model_name",
            "period",
            "max_cost",
            "max_tokens",
            "enforce_hard_limits",
            "thresholds",
            "alert_emails",
            "active",
        ]
        field_classes = {"api_key": _KeyChoice}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields.get("api_key")
        if isinstance(field, forms.ModelChoiceField):
            keys = Q(revoked_at__isnull=True)
            if self.instance.project_id is not None:
                keys &= Q(project_id=self.instance.project_id)
            if self.instance.api_key_id is not None:
                keys |= Q(pk=self.instance.api_key_id)
            field.queryset = (
                ApiKey.objects.filter(keys).select_related("project").order_by("project__name")
            )


def _caps_text(obj: SpendBudget) -> str:
    parts = []
    if obj.max_cost is not None:  # as typed: $250, $12.5 (the ledger's six places are noise)
        parts.append(f"${obj.max_cost.normalize():f}")
    if obj.max_tokens is not None:
        parts.append(f"{obj.max_tokens:,} tok")
    return " · ".join(parts) or "—"


def _spent_text(obj: SpendBudget, current: CurrentSpend) -> str:
    spent = current.total
    parts = []
    if obj.max_cost is not None or spent.cost_micros:
        parts.append(usd(spent.cost_micros))
    if obj.max_tokens is not None or spent.tokens_used:
        parts.append(f"{spent.tokens_used:,} tok")
    text = " · ".join(parts) or "—"
    if obj.scope == Scope.DEFAULT_END_USER:
        text += f" ({current.subjects} end user{'s' if current.subjects != 1 else ''})"
    return text


def _remaining_text(obj: SpendBudget, current: CurrentSpend) -> str:
    micros, tokens = current.remaining_micros(obj), current.remaining_tokens(obj)
    parts = []
    if micros is not None:
        parts.append(usd(micros))
    if tokens is not None:
        parts.append(f"{tokens:,} tok")
    text = " · ".join(parts) or "—"
    # Each end user has the caps of their own: what is left to the fullest one.
    return f"{text} (least left)" if obj.scope == Scope.DEFAULT_END_USER else text


@admin.register(SpendBudget)
class SpendBudgetAdmin(AuraModelAdmin):
    form = SpendBudgetForm
    # What is left (per end user, for the default end-user scope) and when the period
    # resets are on the change page.
    list_display = [
        "scope_name",
        "period",
        "caps",
        "hard",
        "usage",
        "used",
        "active",
    ]
    list_display_links = ["scope_name"]
    list_filter = [
        "project",
        "scope",
        "period",
        ("enforce_hard_limits", admin.BooleanFieldListFilter),
        "active",
    ]
    list_select_related = ["project", "api_key", "provider"]
    search_fields = ["project__name", "api_key__name", "end_user", "model_name"]
    readonly_fields = [
        "current_period",
        "usage",
        "used",
        "remaining",
        "recent_periods",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["project", "scope", "api_key", "end_user"]}),
        (
            "Narrowed to",
            {
                "fields": ["provider", "model_name"],
                "description": "Optional: count only calls served by this provider or model.",
            },
        ),
        (
            "Caps",
            {
                "fields": ["period", "max_cost", "max_tokens", "enforce_hard_limits"],
                "description": "Empty = no cap in that unit. Changing a cap re-balances the "
                "periods already open: the new cap applies to them at once.",
            },
        ),
        ("Alerts", {"fields": ["thresholds", "alert_emails"]}),
        ("State", {"fields": ["active"]}),
        (
            "This period",
            {"fields": ["current_period", "usage", "used", "remaining"]},
        ),
        ("Recent periods", {"fields": ["recent_periods"]}),
        ("Audit", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: SpendBudget | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # nothing spent yet
            return [f for f in fieldsets if f[0] not in ("This period", "Recent periods")]
        return fieldsets

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        spend = current_spend(rows)
        for row in rows:
            row._current = spend[row.pk]
        return changelist

    def _current(self, obj: SpendBudget) -> CurrentSpend:
        current = getattr(obj, "_current", None)
        if current is None:  # the change page: one budget
            current = current_spend([obj])[obj.pk]
            obj._current = current  # type: ignore[attr-defined]
        return current

    @admin.display(description="scope", ordering="scope")
    def scope_name(self, obj: SpendBudget) -> str:
        return short_id(obj.scope_label, chars=26)

    @admin.display(description="caps")
    def caps(self, obj: SpendBudget) -> str:
        return _caps_text(obj)

    @admin.display(boolean=True, description="hard", ordering="enforce_hard_limits")
    def hard(self, obj: SpendBudget) -> bool:
        return obj.enforce_hard_limits

    @admin.display(description="this period")
    def usage(self, obj: SpendBudget) -> str:
        return usage_bar(self._current(obj).share(obj))

    @admin.display(description="used")
    def used(self, obj: SpendBudget) -> str:
        return _spent_text(obj, self._current(obj))

    @admin.display(description="remaining")
    def remaining(self, obj: SpendBudget) -> str:
        return _remaining_text(obj, self._current(obj))

    @admin.display(description="period")
    def current_period(self, obj: SpendBudget) -> str:
        current = self._current(obj)
        start = f"{current.period_start:%Y-%m-%d %H:%M} UTC"
        if current.resets_at is None:
            return f"since {start} (lifetime)"
        return f"{start} → {current.resets_at:%Y-%m-%d %H:%M} UTC"

    @admin.display(description="recent periods")
    def recent_periods(self, obj: SpendBudget) -> str:
        rows = recent_periods(budget=obj)
        if not rows:
            return "No period yet: one opens with the first request that counts."
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    r.period.subject or "—",
                    f"{r.period.period_start:%Y-%m-%d %H:%M}",
                    f"{usd(r.spent.cost_micros)} · {r.spent.tokens_used:,} tok",
                    f"{usd(r.spent.cost_reserved_micros)} · {r.spent.tokens_reserved:,} tok",
                    f"{usd(r.period.pool_cost_micros)} · {r.period.pool_tokens:,} tok",
                    f"{usd(r.period.max_cost_micros)} · "
                    + ("—" if r.period.max_tokens is None else f"{r.period.max_tokens:,} tok"),
                )
                for r in rows
            ),
        )
        return format_html(
            '<table class="spend-periods"><thead><tr><th>subject</th><th>start (UTC)</th>'
            "<th>used</th><th>reserved</th><th>pool</th><th>caps</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            body,
        )

    def save_model(
        self,
        request: HttpRequest,
        obj: SpendBudget,
        form: "forms.ModelForm[SpendBudget]",
        change: bool,
    ) -> None:
        super().save_model(request, obj, form, change)
        if change and any(name in form.changed_data for name in _CAP_FIELDS):
            spend_recap(budget=obj)  # periods already open take the new caps now


class _ReadOnlyAdmin(_ReadOnlyBase):
    """The ledger is written by the protocol (budgets/spending.py) only: deleting or
    editing a row here would make the shards disagree with their period."""

    @admin.display(description="budget", ordering="budget")
    def budget_short(self, obj: Any) -> str:
        return short_id(obj.budget, chars=30)

    @admin.display(description="subject", ordering="subject")
    def subject_short(self, obj: Any) -> str:
        return short_id(obj.subject, chars=20)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


_BUDGET_RELATED = ["budget__project", "budget__api_key", "budget__provider"]


@admin.register(SpendPeriod)
class SpendPeriodAdmin(_ReadOnlyAdmin):
    list_display = ["budget_short", "subject_short", "period_start", "caps", "pool"]
    list_filter = ["budget__project", "budget__period"]
    list_select_related = _BUDGET_RELATED
    search_fields = ["subject", "budget__project__name", "budget__api_key__name"]
    date_hierarchy = "period_start"
    show_full_result_count = False

    @admin.display(description="caps")
    def caps(self, obj: SpendPeriod) -> str:
        tokens = "—" if obj.max_tokens is None else f"{obj.max_tokens:,} tok"
        return f"{usd(obj.max_cost_micros)} · {tokens}"

    @admin.display(description="pool")
    def pool(self, obj: SpendPeriod) -> str:
        return f"{usd(obj.pool_cost_micros)} · {obj.pool_tokens:,} tok"


@admin.register(SpendShard)
class SpendShardAdmin(_ReadOnlyAdmin):
    list_display = [
        "budget_short",
        "subject_short",
        "period_start",
        "shard",
        "used",
        "reserved",
        "operation_count",
    ]
    list_filter = ["budget__project"]
    list_select_related = _BUDGET_RELATED
    search_fields = ["subject", "budget__project__name"]
    # Its allotment (shown on the row's page) is bookkeeping of the protocol.
    fields = [
        "budget",
        "subject",
        "period_start",
        "shard",
        "allotted",
        "used",
        "reserved",
        "operation_count",
    ]
    readonly_fields = fields  # type: ignore[assignment]  # the stubs' list types are invariant
    date_hierarchy = "period_start"
    show_full_result_count = False

    @admin.display(description="allotted")
    def allotted(self, obj: SpendShard) -> str:
        tokens = "—" if obj.allot_tokens is None else f"{obj.allot_tokens:,} tok"
        return f"{usd(obj.allot_cost_micros)} · {tokens}"

    @admin.display(description="used")
    def used(self, obj: SpendShard) -> str:
        return f"{usd(obj.cost_accrued_micros)} · {obj.tokens_used:,} tok"

    @admin.display(description="reserved")
    def reserved(self, obj: SpendShard) -> str:
        return f"{usd(obj.cost_reserved_micros)} · {obj.tokens_reserved:,} tok"


class HoldExpiredFilter(ExpiryFilter):
    live_label = "In flight"
    expired_label = "Expired (worker gone)"


@admin.register(SpendHold)
class SpendHoldAdmin(_ReadOnlyAdmin):
    """Holds of calls in flight; an expired one is handed back by the expiry job."""

    list_display = ["operation", "tokens", "cost_usd", "created_at", "expires_at", "expired"]
    list_filter = [HoldExpiredFilter]
    search_fields = ["=operation_id"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    @admin.display(description="operation id", ordering="operation_id")
    def operation(self, obj: SpendHold) -> str:
        return short_id(obj.operation_id, chars=13)

    @admin.display(description="cost", ordering="cost_micros")
    def cost_usd(self, obj: SpendHold) -> str:
        return usd(obj.cost_micros)

    @admin.display(boolean=True, description="expired")
    def expired(self, obj: SpendHold) -> bool:
        return obj.expires_at <= timezone.now()
