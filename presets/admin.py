from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import Q
from django.utils.html import format_html, format_html_join

from aura_orchestrator.admin import AuraModelAdmin
from aura_orchestrator.optimization.admin_mixin import PresetSuggestionAdminMixin
from presets.models import OperationPreset
from presets.operation_types import SEED_PRESETS, OperationType
from presets.services import preset_reset, seed_values

# The parameters an operator tunes; `description` is documentation, not behaviour.
TUNED_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "timeout_seconds",
    "max_retries",
    "cache_enabled",
    "cache_ttl_seconds",
)

_NARROW = {"style": "width:5em"}


def _seed_match() -> Q:
    """Rows whose tuned parameters all equal their seed defaults."""
    match = Q(pk__in=[])
    for op in OperationType:
        values = seed_values(op)
        match |= Q(operation_type=op.value, **{name: values[name] for name in TUNED_FIELDS})
    return match


class CustomizedFilter(admin.SimpleListFilter):
    title = "defaults"
    parameter_name = "customized"

    def lookups(self, request, model_admin):
        return [("yes", "Customized"), ("no", "Seed defaults")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(_seed_match())
        if self.value() == "no":
            return queryset.filter(_seed_match())
        return queryset


def _differences(preset: OperationPreset) -> list[tuple[str, object, object]]:
    seed = seed_values(OperationType(preset.operation_type))
    return [
        (name, seed[name], getattr(preset, name))
        for name in TUNED_FIELDS
        if getattr(preset, name) != seed[name]
    ]


@admin.register(OperationPreset)
class OperationPresetAdmin(PresetSuggestionAdminMixin, AuraModelAdmin):
    """The 13 presets. An edit applies to the next request on every worker (selectors
    read the row per request). Lists are tuples/lists here so that other features can
    extend them (`actions += [...]`, `readonly_fields += (...)`)."""

    # Who changed a preset and when is on its change page (and in its history).
    list_display = ["operation_type", *TUNED_FIELDS, "customized"]
    list_display_links = ["operation_type"]
    list_editable = list(TUNED_FIELDS)
    list_filter = [CustomizedFilter, "cache_enabled", "max_retries"]
    search_fields = ["operation_type", "description"]
    actions = ["reset_to_seed", "apply_telemetry_suggestion"]
    readonly_fields = ("seed_defaults", "telemetry_suggestion", "updated_at", "updated_by")
    fieldsets = [
        (None, {"fields": ["operation_type", "description"]}),
        ("Sampling", {"fields": ["temperature", "top_p", "max_tokens"]}),
        ("Reliability", {"fields": ["timeout_seconds", "max_retries"]}),
        ("Caching", {"fields": ["cache_enabled", "cache_ttl_seconds"]}),
        ("Suggestion from telemetry", {"fields": ["telemetry_suggestion"]}),
        ("Seed defaults and audit", {"fields": ["seed_defaults", "updated_at", "updated_by"]}),
    ]
    list_per_page = 20  # the 13 types on one page, editable in place
    # Narrow number boxes so that all seven parameters fit on one screen.
    formfield_overrides = {
        models.FloatField: {"widget": forms.NumberInput(attrs={"step": "any", **_NARROW})},
        models.PositiveIntegerField: {"widget": forms.NumberInput(attrs=_NARROW)},
        models.PositiveSmallIntegerField: {"widget": forms.NumberInput(attrs=_NARROW)},
    }

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        # An existing preset keeps its type: requests and telemetry refer to it.
        return (*fields, "operation_type") if obj is not None else fields

    def has_add_permission(self, request):
        # Only a type whose row an operator deleted can be added back.
        return super().has_add_permission(request) and OperationPreset.objects.count() < len(
            OperationType
        )

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "operation_type":
            taken = set(OperationPreset.objects.values_list("operation_type", flat=True))
            kwargs["choices"] = [c for c in OperationType.choices if c[0] not in taken]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)

    @admin.display(boolean=True, description="customized")
    def customized(self, obj: OperationPreset) -> bool:
        return bool(_differences(obj))

    @admin.display(description="seed defaults")
    def seed_defaults(self, obj: OperationPreset):
        if obj is None or not obj.operation_type:
            return "—"
        seed = SEED_PRESETS[OperationType(obj.operation_type)]
        changed = {name for name, _, _ in _differences(obj)}
        rows = format_html_join(
            "",
            '<tr><th style="padding-right:1em">{}</th><td>{}</td><td>{}</td></tr>',
            (
                (name, getattr(seed, name), "← changed" if name in changed else "")
                for name in TUNED_FIELDS
            ),
        )
        return format_html("<table>{}</table>", rows)

    @admin.action(description="Reset selected presets to seed defaults")
    def reset_to_seed(self, request, queryset):
        reset = []
        for preset in queryset:
            before = _differences(preset)
            preset_reset(operation_type=OperationType(preset.operation_type), user=request.user)
            if before:
                message = "Reset to seed defaults: " + ", ".join(
                    f"{name}: {current} → {seed}" for name, seed, current in before
                )
                self.log_change(request, preset, message)
                reset.append(str(preset))
        if reset:
            self.message_user(
                request, f"Reset {len(reset)} preset(s): {', '.join(reset)}.", messages.SUCCESS
            )
        else:
            self.message_user(request, "Already at seed defaults; nothing changed.", messages.INFO)
