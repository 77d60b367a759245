"""The Anthropic Messages side of the fake upstream (providers/anthropic.py's peer)."""

from __future__ import annotations

import json

from aura_orchestrator.providers.anthropic import AnthropicAdapter

from .wire import Reply, WireShape, message_text, pieces

PATH = "/v1/messages"

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def message_body(model: str, reply: Reply, serial: int, body: dict | None = None) -> dict:
    return {
        "id": f"msg_sim_{serial}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply.content}],
        "stop_reason": "max_tokens" if reply.truncated else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.tokens_in, "output_tokens": reply.tokens_out},
    }


def events(model: str, reply: Reply, serial: int, body: dict | None = None) -> list[str]:
    """Usage in every stream: input tokens in message_start, output in message_delta."""

    def event(name: str, data: dict) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

    start = message_body(model, reply, serial)
    start.update(content=[], stop_reason=None)
    start["usage"] = {"input_tokens": reply.tokens_in, "output_tokens": 1}
    frames = [
        event("message_start", {"message": start}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        event("ping", {}),
    ]
    frames += [
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
        for piece in pieces(reply.content)
    ]
    stop_reason = "max_tokens" if reply.truncated else "end_turn"
    frames += [
        event("content_block_stop", {"index": 0}),
        event(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": reply.tokens_out},
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
    answer=message_body,
    events=events,
    error=error,
)
