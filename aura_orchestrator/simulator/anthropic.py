"""The Anthropic Messages side of the fake upstream (providers/anthropic.py's peer)."""

from __future__ import annotations

import json

from aura_orchestrator.providers.anthropic import AnthropicAdapter

from .tools import ToolTurn, fragments
from .wire import Reply, WireShape, message_text, pieces

PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def tool_turn(body: dict) -> ToolTurn:
    """Client tools (those with an `input_schema`) and `tool_choice` ({"type": "auto" |
    "any" | "tool" | "none", "name", "disable_parallel_tool_use"}). A last user message
    holding any tool_result block hands results back; any other user message is a turn."""
    tools = body.get("tools")
    declared = tuple(
        (tool["name"], tool.get("input_schema") or {"type": "object"})
        for tool in (tools if isinstance(tools, list) else [])
        if isinstance(tool, dict) and isinstance(tool.get("name"), str) and "input_schema" in tool
    )
    choice = body.get("tool_choice")
    choice = choice if isinstance(choice, dict) else {}
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last = messages[-1] if messages and messages[-1].get("role") == "user" else {}
    content = last.get("content")
    results = tuple(
        message_text(block.get("content"))
        for block in (content if isinstance(content, list) else [])
        if isinstance(block, dict) and block.get("type") == "tool_result"
    )
    return ToolTurn(
        tools=declared,
        forced=choice.get("name") if choice.get("type") == "tool" else None,
        allowed=choice.get("type") != "none",
        parallel=not choice.get("disable_parallel_tool_use"),
        user_turn=bool(last) and not results,
        results=results or None,
    )


def _stop_reason(reply: Reply) -> str:
    return "max_tokens" if reply.truncated else "tool_use" if reply.tool_calls else "end_turn"


def thinks(body: dict) -> bool:
    """Extended thinking: `thinking: {"type": "enabled", "budget_tokens": N}`."""
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def _signature(serial: int) -> str:
    return f"sig_sim_{serial}"


def _blocks(reply: Reply, serial: int) -> list[dict]:
    """The thinking block first when there is one, then the text, or a sentence naming
    the tools then one tool_use block per call."""
    thinking = (
        [{"type": "thinking", "thinking": reply.thinking, "signature": _signature(serial)}]
        if reply.thinking is not None
        else []
    )
    if not reply.tool_calls:
        return [*thinking, {"type": "text", "text": reply.content}]
    names = ", ".join(dict.fromkeys(call.name for call in reply.tool_calls))
    calls = [
        {
            "type": "tool_use",
            "id": f"toolu_sim_{serial}_{index}",
            "name": call.name,
            "input": call.arguments,
        }
        for index, call in enumerate(reply.tool_calls)
    ]
    return [*thinking, {"type": "text", "text": f"I'll call {names}."}, *calls]


def _usage(reply: Reply, tokens_out: int) -> dict:
    """Anthropic's input_tokens exclude the cache reads and writes."""
    return {
        "input_tokens": reply.tokens_in,
        "output_tokens": tokens_out,
        "cache_creation_input_tokens": reply.cache_write,
        "cache_read_input_tokens": reply.cache_read,
    }


def message_body(model: str, reply: Reply, serial: int, body: dict | None = None) -> dict:
    return {
        "id": f"msg_sim_{serial}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _blocks(reply, serial),
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
        "usage": _usage(reply, reply.tokens_out),
    }


def events(model: str, reply: Reply, serial: int, body: dict | None = None) -> list[str]:
    """Usage in every stream: in message_start (1 output token; all zeros for
    `Fault(usage_at_end_only=True)`), then in message_delta (cumulative, input and cache
    counts included, as Anthropic's newer streams); a thinking block streams thinking_delta
    pieces then its signature_delta; a tool_use block starts with an empty input, then
    streams its JSON in fragments."""

    def event(name: str, data: dict) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

    start = message_body(model, reply, serial)
    opening_usage = _usage(reply, 1)
    if reply.usage_at_end_only:
        opening_usage = dict.fromkeys(opening_usage, 0)
    start.update(content=[], stop_reason=None, usage=opening_usage)
    frames = [event("message_start", {"message": start})]
    opening: dict
    for index, block in enumerate(_blocks(reply, serial)):
        if block["type"] == "thinking":
            opening = {"type": "thinking", "thinking": ""}
            deltas = [
                *({"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"])),
                {"type": "signature_delta", "signature": block["signature"]},
            ]
        elif block["type"] == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in pieces(block["text"])]
        else:
            opening = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": fragment}
                for fragment in fragments(json.dumps(block["input"]))
            ]
        frames.append(event("content_block_start", {"index": index, "content_block": opening}))
        if index == 0:
            frames.append(event("ping", {}))
        frames += [event("content_block_delta", {"index": index, "delta": d}) for d in deltas]
        frames.append(event("content_block_stop", {"index": index}))
    frames += [
        event(
            "message_delta",
            {
                "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
                "usage": _usage(reply, reply.tokens_out),
            },
        ),
        event("message_stop", {}),
    ]
    return frames


def error(status: int, message: str | None = None) -> dict:
    return {
        "type": "error",
        "error": {
            "type": ERROR_TYPES.get(status, "api_error"),
            "message": message or f"Simulated upstream error (HTTP {status})",
        },
    }


SHAPE = WireShape(
    spec=AnthropicAdapter.spec,
    path=PATH,
    base_path="",  # the adapter adds /v1/messages to a bare host
    prompt_outside_messages=lambda body: message_text(body.get("system")),
    tool_turn=tool_turn,
    answer=message_body,
    events=events,
    error=error,
    thinks=thinks,
)
