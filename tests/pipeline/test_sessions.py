"""Session budget endpoints, tenancy, and reservations that outlive a dead worker."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from aura_orchestrator.simulator import Fault
from budgets.models import BudgetReservation, LlmSession
from budgets.services import Caps, budget_release_expired, budget_reserve, session_ensure
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, body

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_budget_endpoint_reports_the_ledger(asgi_client, provider, fake_upstream):
    fake_upstream.enqueue(Fault(usage=(100, 50)))
    await asgi_client.post(
        EXECUTE,
        json=body(
            budget_constraint={"max_cost_per_session": "0.01", "max_tokens_per_session": 5000}
        ),
    )
    response = await asgi_client.get("/api/v1/sessions/video-1/budget")
    data = response.json()
    assert response.status_code == 200, data
    assert data["total_tokens_used"] == 150 and data["total_cost_accrued"] == "0.000200"
    assert data["operation_count"] == 1
    assert data["max_cost_per_session"] == "0.010000" and data["max_tokens_per_session"] == 5000
    assert data["remaining_cost"] == "0.009800" and data["remaining_tokens"] == 4850
    assert (data["tokens_reserved"], data["cost_reserved"]) == (0, "0.000000")
    assert data["enforce_hard_limits"] is True


async def test_unknown_and_foreign_sessions_are_404(asgi_client, other_api_key, provider):
    assert (await asgi_client.get("/api/v1/sessions/nope/budget")).status_code == 404
    await asgi_client.post(EXECUTE, json=body())
    foreign = {"Authorization": f"Bearer {other_api_key.raw_key}"}
    response = await asgi_client.get("/api/v1/sessions/video-1/budget", headers=foreign)
    assert response.status_code == 404 and response.json()["error_code"] == "not_found"
    response = await asgi_client.delete("/api/v1/sessions/video-1", headers=foreign)
    assert response.status_code == 404
    assert await LlmSession.objects.filter(session_id="video-1").aexists()


async def test_delete_clears_the_ledger_but_keeps_telemetry(asgi_client, provider):
    await asgi_client.post(EXECUTE, json=body(budget_constraint={"max_tokens_per_session": 99999}))
    response = await asgi_client.delete("/api/v1/sessions/video-1")
    assert response.status_code == 204
    assert not await LlmSession.objects.filter(session_id="video-1").aexists()
    assert await OperationTelemetry.objects.filter(session_id="video-1").acount() == 1
    assert (await asgi_client.get("/api/v1/sessions/video-1/budget")).status_code == 404
    assert (await asgi_client.delete("/api/v1/sessions/video-1")).status_code == 404
    again = (await asgi_client.post(EXECUTE, json=body())).json()
    assert again["budget"]["operation_count"] == 1, "a cleared session starts afresh"


def test_expired_reservations_are_handed_back_exactly_once(project):
    """A worker that died after reserving leaves a reservation; the release job returns it
    to the ledger, and a late settle of the same reservation cannot return it twice."""
    session = session_ensure(
        project_id=project.pk, session_id="s", caps=Caps.inline(max_tokens_per_session=1000)
    )
    reservation = budget_reserve(
        session=session, operation_id=uuid.uuid4(), tokens=600, cost_micros=0, model_name="m"
    )
    with pytest.raises(Exception, match="Budget exceeded"):
        budget_reserve(
            session=session, operation_id=uuid.uuid4(), tokens=600, cost_micros=0, model_name="m"
        )
    assert budget_release_expired() == 0, "not expired yet"
    BudgetReservation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert budget_release_expired() == 1
    session.refresh_from_db()
    assert session.tokens_reserved == 0
    from budgets.services import budget_settle

    budget_settle(reservation=reservation, tokens=10, cost_micros=0)
    session.refresh_from_db()
    assert (session.tokens_reserved, session.tokens_used) == (0, 10)
    budget_reserve(
        session=session, operation_id=uuid.uuid4(), tokens=600, cost_micros=0, model_name="m"
    )


async def test_anthropic_provider_through_the_pipeline(asgi_client, fake_upstream):
    from asgiref.sync import sync_to_async

    from aura_orchestrator.catalog.services import provider_configure

    await sync_to_async(provider_configure)(
        name="claude",
        kind="anthropic",
        base_url=fake_upstream.anthropic_base_url,
        api_key_env="TEST_PRIMARY_API_KEY",
        model="sim-claude",
        input_price=3,
        output_price=15,
        make_default=True,
    )
    fake_upstream.enqueue(Fault(usage=(1000, 100)))
    response = await asgi_client.post(
        EXECUTE, json=body(system_prompt="You plan videos", custom_preset={"max_tokens": 300})
    )
    data = response.json()
    assert response.status_code == 200, data
    assert data["telemetry"]["provider_name"] == "claude"
    assert data["telemetry"]["estimated_cost"] == "0.004500"  # 1000·3 + 100·15 micro-dollars
    sent = fake_upstream.requests[-1]
    assert sent["system"] == "You plan videos" and sent["max_tokens"] == 300
    assert [m["role"] for m in sent["messages"]] == ["user"]
    assert fake_upstream.request_headers[-1]["x-api-key"] == "sk-test-primary-secret"
    assert fake_upstream.path_counts["/v1/messages"] == 1


@pytest.mark.parametrize("path", ["budget", "statistics", None])
async def test_session_ids_with_control_characters_are_400_not_500(asgi_client, path):
    """PostgreSQL refuses NUL bytes in text; such ids must be refused before any query."""
    for session_id in ("a%00b", "line%0Abreak", "x" * 201):
        url = f"/api/v1/sessions/{session_id}" + (f"/{path}" if path else "")
        response = await (asgi_client.get(url) if path else asgi_client.delete(url))
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error_code"] == "invalid_request"
