"""Cache keys: what makes two requests the same question."""

import hashlib
import json
import re

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
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
