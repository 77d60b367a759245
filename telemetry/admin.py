from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from aura_orchestrator.admin import short_id
from telemetry.models import OperationTelemetry, TelemetryRollup
from telemetry.selectors.vendor import estimated_rows

# Below this many rows an exact COUNT(*) is cheap enough.
_EXACT_COUNT_BELOW = 50_000


class EstimatedCountPaginator(Paginator):
    """COUNT(*) over millions of telemetry rows takes seconds on PostgreSQL. An
    unfiltered list uses the planner's estimate instead (pages need only an order of
    magnitude); filtered lists, usually narrowed by an index, still count exactly."""

    @cached_property
    def count(self) -> int:
        # The admin's changelist paginates a queryset (the stubs type any sequence).
        queryset = cast("QuerySet[Any]", self.object_list)
        if not queryset.query.where:
            estimate = estimated_rows(queryset)
            if estimate is not None and estimate >= _EXACT_COUNT_BELOW:
                return estimate
        return super().count


class BeyondTextFilter(admin.SimpleListFilter):
    """Operations that were answered tool calls, or that sent images."""

    title = "tools and images"
    parameter_name = "beyond_text"

    def lookups(
        self, request: HttpRequest, model_admin: "admin.ModelAdmin[Any]"
    ) -> list[tuple[str, str]]:
        return [("tool_calls", "Has tool calls"), ("images", "Has images")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[OperationTelemetry]
    ) -> QuerySet[OperationTelemetry]:
        if self.value() == "tool_calls":
            return queryset.exclude(tool_calls=[])
        if self.value() == "images":
            return queryset.filter(images_sent__gt=0)
        return queryset


@admin.register(OperationTelemetry)
class OperationTelemetryAdmin(admin.ModelAdmin):
    """Read-only record of every operation. Rows are written by the pipeline only;
    superusers may delete (e.g. data a tenant asked to erase)."""

    # What fits 1440 px: provider, cache hit, retries and the error are on the change page
    # (and in the filters).
    list_display = [
        "started_at",
        "session",
        "operation_type",
        "served_by",
        "tokens",
        "cost",
        "latency",
        "success",
    ]
    list_filter = [
        "success",
        "cache_hit",
        "budget_overrun",
        "operation_type",
        "provider_name",
        "source",
        BeyondTextFilter,
        "project",
    ]
    list_select_related = ["project"]
    # Prefix and exact searches use the indexes; a leading-wildcard scan would not.
    search_fields = ["^session_id", "=operation_id", "^model_name", "=end_user"]
    date_hierarchy = "started_at"
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 100
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "operation_id",
                    "project",
                    "api_key",
                    "session_id",
                    "end_user",
                    "operation_type",
                    "source",
                    "streamed",
                ]
            },
        ),
        (
            "Outcome",
            {
                "fields": [
                    "success",
                    "cache_hit",
                    "error_code",
                    "error_message",
                    "provider_name",
                    "model_name",
                    "retry_count",
                    "attempts_table",
                ]
            },
        ),
        (
            "Usage",
            {
                "fields": [
                    "tokens_in",
                    "tokens_out",
                    "total_tokens",
                    "estimated_cost",
                    "cache_read_tokens",
                    "cache_write_tokens",
                    "cache_savings",
                    "budget_overrun",
                ]
            },
        ),
        (
            "Timing",
            {"fields": ["started_at", "completed_at", "latency_ms", "time_to_first_token_ms"]},
        ),
        ("Parameters", {"fields": ["temperature", "top_p", "max_tokens"]}),
        (
            "Tools and images",
            {"fields": ["tools_sent", "images_sent", "choices", "tool_calls_table"]},
        ),
    ]
    readonly_fields = [name for name in flatten_fieldsets(fieldsets) if name != "attempts"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def get_queryset(self, request):
        # The detail page loads the key and project; the list never needs the key.
        return super().get_queryset(request).select_related("api_key")

    @admin.display(description="session id", ordering="session_id")
    def session(self, obj: OperationTelemetry) -> str:
        return short_id(obj.session_id, chars=16)

    @admin.display(description="model", ordering="model_name")
    def served_by(self, obj: OperationTelemetry) -> str:
        return short_id(obj.model_name, chars=14, title=f"{obj.provider_name} / {obj.model_name}")

    @admin.display(description="cost", ordering="estimated_cost")
    def cost(self, obj: OperationTelemetry) -> str:
        return f"${obj.estimated_cost}"

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: OperationTelemetry) -> str:
        return f"{obj.latency_ms} ms"

    @admin.display(description="tokens in / out")
    def tokens(self, obj: OperationTelemetry) -> str:
        return f"{obj.tokens_in} / {obj.tokens_out}"

    @admin.display(description="total tokens")
    def total_tokens(self, obj: OperationTelemetry) -> int:
        return obj.total_tokens

    @admin.display(description="attempts")
    def attempts_table(self, obj: OperationTelemetry):
        attempts = [a for a in obj.attempts or [] if isinstance(a, dict)]
        if not attempts:
            return "— (no provider call: cache hit or refused before the call)"
        columns = list(dict.fromkeys(key for attempt in attempts for key in attempt))
        head = format_html_join("", "<th>{}</th>", ((c.replace("_", " "),) for c in columns))
        rows = format_html_join(
            "",
            "<tr><td>{}</td>{}</tr>",
            (
                (
                    number,
                    format_html_join(
                        "",
                        "<td>{}</td>",
                        (("—" if a.get(c) is None else a.get(c),) for c in columns),
                    ),
                )
                for number, a in enumerate(attempts, start=1)
            ),
        )
        return format_html("<table><thead><tr><th>#</th>{}</tr></thead>{}</table>", head, rows)

    @admin.display(description="tool calls")
    def tool_calls_table(self, obj: OperationTelemetry):
        calls = [c for c in obj.tool_calls or [] if isinstance(c, dict)]
        if not calls:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            (
                (number, call.get("name", ""), call.get("arguments", ""))
                for number, call in enumerate(calls, start=1)
            ),
        )
        return format_html(
            "<table><thead><tr><th>#</th><th>name</th><th>arguments</th></tr></thead>{}</table>",
            rows,
        )


@admin.register(TelemetryRollup)
class TelemetryRollupAdmin(admin.ModelAdmin):
    """Hourly rollups, written by the rollup job: read-only, for checking what the
    dashboards and long-range statistics are built from."""

    # Project (a filter) and the token counts are on the row's page.
    list_display = (
        "bucket_start",
        "operation_type",
        "served_by",
        "operations",
        "failures",
        "cache_hits",
        "cost",
        "average_latency_ms",
    )
    list_filter = ("operation_type", "provider_name", "project")
    date_hierarchy = "bucket_start"
    list_select_related = ("project",)
    show_full_result_count = False
    ordering = ("-bucket_start",)

    @admin.display(description="model", ordering="model_name")
    def served_by(self, obj: TelemetryRollup) -> str:
        return short_id(obj.model_name, chars=20, title=f"{obj.provider_name} / {obj.model_name}")

    @admin.display(description="avg latency (ms)")
    def average_latency_ms(self, obj: TelemetryRollup) -> int:
        return round(obj.latency_sum_ms / obj.operations) if obj.operations else 0

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
