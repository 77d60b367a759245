"""Key rotation: a new secret for the same key (its budgets and history stay), the old
secret accepted for a grace period and refused after it; from the command line, the
admin, and through a real `manage.py serve`."""

import time
from datetime import timedelta
from io import StringIO

import httpx
import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from aura_orchestrator.tenancy.models import ApiKey, Project
from aura_orchestrator.tenancy.selectors import api_key_authenticate
from aura_orchestrator.tenancy.services import (
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    project_get_or_create,
)


def _works(raw_key: str) -> bool:
    return api_key_authenticate(raw_key=raw_key) is not None


def _sleep_past(moment) -> None:
    time.sleep(max(0.0, (moment - timezone.now()).total_seconds()) + 0.05)


def test_both_secrets_work_during_the_grace_and_only_the_new_one_after(api_key):
    """The same key row: both secrets authenticate to it during the grace; once it has
    passed, the old secret is refused although its key is still memoized (the grace is
    checked on every request, like expiry)."""
    old = api_key.raw_key
    assert _works(old)
    rotated = api_key_rotate(api_key=api_key.api_key, grace=timedelta(seconds=0.5))
    new = rotated.raw_key
    assert new != old and rotated.api_key.pk == api_key.api_key.pk
    assert api_key_authenticate(raw_key=old).pk == api_key.api_key.pk  # memoized now
    assert api_key_authenticate(raw_key=new).pk == api_key.api_key.pk
    _sleep_past(rotated.api_key.previous_valid_until)
    assert not _works(old)
    assert _works(new)


def test_a_rotation_without_grace_ends_the_old_secret_at_once(api_key):
    assert _works(api_key.raw_key)
    rotated = api_key_rotate(api_key=api_key.api_key, grace=timedelta(0))
    assert not _works(api_key.raw_key)
    assert _works(rotated.raw_key)
    stored = ApiKey.objects.get(pk=api_key.api_key.pk)
    assert stored.previous_prefix is None and stored.previous_hashed_key == ""


def test_a_second_rotation_within_the_grace_ends_the_oldest_secret(api_key):
    first = api_key_rotate(api_key=api_key.api_key, grace=timedelta(hours=1))
    second = api_key_rotate(api_key=first.api_key, grace=timedelta(hours=1))
    assert not _works(api_key.raw_key)
    assert _works(first.raw_key) and _works(second.raw_key)


def test_an_expired_or_revoked_key_cannot_be_rotated_nor_used_in_its_grace(api_key):
    rotated = api_key_rotate(api_key=api_key.api_key, grace=timedelta(hours=1))
    api_key_revoke(api_key=rotated.api_key)
    assert not _works(api_key.raw_key) and not _works(rotated.raw_key)
    with pytest.raises(ValueError, match="revoked or expired"):
        api_key_rotate(api_key=rotated.api_key, grace=timedelta(hours=1))


