"""What the fake upstream answers, whatever the kind: deterministic for a given request."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .faults import Fault
from .wire import Reply, WireShape, message_text

DEFAULT_MAX_TOKENS = 256

# The content marker may itself contain "]]" (JSON arrays): it ends at "]]" followed by the
# end of the message, whitespace or another marker.
_CONTENT_MARKER = re.compile(r"\[\[content:(.*?)\]\](?=\s|\[\[|$)", re.DOTALL)
_TOKENS_MARKER = re.compile(r"\[\[tokens_out:(\d+)\]\]")


def compose_reply(body: dict, fault: Fault, shape: WireShape) -> Reply:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    texts = [message_text(m.get("content")) for m in messages]
    texts.append(shape.prompt_outside_messages(body))
    last_user = next(
        (message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        "",
    )
    content = fault.content if fault.content is not None else _content_for(body, last_user)
    max_tokens = body.get("max_tokens")
    natural = len(content) // 4 + 1
    cap = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_MAX_TOKENS
    tokens_in = max(1, sum(len(text) for text in texts) // 4)
    tokens_out = min(cap, natural)
    marker = _TOKENS_MARKER.search(last_user)
    if marker:
        tokens_out = int(marker.group(1))
    if fault.usage is not None:
        tokens_in, tokens_out = fault.usage
    truncated = isinstance(max_tokens, int) and natural > max_tokens
    return Reply(content, tokens_in, tokens_out, truncated)


def _content_for(body: dict, last_user: str) -> str:
    marker = _CONTENT_MARKER.search(last_user)
    if marker:
        return marker.group(1)
    answer = f"Simulated answer to: {' '.join(last_user.split())[:60]}"
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema") or {}
            schema = spec.get("schema") or {"type": "object"}
            return json.dumps(example_for_schema(schema))
        if response_format.get("type") == "json_object":
            return json.dumps({"answer": answer})
    return answer


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
