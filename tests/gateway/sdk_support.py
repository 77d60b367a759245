"""Helpers of the SDK tests (test_sdk_*.py): tool definitions, a real PNG, stream
accumulation and polling for telemetry rows written after a stream ends."""

import base64
import struct
import time
import zlib
from typing import Any

from telemetry.models import OperationTelemetry


def function_tool(name: str, argument: str, description: str = "") -> dict[str, Any]:
    """An OpenAI function tool with one required string argument: the fake upstream calls
    it with {argument: "x"} (a minimal instance of the schema)."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description or f"The {name} tool",
            "parameters": {
                "type": "object",
                "properties": {argument: {"type": "string"}},
                "required": [argument],
            },
        },
    }


WEATHER = function_tool("get_weather", "city", "The weather in a city")
TIME = function_tool("get_time", "zone", "The time in a time zone")


def png(width: int, height: int) -> bytes:
    """A valid RGB PNG of that size (one colour), built without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\xff\x80\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def data_url(image: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(image).decode()}"


def image_part(url: str, detail: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"url": url}
    if detail is not None:
        spec["detail"] = detail
    return {"type": "image_url", "image_url": spec}


def streamed_tool_calls(chunks) -> tuple[dict[int, dict[str, Any]], str | None, int]:
    """Streamed `delta.tool_calls` of choice 0 joined as the SDK documents it (by index:
    the id and name once, the arguments in fragments): (calls by index, the last
    finish_reason, how many argument fragments arrived)."""
    calls: dict[int, dict[str, Any]] = {}
    finish, fragments = None, 0
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                if delta.id:
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
                    fragments += 1
    return calls, finish, fragments


def rows_of(session_id: str, count: int, timeout: float = 10.0) -> list[OperationTelemetry]:
    """The session's telemetry rows, oldest first, once there are `count` of them (a
    streamed operation's row is written when its stream has ended)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(OperationTelemetry.objects.filter(session_id=session_id).order_by("started_at"))
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, f"{session_id}: {len(rows)} telemetry rows, not {count}"
            return rows
        time.sleep(0.05)
