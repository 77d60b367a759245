"""The pure parts of the chat surface: image sizes and their token rules, the cache key
of requests beyond text, chunks reassembled into choices and back, and the OpenAI
adapter's wire body for tools, parts and passthrough fields."""

import base64
import struct
import zlib

import pytest

from aura_orchestrator.caching.keys import request_material
from aura_orchestrator.catalog.images import image_size, image_tokens
from aura_orchestrator.providers.base import (
    ChatMessage,
    CompletionRequest,
    ImagePart,
    OtherPart,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)
from aura_orchestrator.providers.chunks import ChoicesAssembler, replay_deltas
from aura_orchestrator.providers.openai_compat import request_body


def png(width: int, height: int) -> str:
    """A real PNG (grey, 8-bit) as a data URL."""
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
    data += chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(data).decode()


def gif(width: int, height: int) -> str:
    data = b"GIF89a" + struct.pack("<HH", width, height) + b"\x00" * 20
    return "data:image/gif;base64," + base64.b64encode(data).decode()


def test_image_sizes_are_read_from_data_url_headers_and_unknown_for_links():
    assert image_size(ImagePart(png(64, 32))) == (64, 32)
    assert image_size(ImagePart(gif(300, 200))) == (300, 200)
    assert image_size(ImagePart("https://example.com/cat.png")) is None
    assert image_size(ImagePart("data:image/png;base64,bm90IGFuIGltYWdl")) is None


@pytest.mark.parametrize(
    ("url", "detail", "model", "kind", "tokens"),
    [
        # OpenAI's published examples: 1024x1024 high → 765; 2048x4096 high → 1105.
        (gif(1024, 1024), "high", "gpt-4o", "openai", 765),
        (gif(2048, 4096), "high", "gpt-4o", "openai", 1105),
        (gif(2048, 4096), "low", "gpt-4o", "openai", 85),
        (png(64, 64), None, "gpt-4o", "openai", 85 + 170),
        # Unknown size: the most the tile rule allows (8 tiles).
        ("https://example.com/a.png", "high", "gpt-4o", "openai", 85 + 170 * 8),
        ("https://example.com/a.png", "auto", "gpt-4o-mini", "openai", 2833 + 5667 * 8),
        ("https://example.com/a.png", None, "gpt-4.1-mini", "openai", 2489),  # 1536 x 1.62
        # Anthropic: w x h / 750, at most ~1600.
        (gif(750, 100), None, "claude-sonnet-4", "anthropic", 100),
        ("https://example.com/a.png", None, "claude-sonnet-4", "anthropic", 1600),
    ],
)
def test_image_tokens_follow_each_providers_rule(url, detail, model, kind, tokens):
    assert image_tokens(ImagePart(url, detail), model=model, kind=kind) == tokens


def _material(**changes):
    base = {
        "messages": (ChatMessage("user", "hi", parts=(TextPart("hi"), ImagePart(png(8, 8)))),),
        "tools": (Tool("f", None, {"type": "object"}),),
        "tool_choice": ToolChoice("auto"),
        "parallel_tool_calls": None,
        "n": None,
        "extra": {},
    }
    return request_material(**(base | changes))


def test_the_cache_key_material_covers_images_by_content_tools_n_and_passed_fields():
    same = _material()
    assert _material() == same
    assert (
        _material(
            messages=(ChatMessage("user", "hi", parts=(TextPart("hi"), ImagePart(png(9, 8)))),)
        )
        != same
    )
    assert _material(tools=(Tool("g", None, {"type": "object"}),)) != same
    assert _material(tool_choice=ToolChoice("required")) != same
    assert _material(n=2) != same
    assert _material(extra={"seed": 1}) != same
    assert _material(extra={"logprobs": True}) != same
    # The image is hashed, not kept: the key material never holds the picture itself.
    assert png(8, 8)[30:] not in repr(same)
    plain = request_material(
        messages=(ChatMessage("user", "hi"),),
        tools=(),
        tool_choice=None,
        parallel_tool_calls=None,
        n=1,
        extra={},
    )
    assert plain == {}  # text-only requests keep the keys they always had


def test_streamed_tool_call_fragments_reassemble_and_replay_whole():
    assembler = ChoicesAssembler()
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "weather", "arguments": ""},
                            }
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Oslo"}'}}]
                    },
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    for chunk in chunks:
        assembler.feed(chunk)
    (choice,) = assembler.choices()
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
        }
    ]
    replayed = ChoicesAssembler()
    for delta in replay_deltas(choice, chunk_chars=4):
        replayed.feed({"choices": [delta]})
    assert replayed.choices() == (choice,)


def test_plain_text_streams_assemble_to_no_choices():
    assembler = ChoicesAssembler()
    for text in ("Hel", "lo"):
        assembler.feed({"choices": [{"index": 0, "delta": {"content": text}}]})
    assembler.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    assert assembler.choices() == ()


def test_the_openai_body_carries_tools_parts_calls_and_passed_fields_verbatim():
    request = CompletionRequest(
        model="m",
        messages=(
            ChatMessage(
                "user",
                "look",
                parts=(
                    TextPart("look"),
                    ImagePart("https://example.com/a.png", "low"),
                    OtherPart(
                        "input_audio",
                        {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
                    ),
                ),
            ),
            ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "f", '{"a":1}'),)),
            ChatMessage("tool", "42", tool_call_id="c1"),
        ),
        tools=(Tool("f", "does f", {"type": "object"}, True),),
        tool_choice=ToolChoice("function", "f"),
        parallel_tool_calls=False,
        extra={"seed": 3, "future": {"x": [1]}, "model": "not-this-one"},
    )
    body = request_body(request, stream=False)
    assert body["model"] == "m"  # a passed field never overrides ours
    assert body["seed"] == 3 and body["future"] == {"x": [1]}
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
    ]
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
    }
    assert body["messages"][2] == {"role": "tool", "content": "42", "tool_call_id": "c1"}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "does f",
                "parameters": {"type": "object"},
                "strict": True,
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["parallel_tool_calls"] is False