def test_an_expiry_applies_to_the_old_secret_in_its_grace_too(api_key):
    rotated = api_key_rotate(api_key=api_key.api_key, grace=timedelta(hours=1))
    ApiKey.objects.filter(pk=rotated.api_key.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert not _works(api_key.raw_key) and not _works(rotated.raw_key)


def test_a_wrong_secret_with_the_old_prefix_is_refused(api_key):
    api_key_rotate(api_key=api_key.api_key, grace=timedelta(hours=1))
    prefix = api_key.raw_key.split("_")[1]
    assert not _works(f"aura_{prefix}_{'x' * 43}")


def _project(name: str) -> Project:
    return project_get_or_create(name=name)


def _run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_prints_the_new_key_alone_on_the_last_line(db):
    created = api_key_create(name="ingest", project=_project("studio"))
    out, err = _run("rotate_api_key", "ingest", "--project", "studio", "--grace", "1h30m")
    new = out.strip().splitlines()[-1]
    assert new.startswith("aura_") and " " not in new and new != created.raw_key
    assert _works(new) and _works(created.raw_key)
    stored = ApiKey.objects.get(pk=created.api_key.pk)
    left = stored.previous_valid_until - timezone.now()
    assert timedelta(minutes=89) < left <= timedelta(minutes=90)
    assert "works until" in err and new not in err


@pytest.mark.parametrize("grace", ["24", "1x", "h", "-1h", "1h 30m"])
def test_the_command_refuses_a_grace_that_is_not_a_duration(db, grace):
    api_key_create(name="ingest", project=_project("studio"))
    with pytest.raises(CommandError, match="--grace"):
        _run("rotate_api_key", "ingest", "--project", "studio", "--grace", grace)


def test_the_command_names_what_it_cannot_rotate(db):
    with pytest.raises(CommandError, match="No unrevoked API key named 'nope'"):
        _run("rotate_api_key", "nope", "--project", "studio")
    project = _project("studio")
    api_key_create(name="twin", project=project)
    api_key_create(name="twin", project=project)
    with pytest.raises(CommandError, match="2 unrevoked keys are named 'twin'"):
        _run("rotate_api_key", "twin", "--project", "studio")


def test_the_admin_rotates_a_key_shows_the_new_one_once_and_records_it(admin_client, api_key):
    url = "/admin/tenancy/apikey/"
    pk = api_key.api_key.pk
    confirm = admin_client.post(url, {"action": "rotate", "_selected_action": [pk]})
    assert confirm.status_code == 200 and b"gets a new secret" in confirm.content
    done = admin_client.post(url, {"action": "rotate", "_selected_action": [pk], "grace": "1"})
    assert done.status_code == 200 and done["Cache-Control"].startswith("max-age=0")
    page = done.content.decode()
    stored = ApiKey.objects.get(pk=pk)
    assert f"aura_{stored.prefix}_" in page and "was rotated" in page
    new = page.split('id="raw-key"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    assert _works(new) and _works(api_key.raw_key)
    entry = LogEntry.objects.get(object_id=str(pk), change_message__startswith="Rotated")
    assert stored.prefix in entry.change_message and new not in entry.change_message
    change = admin_client.get(f"{url}{pk}/change/").content.decode()
    assert f"{api_key.api_key.prefix}… accepted until" in change
    assert new not in change


def test_the_admin_rotates_one_key_at_a_time(admin_client, api_key, other_api_key):
    response = admin_client.post(
        "/admin/tenancy/apikey/",
        {
            "action": "rotate",
            "_selected_action": [api_key.api_key.pk, other_api_key.api_key.pk],
            "grace": "1",
        },
        follow=True,
    )
    assert b"Select exactly one key to rotate." in response.content
    assert _works(api_key.raw_key) and _works(other_api_key.raw_key)
    assert not ApiKey.objects.filter(rotated_at__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
def test_through_a_real_server_both_keys_work_in_the_grace_then_only_the_new(
    live_server_factory, api_key
):
    """Every worker of `manage.py serve` accepts both secrets in the grace period and
    only the new one after it."""
    server = live_server_factory(1 if connection.vendor == "sqlite" else 2)
    out, err = StringIO(), StringIO()
    call_command(
        "rotate_api_key",
        api_key.api_key.name,
        "--project",
        api_key.api_key.project.name,
        "--grace",
        "3s",
        stdout=out,
        stderr=err,
    )
    new = out.getvalue().strip().splitlines()[-1]
    ends = ApiKey.objects.get(pk=api_key.api_key.pk).previous_valid_until

    def statuses(raw_key: str) -> set[int]:
        headers = {"Authorization": f"Bearer {raw_key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            return {client.get("/api/v1/presets/").status_code for _ in range(20)}

    assert statuses(api_key.raw_key) == {200} and statuses(new) == {200}
    assert timezone.now() < ends  # both were asked within the grace
    time.sleep(max(0.0, (ends - timezone.now()).total_seconds()) + 0.2)
    assert statuses(api_key.raw_key) == {401}
    assert statuses(new) == {200}


def test_an_api_call_with_the_old_secret_after_the_grace_is_a_401(api_key):
    rotated = api_key_rotate(api_key=api_key.api_key, grace=timedelta(seconds=0.2))
    _sleep_past(rotated.api_key.previous_valid_until)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.raw_key}")
    response = client.get("/api/v1/presets/")
    assert response.status_code == 401 and response.json()["error_code"] == "unauthorized"
