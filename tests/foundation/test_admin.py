"""The operations console: every page renders, and each operator action does what it says."""

import hashlib
import re

import pytest
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse

from aura_orchestrator.admin import short_id
from aura_orchestrator.caching.models import CacheEntry
from aura_orchestrator.catalog.models import LlmModel, Provider
from aura_orchestrator.tenancy.models import ApiKey, Project
from budgets.models import BudgetReservation, LlmSession
from presets.models import OperationPreset
from presets.operation_types import SEED_PRESETS, OperationType
from telemetry.models import OperationTelemetry
from tests.foundation.conftest import make_cache_entry, make_session, make_telemetry

OUR_APPS = {"presets", "budgets", "telemetry", "tenancy", "catalog", "caching"}
OUR_MODELS = [m for m in admin.site._registry if m._meta.app_label in OUR_APPS]


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _action(client, model, action: str, pks) -> object:
    return client.post(
        _url(model, "changelist"),
        {"action": action, "_selected_action": [str(pk) for pk in pks]},
        follow=True,
    )


def test_every_model_of_ours_is_registered():
    """Operators manage every model of the product in the admin."""
    names = {m._meta.label for m in OUR_MODELS}
    assert names == {
        "presets.OperationPreset",
        "budgets.BudgetConstraint",
        "budgets.LlmSession",
        "budgets.BudgetReservation",
        "budgets.SpendBudget",
        "budgets.RateLimit",
        "budgets.SpendPeriod",
        "budgets.SpendShard",
        "budgets.SpendHold",
        "budgets.AlertEndpoint",
        "budgets.BudgetAlert",
        "budgets.AlertDelivery",
        "telemetry.OperationTelemetry",
        "telemetry.TelemetryRollup",
        "tenancy.Project",
        "tenancy.ApiKey",
        "catalog.Provider",
        "catalog.LlmModel",
        "caching.CacheEntry",
    }


@pytest.mark.parametrize("model", OUR_MODELS, ids=lambda m: m._meta.label)
def test_changelist_add_change_and_history_pages_render(admin_client, rows, model):
    """Changelist, add (or a clear 403 where rows come only from the API), change and
    history pages all answer without error when rows are present."""
    response = admin_client.get(_url(model, "changelist"))
    assert response.status_code == 200
    model_admin = admin.site._registry[model]
    request = response.wsgi_request
    add = admin_client.get(_url(model, "add"))
    assert add.status_code == (200 if model_admin.has_add_permission(request) else 403)
    obj = model.objects.first()
    assert obj is not None
    assert admin_client.get(_url(model, "change", obj.pk)).status_code == 200
    assert admin_client.get(_url(model, "history", obj.pk)).status_code == 200


@pytest.mark.parametrize(
    ("model", "query"),
    [
        (OperationPreset, "customized=yes"),
        (OperationPreset, "customized=no&cache_enabled__exact=1"),
        (LlmSession, "has_caps=yes&enforce_hard_limits__exact=1"),
        (LlmSession, "has_caps=no&q=video"),
        (BudgetReservation, "expired=yes"),
        (BudgetReservation, "q=not-a-uuid"),
        (OperationTelemetry, "success__exact=0&cache_hit__exact=0&q=video"),
        (OperationTelemetry, "q=not-a-uuid"),
        (ApiKey, "status=revoked"),
        (ApiKey, "status=expired"),
        (CacheEntry, "expired=yes&q=aaaa"),
        (LlmModel, "price_source__exact=manual"),
    ],
)
def test_filters_and_searches_answer_200(admin_client, rows, model, query):
    """List filters and searches (including a search term that is no valid UUID) work."""
    assert admin_client.get(f"{_url(model, 'changelist')}?{query}").status_code == 200


