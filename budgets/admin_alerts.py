"""The console's budget alerts: webhook endpoints (secret write-only), the alerts told,
and the delivery log."""

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from aura_orchestrator.admin import AuraModelAdmin, short_id, usd
from aura_orchestrator.crypto import Sealed
from budgets.alerts import send_test_alert
from budgets.spend_models import AlertDelivery, AlertEndpoint, BudgetAlert

if TYPE_CHECKING:  # generic for the type checker only (no runtime __class_getitem__)
    _EndpointFormBase = forms.ModelForm[AlertEndpoint]
else:
    _EndpointFormBase = forms.ModelForm

SECRET_MIN_CHARS = 16
_SECRET_FIELD = "new_secret"


def secret_hint(secret: Sealed) -> str:
    """`…abcd` of the stored (encrypted) secret; "—" when none or unreadable."""
    return secret.hint or "—"


class AlertEndpointForm(_EndpointFormBase):
    """The secret is typed, never shown: the form field is not the model's, so neither
    the page nor the form's initial values ever carry the stored one."""

    url = forms.URLField(max_length=500, assume_scheme="https")
    new_secret = forms.CharField(
        label="Secret",
        required=False,
        min_length=SECRET_MIN_CHARS,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Signs every delivery (HMAC-SHA256). Leave empty to keep the current one.",
    )

    class Meta:
        model = AlertEndpoint
        fields = ["project", "url", "active"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.instance.pk is None and not cleaned.get(_SECRET_FIELD):
            self.add_error(_SECRET_FIELD, "A new endpoint needs a secret.")
        return cleaned

    def save(self, commit: bool = True) -> AlertEndpoint:
        if self.cleaned_data.get(_SECRET_FIELD):
            self.instance.secret = self.cleaned_data[_SECRET_FIELD]
        return super().save(commit)


@admin.register(AlertEndpoint)
class AlertEndpointAdmin(AuraModelAdmin):
    form = AlertEndpointForm
    list_display = ["endpoint_url", "project", "active", "secret_end", "created_at"]
    list_filter = ["active", "project"]
    list_select_related = ["project"]
    search_fields = ["url", "project__name"]
    readonly_fields = ["secret_end", "created_at"]
    fields = ["project", "url", "active", _SECRET_FIELD, "secret_end", "created_at"]
    actions = ["send_test"]

    @admin.display(description="URL", ordering="url")
    def endpoint_url(self, obj: AlertEndpoint) -> str:
        return short_id(obj.url, chars=48)

    @admin.display(description="current secret")
    def secret_end(self, obj: AlertEndpoint) -> str:
        return secret_hint(obj.secret)

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> list[dict[str, Any]]:
        """The history says the secret changed, never its value."""
        message: list[dict[str, Any]] = super().construct_change_message(  # type: ignore[no-untyped-call]  # the shared mixin is untyped
            request, form, formsets, add
        )
        for entry in message:
            fields = entry.get("changed", {}).get("fields")
            if fields:
                entry["changed"]["fields"] = [
                    "secret: replaced" if str(f).startswith(_SECRET_FIELD) else f for f in fields
                ]
        return message

    @admin.action(description="Send test alert")
    def send_test(self, request: HttpRequest, queryset: QuerySet[AlertEndpoint]) -> None:
        for endpoint in queryset.select_related("project"):
            delivery = send_test_alert(endpoint=endpoint)
            if delivery.status == AlertDelivery.Status.DELIVERED:
                self.message_user(
                    request,
                    f"Test alert delivered to {endpoint.url} (HTTP {delivery.last_status_code}).",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"Test alert to {endpoint.url} failed: {delivery.last_error}",
                    messages.ERROR,
                )


class _ReadOnly(AuraModelAdmin):
    """Rows written by the alerting code only: viewable, never edited here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _amount(unit: str, value: int) -> str:
    return usd(value) if unit == "cost" else f"{value:,} tokens"


@admin.register(BudgetAlert)
class BudgetAlertAdmin(_ReadOnly):
    list_display = [
        "scope",
        "subject_short",
        "period",
        "period_start",
        "threshold_percent",
        "used_shown",
        "cap_shown",
        "created_at",
    ]
    list_filter = ["unit", "threshold", "budget__project"]
    list_select_related = ["budget", "budget__project", "budget__api_key", "budget__provider"]
    search_fields = ["subject", "budget__project__name"]
    date_hierarchy = "created_at"
    fields = [
        "budget",
        "subject",
        "period_start",
        "threshold",
        "unit",
        "used_shown",
        "cap_shown",
        "created_at",
    ]
    readonly_fields = fields  # type: ignore[assignment]  # the stubs' list types are invariant

    @admin.display(description="scope")
    def scope(self, obj: BudgetAlert) -> str:
        return short_id(obj.budget.scope_label, chars=24)

    @admin.display(description="subject", ordering="subject")
    def subject_short(self, obj: BudgetAlert) -> str:
        return short_id(obj.subject, chars=20)

    @admin.display(description="period", ordering="budget__period")
    def period(self, obj: BudgetAlert) -> str:
        return obj.budget.period

    @admin.display(description="threshold", ordering="threshold")
    def threshold_percent(self, obj: BudgetAlert) -> str:
        return f"{obj.threshold}%"

    @admin.display(description="used", ordering="used")
    def used_shown(self, obj: BudgetAlert) -> str:
        return _amount(obj.unit, obj.used)

    @admin.display(description="cap", ordering="cap")
    def cap_shown(self, obj: BudgetAlert) -> str:
        return _amount(obj.unit, obj.cap)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(_ReadOnly):
    list_display = [
        "channel",
        "target_short",
        "status",
        "attempts",
        "last_status_code",
        "error_short",
        "created_at",
    ]
    list_filter = ["status", "channel", "endpoint__project"]
    list_select_related = ["endpoint"]
    search_fields = ["target"]
    date_hierarchy = "created_at"
    fields = [
        "alert",
        "endpoint",
        "channel",
        "target",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "payload",
        "created_at",
        "delivered_at",
    ]
    readonly_fields = fields  # type: ignore[assignment]  # the stubs' list types are invariant

    @admin.display(description="target", ordering="target")
    def target_short(self, obj: AlertDelivery) -> str:
        return short_id(obj.target, chars=28)

    @admin.display(description="last error")
    def error_short(self, obj: AlertDelivery) -> str:
        return short_id(obj.last_error, chars=28, keep_end=False)
