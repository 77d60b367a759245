"""The presets API serves the 13 seed presets; the seed migration matches the code."""

import importlib

import pytest

from presets.operation_types import SEED_PRESETS, OperationType

PRESET_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "timeout_seconds",
    "max_retries",
    "cache_enabled",
    "cache_ttl_seconds",
    "description",
)


def test_list_has_the_13_types_with_seed_values(api_client):
    """After migrate, every operation type is served with the seed's values."""
    response = api_client.get("/api/v1/presets/")
    assert response.status_code == 200
    body = response.json()
    assert [p["operation_type"] for p in body] == list(OperationType.values)
    for preset in body:
        seed = SEED_PRESETS[OperationType(preset["operation_type"])]
        assert {f: preset[f] for f in PRESET_FIELDS} == {f: getattr(seed, f) for f in PRESET_FIELDS}
        assert preset["is_customized"] is False


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("planning", "planning"),
        ("Planning", "planning"),
        ("SsmlPlanning", "ssml_planning"),
        ("ssml_planning", "ssml_planning"),
        ("RagRetrieval", "rag_retrieval"),
        ("TransitionGeneration", "transition_generation"),
    ],
)
def test_detail_accepts_snake_and_pascal_case(api_client, name, expected):
    """`/api/v1/presets/SsmlPlanning` and `/api/v1/presets/ssml_planning` are one preset."""
    response = api_client.get(f"/api/v1/presets/{name}")
    assert response.status_code == 200
    body = response.json()
    assert body["operation_type"] == expected
    assert body["max_tokens"] == SEED_PRESETS[OperationType(expected)].max_tokens


@pytest.mark.parametrize("name", ["translation", "x" * 300, "planning%00", "%F0%9F%92%A5"])
def test_unknown_type_is_a_json_404(api_client, name):
    """An unknown type answers 404 `not_found` in JSON."""
    response = api_client.get(f"/api/v1/presets/{name}")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error_code"] == "not_found"


def test_seed_migration_table_matches_seed_presets():
    """The data migration's copy of the seeds equals `SEED_PRESETS`, type by type."""
    migration = importlib.import_module("presets.migrations.0002_seed_presets")
    assert set(migration.SEED) == set(OperationType.values)
    for op, row in migration.SEED.items():
        seed = SEED_PRESETS[OperationType(op)]
        assert row == (
            seed.temperature,
            seed.top_p,
            seed.max_tokens,
            seed.timeout_seconds,
            seed.max_retries,
            seed.cache_enabled,
            seed.cache_ttl_seconds,
            seed.description,
        ), op
