"""API authentication: `Authorization: Bearer <key>`; anything else is a JSON 401."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from aura_orchestrator.tenancy.models import ApiKey
from aura_orchestrator.tenancy.services import api_key_revoke

EXECUTE_BODY = {"session_id": "s-1", "operation_type": "planning", "prompt": "Plan a video"}


def _call(path: str, authorization: str | None):
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    if path.endswith("execute"):
        return client.post(path, EXECUTE_BODY, format="json")
    return client.get(path)


def _revoked(created) -> str:
    api_key_revoke(api_key=created.api_key)
    return f"Bearer {created.raw_key}"


def _expired(created) -> str:
    ApiKey.objects.filter(pk=created.api_key.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    return f"Bearer {created.raw_key}"


CASES = {
    "no header": lambda created: None,
    "wrong scheme": lambda created: f"Basic {created.raw_key}",
    "scheme only": lambda created: "Bearer ",
    "unknown key": lambda created: "Bearer aura_deadbeef_" + "x" * 43,
    "malformed key": lambda created: "Bearer not-a-key",
    "right prefix, wrong secret": lambda created: (
        f"Bearer aura_{created.api_key.prefix}_{'y' * 43}"
    ),
    "oversized key": lambda created: "Bearer aura_" + "z" * 5000,
    "revoked key": _revoked,
    "expired key": _expired,
}


@pytest.mark.parametrize("path", ["/api/v1/presets/", "/api/v1/operations/execute"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_credentials_get_a_json_401_with_a_challenge(api_key, path, case):
    """Every way of not holding a valid key answers 401 `unauthorized` in JSON, with a
    WWW-Authenticate header (what HTTP clients and the OpenAI SDK expect)."""
    response = _call(path, CASES[case](api_key))
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["error_code"] == "unauthorized"
    assert body["success"] is False
    assert body["error_message"]
    if path.endswith("execute"):
        assert body["operation_id"] is None  # the execute shape is kept


def test_valid_key_is_accepted_and_last_use_is_recorded(api_key, api_client):
    """A valid key reads the API, and the key's `last_used_at` is set."""
    assert api_key.api_key.last_used_at is None
    assert api_client.get("/api/v1/presets/").status_code == 200
    api_key.api_key.refresh_from_db()
    assert api_key.api_key.last_used_at is not None
    assert timezone.now() - api_key.api_key.last_used_at < timedelta(minutes=1)


def test_key_expiring_in_the_future_still_works(api_key, api_client):
    """An expiry date ahead does not block the key."""
    ApiKey.objects.filter(pk=api_key.api_key.pk).update(
        expires_at=timezone.now() + timedelta(days=1)
    )
    assert api_client.get("/api/v1/presets/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_valid_key_runs_an_operation(api_key, api_client, provider):
    """With a valid key, execute answers 200 with the operation's content."""
    response = api_client.post("/api/v1/operations/execute", EXECUTE_BODY, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["success"] is True
