"""The fake upstream's `/v1/embeddings`, in OpenAI's format, over HTTP."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator

import httpx
import pytest

from aura_orchestrator.simulator import EMBEDDINGS_PATH, FakeUpstream, Fault, embedding_vector


@pytest.fixture(scope="module")
def sim_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def sim(sim_server: FakeUpstream) -> FakeUpstream:
    sim_server.reset()
    return sim_server


def embed(sim: FakeUpstream, **body: object) -> httpx.Response:
    return httpx.post(sim.url + EMBEDDINGS_PATH, json={"model": "sim-embed", **body})


def test_a_string_gets_a_deterministic_unit_vector(sim):
    first = embed(sim, input="volcanoes").json()
    again = embed(sim, input="volcanoes").json()
    other = embed(sim, input="glaciers").json()

    (item,) = first["data"]
    assert first["object"] == "list" and first["model"] == "sim-embed"
    assert item["object"] == "embedding" and item["index"] == 0
    vector = item["embedding"]
    assert len(vector) == 16  # the default dimensions
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5)
    assert vector == again["data"][0]["embedding"] != other["data"][0]["embedding"]
    assert vector == embedding_vector("volcanoes", 16)
    assert first["usage"] == {"prompt_tokens": 2, "total_tokens": 2}  # 9 characters / 4


def test_base64_is_the_little_endian_float32_array_of_the_float_encoding(sim):
    floats = embed(sim, input="volcanoes", dimensions=8).json()["data"][0]["embedding"]
    encoded = embed(sim, input="volcanoes", dimensions=8, encoding_format="base64").json()

    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert len(raw) == 8 * 4
    assert list(struct.unpack("<8f", raw)) == floats


def test_batches_and_token_arrays(sim):
    batch = embed(sim, input=["a", "volcanoes erupt"]).json()
    tokens = embed(sim, input=[1, 2, 3]).json()
    token_batch = embed(sim, input=[[1, 2, 3], [4]]).json()

    assert [item["index"] for item in batch["data"]] == [0, 1]
    assert batch["data"][1]["embedding"] == embedding_vector("volcanoes erupt", 16)
    assert batch["usage"]["prompt_tokens"] == 1 + 3  # at least 1 per text
    assert len(tokens["data"]) == 1 and tokens["usage"]["prompt_tokens"] == 3
    assert tokens["data"][0]["embedding"] == token_batch["data"][0]["embedding"]
    assert token_batch["usage"]["prompt_tokens"] == 4


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"input": ""},
        {"input": []},
        {"input": ["a", 1]},
        {"input": [[1], "a"]},
        {"input": {"text": "a"}},
        {"input": "a", "dimensions": 0},
        {"input": "a", "dimensions": "8"},
        {"input": "a", "encoding_format": "hex"},
    ],
)
def test_bad_input_is_a_400_in_openais_shape(sim, body):
    response = embed(sim, **body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_faults_apply_and_the_path_is_counted_and_listed(sim):
    sim.enqueue(Fault(status=429, headers={"Retry-After": "0"}), Fault(usage=(42, 0)))
    limited = embed(sim, input="a")
    scripted = embed(sim, input="a", extra_field=True)
    models = httpx.get(sim.url + "/v1/models").json()

    assert limited.status_code == 429 and limited.headers["retry-after"] == "0"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert scripted.json()["usage"]["prompt_tokens"] == 42
    assert sim.requests[1]["extra_field"] is True  # recorded verbatim, like completions
    assert sim.path_counts == {EMBEDDINGS_PATH: 2, "/v1/models": 1}
    assert sim.request_count == 0  # completions only
    assert "sim-embed" in [model["id"] for model in models["data"]]
