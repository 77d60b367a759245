"""POST /v1/embeddings driven by the official OpenAI SDK against a real `manage.py serve`
(the fake upstream's /v1/embeddings answers in this process: deterministic vectors,
`simulator.embedding_vector`).

Money: text-embedding-3-small is configured at 1 micro-dollar an input token and no output
price (an embedding model has none); the simulator's usage counts a text as
max(1, characters // 4) tokens and a token array as its length.
"""

import base64
import struct
from decimal import Decimal

import openai
import pytest

from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.simulator import Fault, embedding_vector
from budgets.models import BudgetConstraint, LlmSession
from telemetry.models import OperationTelemetry

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "text-embedding-3-small"
MICRO = Decimal("0.000001")
NO_CACHE = {"X-Aura-Enable-Cache": "false"}


def embedding_model(upstream, name: str = "primary", key_env: str = "TEST_PRIMARY_API_KEY"):
    """MODEL on provider `name`, input priced, output price left empty."""
    return provider_configure(
        name=name,
        kind="openai",
        base_url=upstream.openai_base_url,
        api_key_env=key_env,
        model=MODEL,
        input_price=Decimal("1"),
    )


@pytest.fixture
def client(live_server_url, api_key, provider, fake_upstream):
    embedding_model(fake_upstream)
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=api_key.raw_key, max_retries=0)


def row_of(raw) -> OperationTelemetry:
    return OperationTelemetry.objects.get(operation_id=raw.headers["x-aura-operation-id"])


def packed(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def test_one_string_the_sdk_asks_base64_and_decodes_the_providers_vector(client, fake_upstream):
    """The SDK asks for base64 when not told (and decodes it): the provider is asked the
    same, the vector is the provider's, the row is a rag_retrieval priced at the input
    price from the provider's usage."""
    raw = client.embeddings.with_raw_response.create(model=MODEL, input="The tide comes in")
    answer = raw.parse()
    assert fake_upstream.requests[-1]["encoding_format"] == "base64"
    assert fake_upstream.requests[-1]["input"] == "The tide comes in"
    assert [d.embedding for d in answer.data] == [embedding_vector("The tide comes in", 16)]
    assert answer.model == MODEL
    row = row_of(raw)
    assert (row.operation_type, row.source, row.success, row.tokens_out) == (
        "rag_retrieval",
        "gateway",
        True,
        0,
    )
    assert row.tokens_in == answer.usage.prompt_tokens == answer.usage.total_tokens == 4
    assert row.estimated_cost == Decimal(raw.headers["x-aura-cost"]) == 4 * MICRO
    session = LlmSession.objects.get(session_id=row.session_id)
    assert (session.tokens_used, session.tokens_reserved, session.cost_accrued_micros) == (4, 0, 4)


def test_a_batch_with_dimensions_in_floats_under_another_operation_type(client, fake_upstream):
    texts = ["alpha", "beta gamma", "delta epsilon zeta"]
    raw = client.embeddings.with_raw_response.create(
        model=MODEL,
        input=texts,
        dimensions=8,
        encoding_format="float",
        extra_headers={"X-Aura-Operation-Type": "Planning"},
    )
    answer = raw.parse()
    assert fake_upstream.requests[-1]["dimensions"] == 8
    assert [d.index for d in answer.data] == [0, 1, 2]
    assert [d.embedding for d in answer.data] == [embedding_vector(t, 8) for t in texts]
    row = row_of(raw)
    assert row.operation_type == "planning"
    assert row.tokens_in == answer.usage.prompt_tokens == 1 + 2 + 4


def test_base64_asked_for_comes_back_as_the_provider_encoded_it(client, fake_upstream):
    answer = client.embeddings.create(
        model=MODEL, input=["one", "two"], encoding_format="base64", dimensions=4
    )
    assert [d.embedding for d in answer.data] == [
        packed(embedding_vector("one", 4)),
        packed(embedding_vector("two", 4)),
    ]


def test_the_second_identical_call_is_a_cache_hit_without_a_provider_call(client, fake_upstream):
    ask = {"model": MODEL, "input": ["cached words", "more"], "encoding_format": "base64"}
    first = client.embeddings.with_raw_response.create(**ask)
    second = client.embeddings.with_raw_response.create(**ask)
    assert (first.headers["x-aura-cache"], second.headers["x-aura-cache"]) == ("miss", "hit")
    assert second.parse().data == first.parse().data
    assert second.http_response.json()["data"] == first.http_response.json()["data"]
    assert second.parse().usage.prompt_tokens == 0
    assert fake_upstream.path_counts["/v1/embeddings"] == 1
    assert row_of(second).cache_hit and row_of(second).tokens_in == 0
    # Another encoding is another question.
    client.embeddings.create(**ask | {"encoding_format": "float"})
    assert fake_upstream.path_counts["/v1/embeddings"] == 2


def test_a_failing_provider_falls_back_to_the_next_serving_the_model(
    client, fake_upstream, backup_provider
):
    """primary answers 500 on every attempt (retried: the preset's 3 retries), backup
    serves; the row shows every attempt."""
    embedding_model(backup_provider, name="backup", key_env="TEST_BACKUP_API_KEY")
    fake_upstream.enqueue(*[Fault(status=500, headers={"Retry-After": "0"})] * 4)
    raw = client.embeddings.with_raw_response.create(
        model=MODEL, input="fallback", extra_headers=NO_CACHE
    )
    assert raw.parse().data[0].embedding == embedding_vector("fallback", 16)
    row = row_of(raw)
    assert (row.provider_name, row.retry_count, row.success) == ("backup", 4, True)
    assert [a["outcome"] for a in row.attempts] == ["ProviderUnavailable"] * 4 + ["ok"]


def test_a_hard_session_token_cap_admits_exactly_the_calls_it_can_afford(client, fake_upstream):
    """Ten tokens a call (a token array: counted as the provider counts it) under a cap of
    35: three calls, the fourth is a 402 that never reaches the provider."""
    BudgetConstraint.objects.create(name="emb", max_tokens_per_session=35)
    headers = {"X-Aura-Session-Id": "emb-cap", "X-Aura-Budget": "emb", **NO_CACHE}
    for n in range(3):
        client.embeddings.create(model=MODEL, input=list(range(n, n + 10)), extra_headers=headers)
    with pytest.raises(openai.APIStatusError) as refused:
        client.embeddings.create(model=MODEL, input=list(range(10)), extra_headers=headers)
    assert refused.value.status_code == 402
    assert fake_upstream.path_counts["/v1/embeddings"] == 3
    session = LlmSession.objects.get(session_id="emb-cap")
    assert (session.tokens_used, session.tokens_reserved, session.operation_count) == (30, 0, 3)


def test_a_hard_cost_cap_holds_with_the_input_price_alone(client, fake_upstream):
    """No output price, yet the cost cap applies: 10 micro-dollars a call under 25."""
    BudgetConstraint.objects.create(name="emb-cost", max_cost_per_session=Decimal("0.000025"))
    headers = {"X-Aura-Session-Id": "emb-cost", "X-Aura-Budget": "emb-cost", **NO_CACHE}
    for n in range(2):
        client.embeddings.create(model=MODEL, input=list(range(n, n + 10)), extra_headers=headers)
    with pytest.raises(openai.APIStatusError) as refused:
        client.embeddings.create(model=MODEL, input=list(range(10)), extra_headers=headers)
    assert refused.value.status_code == 402
    session = LlmSession.objects.get(session_id="emb-cost")
    assert (session.cost_accrued_micros, session.operation_count) == (20, 2)
