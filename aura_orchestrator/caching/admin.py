from django.contrib import admin, messages
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from aura_orchestrator.admin import AuraModelAdmin, ExpiryFilter, short_id
from aura_orchestrator.caching.models import CacheEntry
from aura_orchestrator.caching.services import cache_purge_expired


@admin.register(CacheEntry)
class CacheEntryAdmin(AuraModelAdmin):
    """Cached answers. Only the expiry is editable (to extend or end an entry early);
    the answer itself is what a provider returned."""

    # Provider, creation and last hit are on the change page.
    list_display = [
        "key",
        "project_name",
        "operation_type",
        "served_by",
        "expires_at",
        "expired",
        "hit_count",
    ]
    list_filter = [ExpiryFilter, "project", "operation_type", "provider_name"]
    list_select_related = ["project"]
    search_fields = ["^key_hash"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["purge_expired"]
    readonly_fields = [
        "project",
        "key_hash",
        "operation_type",
        "provider_name",
        "model_name",
        "tokens_in",
        "tokens_out",
        "created_at",
        "hit_count",
        "last_hit_at",
        "expired",
        "content_block",
    ]
    fieldsets = [
        (None, {"fields": ["project", "key_hash", "operation_type"]}),
        ("Answer", {"fields": ["provider_name", "model_name", "tokens_in", "tokens_out"]}),
        ("Content", {"fields": ["content_block"]}),
        (
            "Lifetime",
            {"fields": ["created_at", "expires_at", "expired", "hit_count", "last_hit_at"]},
        ),
    ]

    def has_add_permission(self, request):
        return False  # entries are written by the pipeline

    def get_urls(self):
        purge = self.admin_site.admin_view(self.purge_expired_view)
        return [
            path("purge-expired/", purge, name="caching_cacheentry_purge_expired"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_purge": self.has_delete_permission(request)}
        return super().changelist_view(request, extra_context)

    @admin.display(description="key", ordering="key_hash")
    def key(self, obj: CacheEntry) -> str:
        return short_id(obj.key_hash, chars=14)

    @admin.display(description="project", ordering="project__name")
    def project_name(self, obj: CacheEntry) -> str:
        return short_id(obj.project.name, chars=20)

    @admin.display(description="model", ordering="model_name")
    def served_by(self, obj: CacheEntry) -> str:
        return short_id(obj.model_name, chars=17, title=f"{obj.provider_name} / {obj.model_name}")

    @admin.display(boolean=True, description="expired")
    def expired(self, obj: CacheEntry) -> bool:
        return obj.is_expired

    @admin.display(description="content")
    def content_block(self, obj: CacheEntry):
        return format_html(
            '<pre style="white-space:pre-wrap;max-height:30em;overflow:auto">{}</pre>',
            obj.content,
        )

    def _purge(self, request) -> None:
        purged = cache_purge_expired()
        self.message_user(request, f"Purged {purged} expired cache entries.", messages.SUCCESS)

    @admin.action(
        description="Purge every expired entry (whatever the selection)",
        permissions=["delete"],
    )
    def purge_expired(self, request, queryset):
        self._purge(request)

    def purge_expired_view(self, request):
        """The changelist's "Purge expired" button (POST only, CSRF-protected)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_delete_permission(request):
            self.message_user(request, "You may not delete cache entries.", messages.ERROR)
        else:
            self._purge(request)
        return HttpResponseRedirect(reverse("admin:caching_cacheentry_changelist"))
