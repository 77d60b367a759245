"""Estimates before running: real token counts, worst and typical cost, budget admission."""

from decimal import Decimal

import pytest
import tiktoken

from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.catalog.tokens import count_tokens
from budgets.models import LlmSession
from budgets.services import Caps, session_ensure
from tests.optimization.helpers import ESTIMATE, make_history

pytestmark = pytest.mark.django_db

PROMPT = "Plan a three-minute video about the tides of the Bay of Fundy, for teenagers."
SYSTEM = "You are a video planning assistant."


@pytest.fixture
def gpt4o(fake_upstream):
    """A provider serving gpt-4o (a model tiktoken knows: o200k_base) at $2.50/$10."""
    return provider_configure(
        name="openai",
        kind="openai",
        base_url=fake_upstream.openai_base_url,
        api_key_env="TEST_PRIMARY_API_KEY",
        model="gpt-4o",
        input_price=Decimal("2.5"),
        output_price=Decimal("10"),
        make_default=True,
    )


def post(client, **body):
    response = client.post(
        ESTIMATE, {"operation_type": "planning", "prompt": PROMPT, **body}, format="json"
    )
    return response, response.json()


def test_tokens_in_match_tiktoken_for_a_known_model(api_client, gpt4o):
    """Prompt tokens are tiktoken's o200k_base counts plus the chat framing (3 + 4 per
    message); the worst case is priced at the model's prices."""
    count_tokens("warm-up", model="gpt-4o")  # installs the bundled vocabulary offline
    encoding = tiktoken.encoding_for_model("gpt-4o")
    expected = 3 + 4 + len(encoding.encode(SYSTEM)) + 4 + len(encoding.encode(PROMPT))
    response, body = post(api_client, system_prompt=SYSTEM, model="gpt-4o")
    assert response.status_code == 200, body
    assert body["tokens_in"] == expected
    assert body["routes"][0]["tokenizer"] == "o200k_base"
    assert body["worst_case_tokens_out"] == 2000
    worst = (Decimal(expected) * Decimal("2.5") + 2000 * Decimal("10")) / 10**6
    assert Decimal(body["worst_case_cost"]) == worst.quantize(Decimal("0.000001"), "ROUND_CEILING")
    assert body["typical_cost"] is None and body["typical_source"] is None
    assert body["budget"] is None


def test_custom_preset_changes_the_worst_case(api_client, provider):
    """max_tokens 100 at $2/M out: the worst case is the prompt plus 200 micro-dollars."""
    _, body = post(api_client, custom_preset={"max_tokens": 100})
    assert body["worst_case_tokens_out"] == 100
    assert Decimal(body["worst_case_cost"]) == Decimal(body["tokens_in"] + 200) / 10**6


def test_typical_cost_comes_from_telemetry(api_client, provider, project):
    """Median output of the history (1..200 → 100 tokens) at the model's prices."""
    make_history(project=project, count=200)
    _, body = post(api_client)
    assert body["typical_source"] == "telemetry" and body["typical_sample_size"] == 200
    assert body["typical_tokens_out"] == 100
    assert Decimal(body["typical_cost"]) == Decimal(body["tokens_in"] + 200) / 10**6


@pytest.mark.parametrize(("used", "admitted"), [(0, True), (4000, False)])
def test_budget_admission_reads_the_session_ledger(api_client, provider, project, used, admitted):
    """A hard 5000-token session cap admits a ~2020-token worst case only with room left;
    nothing is reserved either way."""
    session = session_ensure(
        project_id=project.pk, session_id="video-9", caps=Caps.inline(max_tokens_per_session=5000)
    )
    LlmSession.objects.filter(pk=session.pk).update(tokens_used=used)
    _, body = post(api_client, session_id="video-9")
    budget = body["budget"]
    assert budget["exists"] is True and budget["would_admit"] is admitted
    assert bool(budget["reasons"]) is not admitted
    if not admitted:
        assert budget["reasons"][0].startswith("max_tokens_per_session: 4000 used")
    assert LlmSession.objects.get(pk=session.pk).tokens_reserved == 0


def test_soft_limits_admit_with_reasons(api_client, provider, project):
    session_ensure(
        project_id=project.pk,
        session_id="soft",
        caps=Caps.inline(max_cost_per_operation=Decimal("0.001"), enforce_hard_limits=False),
    )
    _, body = post(api_client, session_id="soft")
    assert body["budget"]["would_admit"] is True
    assert body["budget"]["reasons"][0].startswith("max_cost_per_operation")


def test_unknown_or_foreign_sessions_have_no_ledger(api_client, provider, other_api_key):
    """Another project's session is not read: it is a new session here, with no caps."""
    session_ensure(
        project_id=other_api_key.api_key.project_id,
        session_id="shared-name",
        caps=Caps.inline(max_tokens_per_session=1),
    )
    _, body = post(api_client, session_id="shared-name")
    assert body["budget"]["exists"] is False and body["budget"]["would_admit"] is True
