"""OpenAI's embeddings endpoint on the fake upstream: deterministic unit vectors.

Each input item's vector comes from SHA-256 alone (counter mode: block i is
sha256(sha256(item) + i as 4 little-endian bytes), read as little-endian uint32 mapped
onto [-1, 1)), then normalised and rounded to float32, so the "float" and "base64"
encodings carry the very same numbers and any client can recompute them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from typing import TypeGuard

PATH = "/v1/embeddings"
DEFAULT_MODEL = "sim-embed"
DEFAULT_DIMENSIONS = 16
MAX_DIMENSIONS = 4096

Item = str | list[int]


class BadInput(ValueError):
    """A body OpenAI answers with 400; the message says which field is wrong."""


def embeddings(body: dict, prompt_tokens: int | None = None) -> dict:
    """The answer to `body`; `prompt_tokens` overrides the computed usage (a Fault's)."""
    items = _items(body.get("input"))
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if not _is_int(dimensions) or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise BadInput(f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadInput("'encoding_format' must be 'float' or 'base64'")
    data = [
        {"object": "embedding", "index": index, "embedding": _encoded(item, dimensions, encoding)}
        for index, item in enumerate(items)
    ]
    if prompt_tokens is None:
        # Token arrays count their tokens; text ~ characters / 4, at least 1 per item.
        prompt_tokens = sum(
            len(item) if isinstance(item, list) else max(1, len(item) // 4) for item in items
        )
    return {
        "object": "list",
        "data": data,
        "model": str(body.get("model") or DEFAULT_MODEL),
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def vector(item: Item, dimensions: int) -> list[float]:
    """The unit vector of one input item (a text or a token array), float32 values."""
    seed = hashlib.sha256((item if isinstance(item, str) else json.dumps(item)).encode()).digest()
    stream = b"".join(
        hashlib.sha256(seed + block.to_bytes(4, "little")).digest()
        for block in range(math.ceil(dimensions / 8))
    )
    words = struct.unpack(f"<{dimensions}I", stream[: 4 * dimensions])
    raw = [word / 2**31 - 1.0 for word in words]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(value / norm for value in raw))
    return list(struct.unpack(f"<{dimensions}f", packed))


def _encoded(item: Item, dimensions: int, encoding: str) -> list[float] | str:
    values = vector(item, dimensions)
    if encoding == "float":
        return values
    # OpenAI's base64: the little-endian float32 array.
    return base64.b64encode(struct.pack(f"<{dimensions}f", *values)).decode()


def _items(value: object) -> list[Item]:
    """A string, strings, one token array or token arrays: always a list of items."""
    items = [value] if isinstance(value, str) or _is_tokens(value) else value
    if isinstance(items, list) and items and (_all_texts(items) or all(map(_is_tokens, items))):
        return items
    raise BadInput(
        "'input' must be a non-empty string, array of strings, array of tokens"
        " or array of token arrays"
    )


def _all_texts(items: list) -> bool:
    return all(isinstance(item, str) and item for item in items)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_tokens(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_int(t) and t >= 0 for t in value)
