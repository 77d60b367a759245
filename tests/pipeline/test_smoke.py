import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def test_execute_returns_content_and_charges_the_ledger(asgi_client, provider, fake_upstream):
    response = await asgi_client.post(
        "/api/v1/operations/execute",
        json={"session_id": "video-1", "operation_type": "Planning", "prompt": "Plan a video"},
    )
    body = response.json()
    assert response.status_code == 200, body
    assert body["success"] is True
    assert body["content"].startswith("Simulated answer")
    assert body["telemetry"]["provider_name"] == "primary"
    assert body["budget"]["operation_count"] == 1
