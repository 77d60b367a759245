"""Minimal instances of JSON schemas: structured answers and tool arguments."""

from __future__ import annotations

import math
from typing import Any


def example_for_schema(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A minimal instance of a JSON schema: required properties only, simplest values."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 32:
        return None
    if isinstance(schema.get("$ref"), str):
        return example_for_schema(_resolve_ref(root, schema["$ref"]), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_for_schema(schema[key][0], root, depth + 1)
    type_ = schema.get("type")
    if isinstance(type_, list):
        type_ = next((t for t in type_ if t != "null"), "null")
    if type_ is None:
        type_ = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if type_ == "object":
        properties = schema.get("properties") or {}
        return {
            name: example_for_schema(properties.get(name, {}), root, depth + 1)
            for name in schema.get("required") or []
        }
    if type_ == "array":
        item = example_for_schema(schema.get("items", {}), root, depth + 1)
        return [item] * int(schema.get("minItems", 0))
    if type_ in ("integer", "number"):
        value = max(1, math.ceil(schema.get("minimum", 1)))
        return min(value, math.floor(schema.get("maximum", value)))
    if type_ == "boolean":
        return True
    if type_ == "null":
        return None
    return "x" * max(1, int(schema.get("minLength", 1)))


def _resolve_ref(root: Any, ref: str) -> Any:
    """A local JSON pointer ("#/$defs/Item"); remote references resolve to nothing."""
    if not ref.startswith("#/"):
        return None
    node = root
    for part in ref[2:].split("/"):
        if not isinstance(node, dict):
            return None
        node = node.get(part.replace("~1", "/").replace("~0", "~"))
    return node
