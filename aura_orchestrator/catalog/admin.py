import os
from typing import TYPE_CHECKING, Any, TypedDict

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import Count
from django.utils.html import format_html

from aura_orchestrator.admin import AuraModelAdmin, short_id
from aura_orchestrator.catalog.models import LlmModel, Provider
from aura_orchestrator.catalog.secrets import env_refusal
from aura_orchestrator.catalog.services import model_apply_catalogue_price

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _ModelCounts(TypedDict):
    _model_count: int


PRICE_FIELDS = ("input_price", "output_price", "cached_input_price", "cache_write_price")


def _mark_manual_price(model: LlmModel, changed: list[str]) -> None:
    """A price typed by an operator is theirs: the catalogue must not overwrite it."""
    if any(name in PRICE_FIELDS for name in changed):
        model.price_source = LlmModel.PriceSource.MANUAL


def _one_default_model(model: LlmModel) -> None:
    if model.is_default:
        LlmModel.objects.filter(provider_id=model.provider_id, is_default=True).exclude(
            pk=model.pk
        ).update(is_default=False)


class LlmModelInline(admin.TabularInline):
    model = LlmModel
    fields = [
        "name",
        "is_default",
        "enabled",
        "input_price",
        "output_price",
        "cached_input_price",
        "cache_write_price",
        "price_source",
        "context_window",
    ]
    readonly_fields = ["price_source"]
    extra = 0
    show_change_link = True


class ProviderForm(forms.ModelForm):
    """The key is typed, never shown: `new_api_key` is not the model's field, so neither
    the page nor the form's initial values ever carry the stored one."""

    new_api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted; shown afterwards as its last four characters. "
        "Leave empty to keep the current one.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        key = cleaned.get("new_api_key") or ""
        if key and cleaned.get("clear_api_key"):
            self.add_error("clear_api_key", "Either type a new key or remove the stored one.")
        if any(not c.isprintable() or c.isspace() for c in key):
            self.add_error("new_api_key", "A key is one line without spaces.")
        return cleaned

    def save(self, commit: bool = True) -> Provider:
        if self.cleaned_data.get("new_api_key"):
            self.instance.api_key = self.cleaned_data["new_api_key"]
        elif self.cleaned_data.get("clear_api_key"):
            self.instance.api_key = ""
        return super().save(commit)

    def _get_validation_exclusions(self):
        # "One default provider" is kept by save_model, which takes the flag from the old
        # default: the form must not refuse the move. (A private method: not in the stubs.)
        return {*super()._get_validation_exclusions(), "is_default"}  # type: ignore[misc]


