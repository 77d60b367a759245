"""The console's rate limits: one row per scope (and model), edited like set_limits."""

from django.contrib import admin

from aura_orchestrator.admin import AuraModelAdmin, short_id
from budgets.limit_models import ALLOW_LISTS, RateLimit


@admin.register(RateLimit)
class RateLimitAdmin(AuraModelAdmin):
    list_display = [
        "scope_name",
        "model_name",
        "requests_per_minute",
        "tokens_per_minute",
        "max_in_flight",
        "allowed",
        "active",
    ]
    list_display_links = ["scope_name"]
    list_filter = ["project", "scope", "active"]
    list_select_related = ["project", "api_key"]
    search_fields = ["project__name", "api_key__name", "end_user", "model_name", *ALLOW_LISTS]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["project", "scope", "api_key", "end_user", "model_name"]}),
        (
            "Limits",
            {
                "fields": ["requests_per_minute", "tokens_per_minute", "max_in_flight"],
                "description": "Per minute, sliding (any 60 s), across every worker and "
                "machine. Empty = no limit. A refused call is a 429 with Retry-After and "
                "OpenAI's x-ratelimit-* headers, before any provider is called.",
            },
        ),
        (
            "Access",
            {
                "fields": list(ALLOW_LISTS),
                "description": "Empty = everything. Every limit set that applies to a call "
                "(project, key, end user) must allow it.",
            },
        ),
        ("State", {"fields": ["active"]}),
        ("Audit", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    @admin.display(description="scope", ordering="scope")
    def scope_name(self, obj: RateLimit) -> str:
        return short_id(obj.scope_label, chars=26)

    @admin.display(description="allowed models", ordering="allowed_models")
    def allowed(self, obj: RateLimit) -> str:
        return (
            short_id(obj.allowed_models, chars=24, keep_end=False) if obj.allowed_models else "all"
        )