def test_anonymous_visitor_is_sent_to_the_login_page(client, db):
    """The console is for staff only."""
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(
    "model", [LlmSession, OperationTelemetry, ApiKey, CacheEntry, BudgetReservation]
)
def test_changelist_queries_do_not_grow_with_rows(
    admin_client, rows, model, django_assert_max_num_queries
):
    """Related rows are loaded with the list (list_select_related), not one per line."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        admin_client.get(_url(model, "changelist"))
    project = rows.api_key.api_key.project
    for i in range(6):
        make_session(project, f"bulk-{i}")
        make_telemetry(project, f"bulk-{i}")
        make_cache_entry(project, f"{i:064d}")
        BudgetReservation.objects.create(
            session=rows.session,
            operation_id=rows.telemetry.operation_id,
            tokens=1,
            cost_micros=1,
            expires_at=rows.reservation.expires_at,
        )
        ApiKey.objects.create(
            project=Project.objects.create(name=f"bulk-{i}"),
            name="k",
            prefix=f"bk{i}",
            hashed_key="0" * 64,
        )
    with django_assert_max_num_queries(len(few)):
        assert admin_client.get(_url(model, "changelist")).status_code == 200


# --- Presets ------------------------------------------------------------------------------


def _preset_form(preset: OperationPreset, **changes) -> dict:
    data = {
        "description": preset.description,
        "temperature": preset.temperature,
        "top_p": preset.top_p,
        "max_tokens": preset.max_tokens,
        "timeout_seconds": preset.timeout_seconds,
        "max_retries": preset.max_retries,
        "cache_ttl_seconds": preset.cache_ttl_seconds,
    }
    if preset.cache_enabled:
        data["cache_enabled"] = "on"
    data.update(changes)
    return data


def test_preset_edit_is_audited_with_old_and_new_values_and_served_next(
    admin_client, operator, api_client
):
    """Changing a preset logs "temperature: 0.7 → 0.5" in its history, records who
    changed it, and the very next API request sees the new value."""
    preset = OperationPreset.objects.get(operation_type="planning")
    response = admin_client.post(
        _url(OperationPreset, "change", preset.pk),
        _preset_form(preset, temperature="0.5", max_tokens="1500"),
    )
    assert response.status_code == 302, response.content

    entry = LogEntry.objects.get(object_id=str(preset.pk), action_flag=CHANGE)
    message = entry.get_change_message()
    assert "temperature: 0.7 → 0.5" in message
    assert "max_tokens: 2000 → 1500" in message
    history = admin_client.get(_url(OperationPreset, "history", preset.pk))
    assert "0.7 → 0.5" in history.content.decode()

    preset.refresh_from_db()
    assert preset.updated_by == operator
    body = api_client.get("/api/v1/presets/planning").json()
    assert body["temperature"] == 0.5
    assert body["max_tokens"] == 1500
    assert body["is_customized"] is True


def test_preset_list_edit_in_place_is_audited(admin_client):
    """Editing in the list (list_editable) logs old → new values too."""
    presets = list(OperationPreset.objects.order_by("operation_type"))
    data = {
        "form-TOTAL_FORMS": str(len(presets)),
        "form-INITIAL_FORMS": str(len(presets)),
        "_save": "Save",
    }
    for i, preset in enumerate(presets):
        data[f"form-{i}-id"] = str(preset.pk)
        for name, value in _preset_form(preset).items():
            if name != "description":
                data[f"form-{i}-{name}"] = value
    index = next(i for i, p in enumerate(presets) if p.operation_type == "creative")
    data[f"form-{index}-top_p"] = "0.8"
    response = admin_client.post(_url(OperationPreset, "changelist"), data)
    assert response.status_code == 302, response.content
    creative = OperationPreset.objects.get(operation_type="creative")
    assert creative.top_p == 0.8
    entry = LogEntry.objects.get(object_id=str(creative.pk), action_flag=CHANGE)
    assert "0.95 → 0.8" in entry.get_change_message()


def test_reset_action_restores_seed_values_and_logs_them(admin_client, api_client):
    """ "Reset to seed defaults" puts back the seed values; the history says what moved."""
    OperationPreset.objects.filter(operation_type="scripting").update(
        temperature=0.1, max_tokens=99
    )
    preset = OperationPreset.objects.get(operation_type="scripting")
    response = _action(admin_client, OperationPreset, "reset_to_seed", [preset.pk])
    assert "Reset 1 preset(s)" in response.content.decode()
    preset.refresh_from_db()
    seed = SEED_PRESETS[OperationType.SCRIPTING]
    assert (preset.temperature, preset.max_tokens) == (seed.temperature, seed.max_tokens)
    entry = LogEntry.objects.get(object_id=str(preset.pk))
    assert "temperature: 0.1 → 0.8" in entry.get_change_message()
    assert api_client.get("/api/v1/presets/scripting").json()["is_customized"] is False


def test_preset_add_is_offered_only_for_a_deleted_type(admin_client):
    """All 13 presets exist after migrate, so there is nothing to add until one is
    deleted; then only that type can be added back."""
    assert admin_client.get(_url(OperationPreset, "add")).status_code == 403
    OperationPreset.objects.filter(operation_type="creative").delete()
    page = admin_client.get(_url(OperationPreset, "add")).content.decode()
    assert 'value="creative"' in page
    assert 'value="planning"' not in page


def test_invalid_preset_value_is_a_form_error_not_a_crash(admin_client):
    """Out-of-range values come back as form errors."""
    preset = OperationPreset.objects.get(operation_type="planning")
    response = admin_client.post(
        _url(OperationPreset, "change", preset.pk), _preset_form(preset, temperature="7")
    )
    assert response.status_code == 200
    assert "errornote" in response.content.decode()
    preset.refresh_from_db()
    assert preset.temperature == 0.7


# --- API keys -----------------------------------------------------------------------------


def test_api_key_add_shows_the_raw_key_once_and_stores_only_its_hash(admin_client, project):
    """Creating a key in the admin shows the raw key on the next page only; the
    database holds its SHA-256, and later pages never show it again."""
    response = admin_client.post(
        _url(ApiKey, "add"), {"project": project.pk, "name": "render-farm"}
    )
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    html = response.content.decode()
    raw_key = re.search(r'value="(aura_[A-Za-z0-9_-]+)"', html).group(1)
    assert "shown only this once" in html

    key = ApiKey.objects.get(name="render-farm")
    assert key.hashed_key == hashlib.sha256(raw_key.encode()).hexdigest()
    assert raw_key.split("_")[1] == key.prefix
    for url in (_url(ApiKey, "changelist"), _url(ApiKey, "change", key.pk)):
        page = admin_client.get(url).content.decode()
        assert raw_key not in page
        assert key.hashed_key not in page
    assert LogEntry.objects.filter(object_id=str(key.pk)).count() == 1

    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert client.get("/api/v1/presets/").status_code == 200


def test_revoked_key_is_refused_by_the_api(admin_client, api_key, api_client):
    """The "Revoke" action makes the key answer 401 on the very next call."""
    assert api_client.get("/api/v1/presets/").status_code == 200
    response = _action(admin_client, ApiKey, "revoke", [api_key.api_key.pk])
    assert "Revoked 1 key(s)" in response.content.decode()
    refused = api_client.get("/api/v1/presets/")
    assert refused.status_code == 401
    assert refused.json()["error_code"] == "unauthorized"
    listing = admin_client.get(f"{_url(ApiKey, 'changelist')}?status=revoked")
    assert api_key.api_key.prefix in listing.content.decode()


# --- Providers and models -----------------------------------------------------------------


def test_provider_pages_never_show_the_secret(admin_client, rows, monkeypatch):
    """Only the variable's name and "set"/"missing" appear, never the secret itself."""
    secret = "sk-very-secret-value-9f8e7d"
    monkeypatch.setenv("TEST_PRIMARY_API_KEY", secret)
    provider = rows.configured.provider
    for url in (_url(Provider, "changelist"), _url(Provider, "change", provider.pk)):
        html = admin_client.get(url).content.decode()
        assert secret not in html
        assert "TEST_PRIMARY_API_KEY" in html
        assert "set" in html
    monkeypatch.delenv("TEST_PRIMARY_API_KEY")
    assert "missing" in admin_client.get(_url(Provider, "changelist")).content.decode()


