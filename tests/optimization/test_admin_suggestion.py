"""The admin: a preset's page shows the telemetry suggestion beside the stored values,
and applying it writes the preset and the audit log."""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse

from aura_orchestrator.errors import InvalidRequest
from aura_orchestrator.optimization.selectors import suggestion_for_preset
from aura_orchestrator.optimization.services import preset_apply_suggestion
from aura_orchestrator.tenancy.services import project_get_or_create
from presets.models import OperationPreset
from presets.operation_types import OperationType
from presets.services import preset_reset
from tests.optimization.helpers import make_history

pytestmark = pytest.mark.django_db


@pytest.fixture
def planning():
    return preset_reset(operation_type=OperationType.PLANNING)


def test_no_suggestion_without_enough_history(provider, planning):
    assert suggestion_for_preset(operation_type="planning") is None
    with pytest.raises(InvalidRequest):
        preset_apply_suggestion(operation_type="planning", user=None)


def test_the_suggestion_learns_from_every_project(provider, planning, project):
    """Staff see every project: 20 + 20 operations in two projects reach the minimum."""
    make_history(project=project, count=20)
    make_history(project=project_get_or_create(name="other"), count=20, seed=2)
    suggestion = suggestion_for_preset(operation_type="planning")
    assert suggestion is not None and suggestion.source == "telemetry"
    assert suggestion.sample_size == 40


def test_applying_writes_the_preset_and_the_audit_log(provider, planning, project, admin_user):
    make_history(project=project, count=200)
    suggestion = preset_apply_suggestion(operation_type="planning", user=admin_user)
    planning.refresh_from_db()
    assert (planning.max_tokens, planning.timeout_seconds) == (238, 3.0)
    assert planning.max_tokens == suggestion.max_tokens
    assert planning.updated_by == admin_user
    entry = LogEntry.objects.get(object_id=str(planning.pk))
    assert entry.action_flag == CHANGE and entry.user == admin_user
    assert "Applied the telemetry suggestion (200 operations" in entry.change_message
    assert "max_tokens: 2000 → 238" in entry.change_message


def test_the_preset_page_shows_stored_and_suggested_values(
    admin_client, provider, planning, project
):
    make_history(project=project, count=200)
    url = reverse("admin:presets_operationpreset_change", args=[planning.pk])
    page = admin_client.get(url).content.decode()
    assert "Suggestion from telemetry" in page
    assert "<td>2000</td><td>238</td>" in page
    assert "Apply this suggestion" in page


def test_the_preset_page_says_when_history_is_too_small(admin_client, provider, planning):
    url = reverse("admin:presets_operationpreset_change", args=[planning.pk])
    assert "Not enough telemetry yet: 0 of 30" in admin_client.get(url).content.decode()


def test_the_apply_button_and_the_list_action_apply_it(admin_client, provider, planning, project):
    make_history(project=project, count=200)
    apply_url = reverse("admin:presets_operationpreset_apply_suggestion", args=[planning.pk])
    assert admin_client.get(apply_url).status_code == 405
    response = admin_client.post(apply_url)
    assert response.status_code == 302
    assert OperationPreset.objects.get(pk=planning.pk).max_tokens == 238
    OperationPreset.objects.filter(pk=planning.pk).update(max_tokens=999)
    admin_client.post(
        reverse("admin:presets_operationpreset_changelist"),
        {"action": "apply_telemetry_suggestion", "_selected_action": [planning.pk]},
    )
    assert OperationPreset.objects.get(pk=planning.pk).max_tokens == 238
    assert LogEntry.objects.filter(object_id=str(planning.pk)).count() == 2
