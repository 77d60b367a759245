from datetime import timedelta
from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from aura_orchestrator.admin import AuraModelAdmin, short_id
from aura_orchestrator.tenancy.models import ApiKey, Project
from aura_orchestrator.tenancy.services import api_key_create, api_key_revoke, api_key_rotate

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _KeyCounts(TypedDict):
    _active_keys: int


def _status(key: ApiKey) -> tuple[str, str]:
    if key.revoked_at is not None:
        return "revoked", "#ba2121"
    if key.expires_at is not None and key.expires_at <= timezone.now():
        return "expired", "#e0a800"
    return "active", "#3a7d44"


class ApiKeyInline(admin.TabularInline):
    """The project's keys at a glance; keys are created and revoked from the key list."""

    model = ApiKey
    readonly_fields = ["name", "prefix", "created_at", "last_used_at", "expires_at", "status"]
    fields = list(readonly_fields)
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def status(self, obj: ApiKey):
        label, colour = _status(obj)
        return format_html('<span style="color:{}">{}</span>', colour, label)


@admin.register(Project)
class ProjectAdmin(AuraModelAdmin):
    list_display = [
        "name",
        "about",
        "time_zone",
        "created_at",
        "active_keys",
        "sessions",
    ]
    fields = ["name", "description", "time_zone", "created_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_at"]
    inlines = [ApiKeyInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_active_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)))
        )

    @admin.display(description="description")
    def about(self, obj: Project) -> str:
        return short_id(obj.description, chars=40, keep_end=False)

    @admin.display(description="unrevoked keys", ordering="_active_keys")
    def active_keys(self, obj: "WithAnnotations[Project, _KeyCounts]") -> int:
        return obj._active_keys

    @admin.display(description="sessions")
    def sessions(self, obj: Project):
        url = reverse("admin:budgets_llmsession_changelist") + f"?project__id__exact={obj.pk}"
        return format_html('<a href="{}">view sessions</a>', url)


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).filter(
                Q(expires_at__isnull=True) | Q(expires_at__gt=now)
            )
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["project", "name", "expires_at"]
        help_texts = {
            "name": "What the key is for (e.g. the service that uses it).",
            "expires_at": "Optional. After this moment the key answers 401.",
        }


@admin.register(ApiKey)
class ApiKeyAdmin(AuraModelAdmin):
    """Service keys. The raw key is shown once, on the page right after it is created,
    and exists nowhere afterwards: the database holds only its SHA-256."""

    list_display = [
        "name",
        "project",
        "prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "status",
    ]
    list_filter = [ApiKeyStatusFilter, "project"]
    list_select_related = ["project"]
    search_fields = ["name", "prefix", "project__name"]
    date_hierarchy = "created_at"
    actions = ["revoke", "rotate"]
    # `hashed_key` is deliberately absent from every form and list.
    readonly_fields = [
        "project",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
        "status",
        "rotated_at",
        "previous_key",
    ]
    fields = [
        "project",
        "name",
        "prefix",
        "status",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "rotated_at",
        "previous_key",
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
            kwargs["fields"] = ApiKeyAddForm.Meta.fields
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        return ApiKeyAddForm.Meta.fields if obj is None else super().get_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else super().get_readonly_fields(request, obj)

    @admin.display(description="status")
    def status(self, obj: ApiKey):
        label, colour = _status(obj)
        return format_html('<span style="color:{}">{}</span>', colour, label)

    @admin.display(description="previous key")
    def previous_key(self, obj: ApiKey) -> str:
        if not obj.in_grace:
            return "—"
        until = timezone.localtime(obj.previous_valid_until)
        return f"{obj.previous_prefix}… accepted until {until:%Y-%m-%d %H:%M %Z}"

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        created = api_key_create(name=obj.name, project=obj.project)
        row = created.api_key
        if obj.expires_at is not None:
            row.expires_at = obj.expires_at
            row.save(update_fields=["expires_at"])
        # The admin goes on with the form's instance (history, redirect): make it the row.
        for name in ("id", "prefix", "hashed_key", "created_at", "expires_at"):
            setattr(obj, name, getattr(row, name))
        obj._state.adding = False
        obj._state.db = row._state.db
        obj._raw_key = created.raw_key  # for response_add only; never persisted

    def response_add(self, request, obj, post_url_continue=None):
        raw_key = getattr(obj, "_raw_key", None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        return self._show_key_once(request, obj, raw_key, title="API key created")

    def _show_key_once(self, request, api_key: ApiKey, raw_key: str, *, title: str):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "api_key": api_key,
            "raw_key": raw_key,
            "changelist_url": reverse("admin:tenancy_apikey_changelist"),
            "change_url": reverse("admin:tenancy_apikey_change", args=[api_key.pk]),
        }
        # Rendered straight away (not a redirect with a stored message): the key never
        # lands in a session, a cookie or a cache.
        response = TemplateResponse(request, "admin/tenancy/apikey/created.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected keys (they answer 401 at once)")
    def revoke(self, request, queryset):
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=key)
            self.log_change(request, key, "Revoked.")
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)

    @admin.action(description="Rotate the selected key (the old one works for a grace period)")
    def rotate(self, request, queryset):
        keys = list(queryset.select_related("project")[:2])
        if len(keys) != 1:
            self.message_user(request, "Select exactly one key to rotate.", messages.ERROR)
            return None
        api_key = keys[0]
        form = RotateForm(request.POST if "grace" in request.POST else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": f"Rotate API key “{api_key.name}”",
                "opts": self.opts,
                "api_key": api_key,
                "form": form,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/tenancy/apikey/rotate.html", context)
        old_prefix = api_key.prefix
        try:
            rotated = api_key_rotate(api_key=api_key, grace=form.period())
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return None
        until = rotated.api_key.previous_valid_until
        self.log_change(
            request,
            rotated.api_key,
            f"Rotated: new prefix {rotated.api_key.prefix}; the old key ({old_prefix}…) "
            + (f"accepted until {until.isoformat(timespec='seconds')}." if until else "ended."),
        )
        return self._show_key_once(
            request, rotated.api_key, rotated.raw_key, title="API key rotated"
        )


class RotateForm(forms.Form):
    GRACE_CHOICES = [
        ("0", "none: the old key stops now"),
        ("1", "1 hour"),
        ("24", "24 hours"),
        ("168", "7 days"),
    ]
    grace = forms.ChoiceField(
        choices=GRACE_CHOICES,
        initial="24",
        help_text="How long the old key keeps working, for its callers to move to the new one.",
    )

    def period(self) -> timedelta:
        return timedelta(hours=int(self.cleaned_data["grace"]))
