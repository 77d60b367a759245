"""What an image costs in prompt tokens, by the rule its provider publishes, for the worst
case a request reserves. The bill comes from the provider's usage; this must not be below
it, so an image whose size is unknown (an http(s) URL: we never fetch it) counts as the
largest the rule allows.

OpenAI (tile rule, GPT-4o, GPT-4.1, GPT-5 and the like): `low` is a flat 85; otherwise the
image is fitted within 2048x2048, its shortest side scaled to 768, and each 512 px tile
costs 170 on top of 85. gpt-4o-mini prices the same tiles at 5667 on top of 2833. The
patch models (gpt-4.1-mini, gpt-4.1-nano, o4-mini) count 32 px patches, at most 1536,
times a model factor.
Anthropic: about width x height / 750, the image first fitted within 1568 px on its long
edge and 1.15 megapixels; at most ~1600.
"""

import base64
import binascii
import math
import struct

from aura_orchestrator.providers.base import ImagePart

TILE_BASE, TILE_EACH = 85, 170
MINI_TILE_BASE, MINI_TILE_EACH = 2833, 5667  # gpt-4o-mini
PATCH_FACTORS = {"gpt-4.1-mini": 1.62, "gpt-4.1-nano": 2.46, "o4-mini": 1.72}
MAX_PATCHES = 1536
ANTHROPIC_MAX = 1600
HEADER_BYTES = 64 * 1024  # enough of any PNG, GIF, WebP or JPEG to find its size


def image_tokens(part: ImagePart, *, model: str, kind: str) -> int:
    size = image_size(part)
    if kind == "anthropic":
        return _anthropic(size)
    base = model.rsplit("/", 1)[-1]
    for family, factor in PATCH_FACTORS.items():
        if base.startswith(family):
            return math.ceil(_patches(size) * factor)
    if part.detail == "low":
        return MINI_TILE_BASE if base.startswith("gpt-4o-mini") else TILE_BASE
    tiles = _tiles(size)
    if base.startswith("gpt-4o-mini"):
        return MINI_TILE_BASE + MINI_TILE_EACH * tiles
    return TILE_BASE + TILE_EACH * tiles


def _tiles(size: tuple[int, int] | None) -> int:
    if size is None:
        return 8  # the most an image can take: 2048x768 after scaling, 4 x 2 tiles
    scale = min(1.0, 2048 / max(size))
    width, height = size[0] * scale, size[1] * scale
    scale = min(1.0, 768 / min(width, height))
    return math.ceil(width * scale / 512) * math.ceil(height * scale / 512)


def _patches(size: tuple[int, int] | None) -> int:
    if size is None:
        return MAX_PATCHES
    width, height = size
    return min(MAX_PATCHES, math.ceil(width / 32) * math.ceil(height / 32))


def _anthropic(size: tuple[int, int] | None) -> int:
    if size is None:
        return ANTHROPIC_MAX
    width, height = size
    scale = min(1.0, 1568 / max(width, height), math.sqrt(1_150_000 / (width * height)))
    return min(ANTHROPIC_MAX, math.ceil(width * scale * height * scale / 750))


def image_size(part: ImagePart) -> tuple[int, int] | None:
    """(width, height) of a `data:` image, read from its header; None when unknown."""
    inline = part.inline
    if inline is None:
        return None
    data = inline[1][: HEADER_BYTES * 4 // 3]
    try:
        head = base64.b64decode(data[: len(data) - len(data) % 4] or "", validate=False)
    except (binascii.Error, ValueError):
        return None
    size = _header_size(head)
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _header_size(head: bytes) -> tuple[int, int] | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        return width, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """The first start-of-frame marker's size."""
    at = 2
    while at + 9 < len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        length = struct.unpack(">H", head[at + 2 : at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None
