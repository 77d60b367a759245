"""Cache keys: what makes two requests the same question."""

import hashlib
import json
import re
from typing import Any

from aura_orchestrator.providers.base import ImagePart, OtherPart, TextPart

_SPACES = re.compile(r"[ \t\f\v]+")


def normalize_text(text: str | None) -> str:
    """Line endings unified, runs of blanks folded, lines and ends trimmed."""
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n")).strip()


def cache_key(
    *,
    chain: list[str],
    operation_type: str,
    messages: list[tuple[str, str]],
    temperature: float,
    top_p: float,
    max_tokens: int,
    response_schema: dict | None,
    extra: dict | None = None,
) -> str:
    """SHA-256 over everything that changes the answer. The tenant is not in the hash:
    entries are stored and looked up under their project, so tenants never meet."""
    material = {
        "chain": chain,
        "op": operation_type,
        "messages": [[role, normalize_text(content)] for role, content in messages],
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
        "schema": response_schema,
        "extra": extra or {},
    }
    return _digest(material)


def embedding_key(
    *,
    chain: list[str],
    items: list[str] | list[list[int]],
    dimensions: int | None,
    encoding_format: str | None,
    extra: dict[str, Any],
) -> str:
    """SHA-256 over what changes an embeddings answer: the chain, every input exactly
    (not normalised: a vector depends on every character), the dimensions, the encoding
    and the fields passed on. Not the operation type, which changes no vector."""
    material = {
        "embeddings": items,
        "chain": chain,
        "dimensions": dimensions,
        "encoding_format": encoding_format or "float",
        "extra": extra,
    }
    return _digest(material)


def _digest(material: dict[str, Any]) -> str:
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def request_material(
    *,
    messages: Any,
    tools: Any,
    tool_choice: Any,
    parallel_tool_calls: bool | None,
    n: int | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """What a request beyond text adds to its key (`cache_key`'s `extra`): tools, the
    tool choice, n, every field passed on verbatim (seed, logprobs...), and per message
    its parts (images by content hash: a `data:` URL's payload, else the URL), tool calls
    and the call it answers. Empty for a text-only request, so its key is unchanged."""
    material: dict[str, Any] = {}
    shaped = [_message_material(m) for m in messages]
    if any(shaped):
        material["messages"] = shaped
    if tools:
        material["tools"] = [[t.name, t.description, t.parameters, t.strict] for t in tools]
    if tool_choice is not None:
        material["tool_choice"] = [tool_choice.mode, tool_choice.name]
    if parallel_tool_calls is not None:
        material["parallel_tool_calls"] = parallel_tool_calls
    if n not in (None, 1):
        material["n"] = n
    if extra:
        material["fields"] = extra
    return material


def _message_material(message: Any) -> list | None:
    if message.parts is None and not message.tool_calls and message.tool_call_id is None:
        return None
    return [
        [_part_material(p) for p in message.parts or ()],
        [[c.id, c.name, c.arguments] for c in message.tool_calls],
        message.tool_call_id,
        message.name,
    ]


def _part_material(part: TextPart | ImagePart | OtherPart) -> Any:
    if isinstance(part, TextPart):
        return ["text"]  # its text is in the message's content
    if isinstance(part, ImagePart):
        inline = part.inline
        source = part.url if inline is None else hashlib.sha256(inline[1].encode()).hexdigest()
        return ["image", source, part.detail]
    return [part.type, part.body]