@admin.register(Provider)
class ProviderAdmin(AuraModelAdmin):
    """Upstreams. A key typed here is stored encrypted and shown only as `…abcd`; a key
    variable shows its name and whether it is set (and allowed), never its value."""

    list_display = [
        "provider_name",
        "kind_code",
        "base_url_short",
        "secret",
        "enabled",
        "is_default",
        "priority",
        "model_count",
    ]
    list_editable = ["enabled", "priority"]
    list_filter = ["kind", "enabled", "is_default"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["secret", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "base_url"]}),
        ("Secret", {"fields": ["new_api_key", "clear_api_key", "api_key_env", "secret"]}),
        ("Fallback chain", {"fields": ["enabled", "is_default", "priority"]}),
        ("Audit", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]
    inlines = [LlmModelInline]
    form = ProviderForm
    formfield_overrides = {
        models.URLField: {"assume_scheme": "https"},
        models.PositiveSmallIntegerField: {
            "widget": forms.NumberInput(attrs={"style": "width:5em"})
        },
    }

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_model_count=Count("models"))

    @admin.display(description="name", ordering="name")
    def provider_name(self, obj: Provider) -> str:
        return short_id(obj.name, chars=24)

    @admin.display(description="kind", ordering="kind")
    def kind_code(self, obj: Provider) -> str:
        return format_html('<span title="{}">{}</span>', obj.get_kind_display(), obj.kind)

    @admin.display(description="base URL", ordering="base_url")
    def base_url_short(self, obj: Provider) -> str:
        return short_id(obj.base_url, chars=26)

    @admin.display(description="models", ordering="_model_count")
    def model_count(self, obj: "WithAnnotations[Provider, _ModelCounts]") -> int:
        return obj._model_count

    @admin.display(description="secret")
    def secret(self, obj: Provider):
        """Which key a call sends: the stored one (…abcd), else the variable's (set,
        missing or not allowed); never a value."""
        ok, bad = "#3a7d44", "#ba2121"
        if obj.api_key:
            hint = obj.api_key.hint
            if not hint:
                return format_html(
                    '<span style="color:{}">✘ {}</span>', bad, "stored, unreadable with the keys"
                )
            return format_html('<span style="color:{}">✔ stored {}</span>', ok, hint)
        if not obj.api_key_env:
            return "— (no key)"
        # The variable's name in the title: the list has no room for a column of its own.
        name = obj.api_key_env
        if env_refusal(name) is not None:
            return format_html(
                '<span style="color:{}" title="{}">✘ {}</span>', bad, name, "variable not allowed"
            )
        if os.environ.get(name):
            return format_html('<span style="color:{}" title="{}">✔ {}</span>', ok, name, "set")
        return format_html('<span style="color:{}" title="{}">✘ {}</span>', bad, name, "missing")

    def save_model(self, request, obj, form, change):
        # At most one default provider (a database constraint): the new one wins.
        if obj.is_default:
            Provider.objects.filter(is_default=True).exclude(pk=obj.pk).update(is_default=False)
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        for inline_form in formset.forms:
            if inline_form.has_changed() and not getattr(inline_form, "cleaned_data", {}).get(
                "DELETE"
            ):
                _mark_manual_price(inline_form.instance, inline_form.changed_data)
        super().save_formset(request, form, formset, change)
        for model in formset.new_objects + [m for m, _ in formset.changed_objects]:
            _one_default_model(model)


@admin.register(LlmModel)
class LlmModelAdmin(AuraModelAdmin):
    list_display = [
        "model_name",
        "provider_name",
        "enabled",
        "is_default",
        "input_price",
        "output_price",
        "price_source",
        "context_window",
    ]
    list_editable = ["enabled", "input_price", "output_price"]
    # Narrow price boxes, so that the editable list fits the window.
    formfield_overrides = {
        models.DecimalField: {
            "widget": forms.NumberInput(attrs={"step": "any", "style": "width:6em"})
        }
    }
    list_filter = ["provider", "price_source", "enabled"]
    list_select_related = ["provider"]
    search_fields = ["name", "provider__name"]
    readonly_fields = ["price_source", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["provider", "name", "enabled", "is_default", "context_window"]}),
        (
            "Prices (USD per million tokens)",
            {
                "fields": [*PRICE_FIELDS, "price_source"],
                "description": "Editing a price marks it as set by an operator; the action "
                "“Reset price from catalogue” goes back to the bundled catalogue.",
            },
        ),
        ("Audit", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]
    actions = ["reset_price_from_catalogue"]

    def save_model(self, request, obj, form, change):
        _mark_manual_price(obj, form.changed_data)
        super().save_model(request, obj, form, change)
        _one_default_model(obj)

    @admin.display(description="name", ordering="name")
    def model_name(self, obj: LlmModel) -> str:
        return short_id(obj.name, chars=26)

    @admin.display(description="provider", ordering="provider__name")
    def provider_name(self, obj: LlmModel) -> str:
        return short_id(obj.provider.name, chars=16)

    @admin.action(description="Reset price from catalogue")
    def reset_price_from_catalogue(self, request, queryset):
        updated: list[LlmModel] = []
        unknown: list[LlmModel] = []
        for model in queryset.select_related("provider"):
            (updated if model_apply_catalogue_price(llm_model=model) else unknown).append(model)
        for model in updated:
            self.log_change(request, model, "Price reset from the catalogue.")
        if updated:
            names = ", ".join(str(m) for m in updated)
            self.message_user(request, f"Catalogue price applied to {names}.", messages.SUCCESS)
        if unknown:
            names = ", ".join(str(m) for m in unknown)
            self.message_user(
                request,
                f"The catalogue does not know {names}; prices left unchanged.",
                messages.WARNING,
            )
