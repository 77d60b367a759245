"""A database that cannot be reached is a 503 with Retry-After and our machine code, on
both paths (the fast front and Django's), in the endpoint's own error shape; never a 500,
and never the driver's message."""

import psycopg
import pytest
from django.db import connection

from aura_orchestrator import pipeline
from aura_orchestrator.pipeline import ending, plan
from tests.pipeline.helpers import EXECUTE, body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

SECRET_DETAIL = "connection to server at 10.0.0.9 failed: password authentication"


class _DatabaseDown:
    """Every step of the store fails as the driver does when the server is gone."""

    def __getattr__(self, name):
        async def fail(*args, **kwargs):
            if connection.vendor == "postgresql":
                raise psycopg.OperationalError(SECRET_DETAIL)
            from django.db import OperationalError

            raise OperationalError(SECRET_DETAIL)

        return fail


@pytest.fixture
def database_down(monkeypatch):
    for module in (pipeline, plan, ending):  # every module of the pipeline that uses the store
        monkeypatch.setattr(module, "get_store", lambda: _DatabaseDown())


@pytest.mark.parametrize("path", ["front", "django"])
async def test_execute_answers_503_with_retry_after(
    path, asgi_client, django_client, provider, database_down
):
    client = asgi_client if path == "front" else django_client
    await client.post(EXECUTE, json=body("warm"))  # the front serves from the memo
    response = await client.post(EXECUTE, json=body("down-1"))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    payload = response.json()
    assert payload["error_code"] == "unavailable" and payload["success"] is False
    assert "retry" in payload["error_message"]
    assert SECRET_DETAIL not in response.text


@pytest.mark.parametrize("path", ["front", "django"])
async def test_the_gateway_answers_503_in_openais_shape(
    path, asgi_client, django_client, provider, database_down
):
    client = asgi_client if path == "front" else django_client
    chat = {"model": "sim-gpt", "messages": [{"role": "user", "content": "hi"}]}
    await client.post("/v1/chat/completions", json=chat)
    response = await client.post("/v1/chat/completions", json=chat)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "unavailable"
    assert SECRET_DETAIL not in response.text