def test_editing_a_price_by_hand_marks_it_manual(admin_client, rows):
    """A price typed by an operator is recorded as `manual` and audited."""
    model = rows.configured.model
    LlmModel.objects.filter(pk=model.pk).update(price_source="catalogue")
    response = admin_client.post(
        _url(LlmModel, "change", model.pk),
        {
            "provider": model.provider_id,
            "name": model.name,
            "enabled": "on",
            "is_default": "on",
            "input_price": "0.25",
            "output_price": "2",
            "cached_input_price": "",
            "context_window": "",
        },
    )
    assert response.status_code == 302, response.content
    model.refresh_from_db()
    assert str(model.input_price) == "0.250000"
    assert model.price_source == "manual"
    message = LogEntry.objects.get(object_id=str(model.pk)).get_change_message()
    assert "1.000000 → 0.25" in message


def test_reset_price_from_catalogue(admin_client, rows):
    """The action takes the bundled catalogue's price for a model it knows."""
    model = LlmModel.objects.create(
        provider=rows.configured.provider,
        name="gpt-4o-mini",
        input_price=9,
        output_price=9,
        price_source="manual",
    )
    response = _action(
        admin_client, LlmModel, "reset_price_from_catalogue", [model.pk, rows.configured.model.pk]
    )
    html = response.content.decode()
    assert "Catalogue price applied to primary/gpt-4o-mini" in html
    assert "does not know primary/sim-gpt" in html
    model.refresh_from_db()
    assert model.price_source == "catalogue"
    assert model.input_price < 9


