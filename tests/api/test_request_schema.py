"""`/api/schema/` documents exactly what the parsers accept: each request body's component
is generated from its table (`api/bodies.py`), and this holds the two equal: properties,
required lists, types, nullability, bounds and closed objects, nested tables included."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from aura_orchestrator.api import bodies
from aura_orchestrator.api.chat_kinds import Chat
from aura_orchestrator.api.fields import (
    Boolean,
    Integer,
    JsonSchema,
    ListOf,
    Money,
    Nested,
    Number,
    Operation,
    Shape,
    Text,
)
from presets.operation_types import OperationType

ENDPOINTS = [
    ("/api/v1/operations/execute", bodies.EXECUTE),
    ("/api/v1/estimate", bodies.ESTIMATE),
    ("/api/v1/optimize", bodies.OPTIMIZE),
    ("/api/v1/optimize/explain", bodies.EXPLAIN),
]


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def resolve(schema: dict, node: dict) -> dict:
    """A property's schema with `allOf: [$ref]` and `$ref` followed."""
    if "allOf" in node:
        (node,) = node["allOf"]
    if "$ref" in node:
        return schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def assert_documents(schema: dict, component: dict, shape: Shape) -> None:
    assert component["type"] == "object"
    assert component["additionalProperties"] is False, "unknown fields are refused"
    assert set(component["properties"]) == set(shape.fields)
    assert sorted(component.get("required", [])) == sorted(
        name for name, spec in shape.fields.items() if spec.required
    )
    for name, spec in shape.fields.items():
        prop = component["properties"][name]
        assert prop.get("nullable", False) == (spec.null and not spec.required), name
        documented = resolve(schema, prop)
        kind = spec.kind
        if isinstance(kind, Nested):
            assert_documents(schema, documented, kind.shape)
        elif isinstance(kind, Operation):
            assert documented["enum"] == list(OperationType.values)
        elif isinstance(kind, Money):
            types = {branch["type"] for branch in documented["oneOf"]}
            assert types == {"string", "number"}, name
        elif isinstance(kind, ListOf):
            assert documented["type"] == "array"
            assert (documented["minItems"], documented["maxItems"]) == (
                kind.min_items,
                kind.max_items,
            )
            assert documented["items"]["type"] == "string"
        elif isinstance(kind, Chat):  # the chat format's own schema (api/chat_schema.py)
            ours = ("nullable", "description")  # the table's additions
            assert {k: v for k, v in documented.items() if k not in ours} == {
                k: v for k, v in kind.openapi.items() if k not in ours
            }, name
        else:
            expected = {
                Text: "string",
                Integer: "integer",
                Number: "number",
                Boolean: "boolean",
                JsonSchema: "object",
            }[type(kind)]
            assert documented["type"] == expected, name
            if isinstance(kind, Text):
                assert documented["maxLength"] == kind.max_length
                assert documented.get("minLength", 0) == (0 if kind.blank else 1)
            if isinstance(kind, Integer | Number):
                assert documented.get("minimum") == kind.low
                assert documented.get("maximum") == kind.high


@pytest.mark.parametrize(("path", "shape"), ENDPOINTS, ids=[p for p, _ in ENDPOINTS])
def test_the_documented_request_body_is_the_parsers_table(schema, path, shape):
    body = schema["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    component = resolve(schema, body["content"]["application/json"]["schema"])
    assert_documents(schema, component, shape)


def test_the_component_names_stay_as_they_were(schema):
    names = set(schema["components"]["schemas"])
    assert {
        "ExecuteInputRequest",
        "BudgetConstraintRequest",
        "CustomPresetRequest",
        "EstimateInputRequest",
        "OptimizeInputRequest",
        "ConstraintsRequest",
        "ExplainInputRequest",
        "ParametersRequest",
    } <= names
