"""The preset admin's telemetry suggestion: shown beside the stored values on a preset's
page, applied with a button there or an action on the list, recorded in the audit log."""

from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from aura_orchestrator.errors import InvalidRequest
from aura_orchestrator.optimization.history import history_for, setting
from aura_orchestrator.optimization.selectors import suggestion_for_preset
from aura_orchestrator.optimization.services import preset_apply_suggestion

PARAMETERS = ("temperature", "top_p", "max_tokens", "timeout_seconds", "max_retries")

if TYPE_CHECKING:  # what the mixin is mixed into, for the type checker only
    from presets.models import OperationPreset

    _AdminBase = admin.ModelAdmin[OperationPreset]
else:
    _AdminBase = object


class PresetSuggestionAdminMixin(_AdminBase):
    """Mix into the OperationPreset admin; add `telemetry_suggestion` to its readonly
    fields and fieldsets and `apply_telemetry_suggestion` to its actions."""

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/apply-suggestion/",
                self.admin_site.admin_view(self.apply_suggestion_view),
                name="presets_operationpreset_apply_suggestion",
            )
        ]
        return own + super().get_urls()

    @admin.display(description="suggestion from telemetry")
    def telemetry_suggestion(self, obj):
        if obj is None or not obj.pk:
            return "—"
        suggestion = suggestion_for_preset(operation_type=obj.operation_type)
        if suggestion is None:
            history = history_for(
                project_id=None, operation_type=obj.operation_type, model_name=None
            )
            return (
                f"Not enough telemetry yet: {history.successes} of "
                f"{setting('OPTIMIZER_MIN_SAMPLE', 30)} successful operations needed."
            )
        rows = format_html_join(
            "",
            '<tr><th style="padding-right:1em">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    name,
                    getattr(obj, name),
                    getattr(suggestion, name),
                    "← differs" if getattr(obj, name) != getattr(suggestion, name) else "",
                )
                for name in PARAMETERS
            ),
        )
        url = reverse("admin:presets_operationpreset_apply_suggestion", args=[obj.pk])
        return format_html(
            "<table><tr><th></th><th>stored</th><th>suggested</th><th></th></tr>{}</table>"
            "<p>Confidence {} from {} operations on {}. {}</p>"
            # formaction posts the page's form (with its CSRF token) to the apply view.
            '<p><button type="submit" class="button" formaction="{}">'
            "Apply this suggestion</button></p>",
            rows,
            suggestion.confidence,
            suggestion.sample_size,
            suggestion.model or "every model",
            suggestion.rationale,
            url,
        )

    def apply_suggestion_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        preset = self.get_object(request, object_id)
        if preset is None or not self.has_change_permission(request, preset):
            raise PermissionDenied
        self._apply(request, preset)
        return HttpResponseRedirect(
            reverse("admin:presets_operationpreset_change", args=[preset.pk])
        )

    @admin.action(description="Apply the telemetry suggestion to selected presets")
    def apply_telemetry_suggestion(self, request, queryset):
        for preset in queryset:
            self._apply(request, preset)

    def _apply(self, request, preset) -> None:
        try:
            suggestion = preset_apply_suggestion(
                operation_type=preset.operation_type, user=request.user
            )
        except InvalidRequest as exc:
            self.message_user(request, exc.message, messages.WARNING)
            return
        self.message_user(
            request,
            f"{preset}: applied the telemetry suggestion ({suggestion.sample_size} operations).",
            messages.SUCCESS,
        )