def test_making_a_second_provider_default_moves_the_flag(admin_client, rows):
    """Ticking "default" on another provider takes it from the first (no integrity error)."""
    backup = Provider.objects.create(
        name="backup", kind="anthropic", base_url="http://127.0.0.1:9", priority=200
    )
    response = admin_client.post(
        _url(Provider, "change", backup.pk),
        {
            "name": "backup",
            "kind": "anthropic",
            "base_url": "http://127.0.0.1:9",
            "api_key_env": "",
            "enabled": "on",
            "is_default": "on",
            "priority": "200",
            "models-TOTAL_FORMS": "0",
            "models-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content
    assert list(Provider.objects.filter(is_default=True)) == [backup]


# --- Budgets --------------------------------------------------------------------------------


def test_short_id_cuts_long_ids_and_keeps_the_whole_in_the_title():
    """Head and tail of an id (they differ at the end), prose cut at its end, short values
    whole; the full value, escaped, is always in the title."""
    uuid_text = "4f6c1b2a-9d8e-7f60-a1b2-c3d4e5f60718"
    assert short_id(uuid_text, chars=13) == (
        f'<span class="short-id" title="{uuid_text}">4f6c1b2a…0718</span>'
    )
    assert ">HTTP 502 from hooks…<" in short_id(
        "HTTP 502 from hooks.example.com: Bad Gateway", chars=20, keep_end=False
    )
    assert short_id("abc") == '<span class="short-id" title="abc">abc</span>'
    assert short_id("") == "—" and short_id(None) == "—"
    cut = short_id("<b>" * 10, chars=8)
    assert "<b>" not in cut and 'title="&lt;b&gt;' in cut
    assert 'title="primary / m"' in short_id("m", title="primary / m")


def test_session_list_shows_usd_and_usage_of_cap(admin_client, rows):
    """Money columns are the ledger's micro-dollars as USD; the bar shows the share of
    the tightest cap (cost: (1.234567 + 0.0012) / 2.00 ≈ 62 %). The reserved amount is
    on the session's page (the list keeps to what fits 1440 px)."""
    html = admin_client.get(_url(LlmSession, "changelist")).content.decode()
    assert "$1.234567" in html
    assert "62%" in html
    assert "$0.001200" not in html
    page = admin_client.get(_url(LlmSession, "change", rows.session.pk)).content.decode()
    assert "$0.001200" in page and "62%" in page


def test_session_cost_caps_are_edited_in_usd(admin_client, rows):
    """The session form takes USD and stores exact micro-dollars."""
    session = rows.session
    response = admin_client.post(
        _url(LlmSession, "change", session.pk),
        {
            "constraint": rows.constraint.pk,
            "max_tokens_per_operation": "",
            "max_cost_per_operation": "0.25",
            "max_tokens_per_session": "20000",
            "max_cost_per_session": "3.5",
            "enforce_hard_limits": "on",
            "reservations-TOTAL_FORMS": "1",
            "reservations-INITIAL_FORMS": "1",
            "reservations-0-id": str(rows.reservation.pk),
            "reservations-0-session": str(session.pk),
        },
    )
    assert response.status_code == 302, response.content
    session.refresh_from_db()
    assert session.max_cost_per_operation_micros == 250_000
    assert session.max_cost_per_session_micros == 3_500_000
    assert session.max_tokens_per_session == 20_000
    assert session.tokens_used == 2_500  # ledger fields are read-only
    message = LogEntry.objects.get(object_id=str(session.pk)).get_change_message()
    assert "2.000000 → 3.5" in message


def test_clear_ledger_action_deletes_the_session_and_keeps_telemetry(admin_client, rows):
    """ "Clear ledger" removes the session's ledger and reservations; telemetry stays."""
    response = _action(admin_client, LlmSession, "clear_ledger", [rows.session.pk])
    assert "Cleared the ledger of 1 session(s)" in response.content.decode()
    assert not LlmSession.objects.filter(pk=rows.session.pk).exists()
    assert not BudgetReservation.objects.filter(pk=rows.reservation.pk).exists()
    assert OperationTelemetry.objects.filter(session_id="video-123").count() == 2


def test_release_now_hands_the_reservation_back_to_the_ledger(admin_client, rows):
    """Releasing a reservation deletes it and takes its amounts off the ledger."""
    response = _action(admin_client, BudgetReservation, "release_now", [rows.reservation.pk])
    assert "Released 1 reservation(s)" in response.content.decode()
    session = LlmSession.objects.get(pk=rows.session.pk)
    assert (session.tokens_reserved, session.cost_reserved_micros) == (0, 0)
    assert not BudgetReservation.objects.exists()


def test_reservations_cannot_be_deleted_directly(admin_client, rows):
    """Deleting the row would leak its amounts on the ledger, so only release exists."""
    url = _url(BudgetReservation, "delete", rows.reservation.pk)
    assert admin_client.get(url).status_code == 403


# --- Telemetry ------------------------------------------------------------------------------


def test_telemetry_detail_shows_attempts_as_a_table_and_is_read_only(admin_client, rows):
    """The detail page renders every attempt as a table row, with no save button."""
    html = admin_client.get(_url(OperationTelemetry, "change", rows.telemetry.pk)).content
    html = html.decode()
    assert "<th>outcome</th>" in html
    assert "<td>RateLimitError</td>" in html
    assert "<td>429</td>" in html
    assert 'name="_save"' not in html
    assert admin_client.get(_url(OperationTelemetry, "add")).status_code == 403


def test_telemetry_filter_on_tool_calls_and_images(admin_client, rows):
    """The filters "Has tool calls" and "Has images" list only the operations with them."""
    project = rows.telemetry.project
    called = make_telemetry(
        project, "video-tools", tool_calls=[{"name": "search", "arguments": "{}"}], tools_sent=1
    )
    pictured = make_telemetry(project, "video-images", images_sent=2)
    url = _url(OperationTelemetry, "changelist")

    def listed(query: str) -> set[int]:
        response = admin_client.get(f"{url}?{query}")
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    assert listed("beyond_text=tool_calls") == {called.pk}
    assert listed("beyond_text=images") == {pictured.pk}
    assert {called.pk, pictured.pk, rows.telemetry.pk} <= listed("")


def test_telemetry_detail_shows_tools_images_choices_and_tool_calls(admin_client, rows):
    """The new counts and the tool calls, read-only, the calls escaped in a table."""
    row = make_telemetry(
        rows.telemetry.project,
        "video-tools",
        tools_sent=2,
        images_sent=1,
        choices=3,
        tool_calls=[{"name": "<i>search</i>", "arguments": '{"q": "<b>x</b>"}'}],
    )
    html = admin_client.get(_url(OperationTelemetry, "change", row.pk)).content.decode()
    for label in ("Tools sent", "Images sent", "Choices", "Tool calls"):
        assert label in html, label
    assert "<td>&lt;i&gt;search&lt;/i&gt;</td>" in html
    assert "<code>{&quot;q&quot;: &quot;&lt;b&gt;x&lt;/b&gt;&quot;}</code>" in html
    assert "<b>x</b>" not in html and 'name="_save"' not in html


def test_only_superusers_may_delete_telemetry(client, rows, django_user_model):
    """A staff user with view permission reads telemetry but cannot delete it."""
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("viewer", password="pw-viewer-1234")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_operationtelemetry"))
    client.force_login(staff)
    assert client.get(_url(OperationTelemetry, "changelist")).status_code == 200
    url = _url(OperationTelemetry, "delete", rows.telemetry.pk)
    assert client.get(url).status_code == 403


# --- Cache ---------------------------------------------------------------------------------


def test_purge_expired_button_and_action(admin_client, rows):
    """Both the changelist button and the action delete exactly the expired entries."""
    page = admin_client.get(_url(CacheEntry, "changelist")).content.decode()
    assert "Purge expired" in page
    response = admin_client.post(reverse("admin:caching_cacheentry_purge_expired"), follow=True)
    assert "Purged 1 expired cache entries" in response.content.decode()
    assert list(CacheEntry.objects.values_list("key_hash", flat=True)) == ["a" * 64]

    make_cache_entry(rows.cache_entry.project, "c" * 64, expired=True)
    response = _action(admin_client, CacheEntry, "purge_expired", [rows.cache_entry.pk])
    assert "Purged 1 expired cache entries" in response.content.decode()
    assert CacheEntry.objects.count() == 1
    assert admin_client.get(reverse("admin:caching_cacheentry_purge_expired")).status_code == 405


def test_price_edited_in_the_provider_inline_is_manual_and_audited(admin_client, rows):
    """The models inline on the provider page follows the same rule as the model page."""
    provider, model = rows.configured.provider, rows.configured.model
    LlmModel.objects.filter(pk=model.pk).update(price_source="catalogue")
    response = admin_client.post(
        _url(Provider, "change", provider.pk),
        {
            "name": provider.name,
            "kind": provider.kind,
            "base_url": provider.base_url,
            "api_key_env": provider.api_key_env,
            "enabled": "on",
            "is_default": "on",
            "priority": provider.priority,
            "models-TOTAL_FORMS": "1",
            "models-INITIAL_FORMS": "1",
            "models-0-id": model.pk,
            "models-0-provider": provider.pk,
            "models-0-name": model.name,
            "models-0-is_default": "on",
            "models-0-enabled": "on",
            "models-0-input_price": "1",
            "models-0-output_price": "4",
            "models-0-cached_input_price": "",
            "models-0-context_window": "",
        },
    )
    assert response.status_code == 302, response.content
    model.refresh_from_db()
    assert (model.output_price, model.price_source) == (4, "manual")
    message = LogEntry.objects.get(object_id=str(provider.pk)).get_change_message()
    assert "output_price: 2.000000 → 4" in message


def test_rollups_are_listed_read_only(admin_client):
    """The rollup admin lists buckets and offers no way to edit them."""
    from django.utils import timezone

    from telemetry.models import TelemetryRollup

    TelemetryRollup.objects.create(
        bucket_start=timezone.now().replace(minute=0, second=0, microsecond=0),
        provider_name="primary",
        model_name="sim-gpt",
        operation_type="planning",
        operations=4,
        latency_sum_ms=400,
    )
    response = admin_client.get("/admin/telemetry/telemetryrollup/")
    assert response.status_code == 200
    assert b"sim-gpt" in response.content and b">100<" in response.content
    assert admin_client.get("/admin/telemetry/telemetryrollup/add/").status_code == 403
