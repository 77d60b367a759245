"""POST /v1/embeddings in-process (httpx against the ASGI app): strict validation in
OpenAI's error shape, routes without an embeddings API, fields passed on, prices."""

from decimal import Decimal

import pytest

from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.gateway.embeddings import MAX_INPUTS
from telemetry.models import OperationTelemetry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

EMBEDDINGS = "/v1/embeddings"


def ask(**fields) -> dict:
    return {"model": "sim-embed", "input": "Hello", **fields}


@pytest.fixture
def embed_provider(db, fake_upstream):
    """Provider `primary` serving sim-embed at 1 micro-dollar an input token."""
    return provider_configure(
        name="primary",
        kind="openai",
        base_url=fake_upstream.openai_base_url,
        api_key_env="TEST_PRIMARY_API_KEY",
        model="sim-embed",
        input_price=Decimal("1"),
    )


@pytest.fixture
def claude(db, fake_upstream):
    """Provider `claude` (Anthropic: no embeddings API) serving sim-embed, first in the
    chain."""
    configured = provider_configure(
        name="claude",
        kind="anthropic",
        base_url=fake_upstream.anthropic_base_url,
        api_key_env="TEST_PRIMARY_API_KEY",
        model="sim-embed",
        input_price=Decimal("1"),
        output_price=Decimal("2"),
    )
    configured.provider.priority = 0
    configured.provider.save()


@pytest.fixture
def catalogue_model(db, fake_upstream):
    """text-embedding-3-small on provider `openai`, at the catalogue's prices."""
    return provider_configure(
        name="openai",
        kind="openai",
        base_url=fake_upstream.openai_base_url,
        api_key_env="TEST_PRIMARY_API_KEY",
        model="text-embedding-3-small",
    ).model


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (ask(model=""), "model"),
        (ask(input=""), "input"),
        (ask(input=[]), "input"),
        (ask(input=None), "input"),
        (ask(input={"text": "x"}), "input"),
        (ask(input=["a", ""]), "input[1]"),
        (ask(input=["a", 1]), "input[1]"),
        (ask(input=[1, "a"]), "input[1]"),
        (ask(input=[1, 2.5]), "input[1]"),
        (ask(input=[1, -2]), "input[1]"),
        (ask(input=[True]), "input[0]"),
        (ask(input=[[1, 2], []]), "input[1]"),
        (ask(input=[[1, 2], [3, 4.0]]), "input[1][1]"),
        (ask(input=[[1], "a"]), "input[1]"),
        (ask(input=["x"] * (MAX_INPUTS + 1)), "input"),
        (ask(dimensions=0), "dimensions"),
        (ask(dimensions="8"), "dimensions"),
        (ask(dimensions=True), "dimensions"),
        (ask(encoding_format="hex"), "encoding_format"),
        (ask(user=5), "user"),
    ],
)
async def test_bad_bodies_are_400_naming_the_param(
    asgi_client, embed_provider, fake_upstream, body, param
):
    response = await asgi_client.post(EMBEDDINGS, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_request",
        param,
    )
    assert fake_upstream.request_count == 0


async def test_bad_headers_are_400_naming_the_header(asgi_client, embed_provider):
    for header, value in (("X-Aura-Operation-Type", "nope"), ("X-Aura-Enable-Cache", "maybe")):
        response = await asgi_client.post(EMBEDDINGS, json=ask(), headers={header: value})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == header


async def test_the_largest_batch_and_token_arrays_pass(asgi_client, embed_provider, fake_upstream):
    response = await asgi_client.post(EMBEDDINGS, json=ask(input=["x"] * MAX_INPUTS))
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == MAX_INPUTS
    response = await asgi_client.post(EMBEDDINGS, json=ask(input=[[1, 2, 3], [4]]))
    body = response.json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert fake_upstream.requests[-1]["input"] == [[1, 2, 3], [4]]
    row = await OperationTelemetry.objects.aget(
        operation_id=response.headers["x-aura-operation-id"]
    )
    assert (row.tokens_in, row.tokens_out, row.max_tokens) == (4, 0, None)  # nothing produced


async def test_unknown_fields_and_metadata_go_to_the_provider_verbatim(
    asgi_client, embed_provider, fake_upstream
):
    """`metadata` is not an embeddings field: passed on, never read for a session."""
    response = await asgi_client.post(
        EMBEDDINGS,
        json=ask(user="u-1", metadata={"session_id": "not-read"}, vendor_option={"a": 1}),
    )
    assert response.status_code == 200, response.text
    sent = fake_upstream.requests[-1]
    assert sent == {
        "model": "sim-embed",
        "input": "Hello",
        "user": "u-1",
        "metadata": {"session_id": "not-read"},
        "vendor_option": {"a": 1},
    }
    assert response.headers["x-aura-session-id"].startswith("gateway-")


async def test_a_chain_of_anthropic_providers_only_is_a_400_naming_model(
    asgi_client, claude, fake_upstream
):
    response = await asgi_client.post(EMBEDDINGS, json=ask())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "model" and "no embeddings API" in error["message"]
    assert fake_upstream.request_count == 0


async def test_an_anthropic_route_is_skipped_for_the_next_that_embeds(
    asgi_client, claude, embed_provider, fake_upstream
):
    response = await asgi_client.post(EMBEDDINGS, json=ask())
    assert response.status_code == 200, response.text
    row = await OperationTelemetry.objects.aget(
        operation_id=response.headers["x-aura-operation-id"]
    )
    assert row.provider_name == "primary"
    assert [(a["provider"], a["outcome"]) for a in row.attempts] == [
        ("claude", "skipped"),
        ("primary", "ok"),
    ]
    assert fake_upstream.path_counts == {"/v1/embeddings": 1}


async def test_a_catalogue_priced_embedding_model_is_listed_and_charged_its_input_price(
    asgi_client, catalogue_model, fake_upstream
):
    """Configured without prices, text-embedding-3-small takes the catalogue's: $0.02 per
    million input tokens, output 0; /v1/models lists it."""
    assert (catalogue_model.input_price, catalogue_model.output_price) == (
        Decimal("0.02"),
        Decimal("0"),
    )
    models = (await asgi_client.get("/v1/models")).json()["data"]
    assert {"text-embedding-3-small", "openai/text-embedding-3-small"} <= {m["id"] for m in models}
    response = await asgi_client.post(
        EMBEDDINGS, json={"model": "openai/text-embedding-3-small", "input": "x" * 400_000}
    )
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == 100_000
    assert Decimal(response.headers["x-aura-cost"]) == Decimal("0.002000")
