"""The OpenAI Chat Completions side of the fake upstream (providers/openai_compat.py's peer)."""

from __future__ import annotations

import json
import time

from aura_orchestrator.providers.openai_compat import OpenAICompatAdapter

from .wire import Reply, WireShape, pieces

PATH = "/v1/chat/completions"


def _usage(reply: Reply, choices: int = 1) -> dict:
    tokens_out = reply.tokens_out * choices
    return {
        "prompt_tokens": reply.tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": reply.tokens_in + tokens_out,
    }


def completion(model: str, reply: Reply, serial: int, body: dict) -> dict:
    choices = body.get("n") or 1
    finish = "length" if reply.truncated else "stop"
    return {
        "id": f"chatcmpl-sim-{serial}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": finish,
            }
            for index in range(choices)
        ],
        "usage": _usage(reply, choices),
    }


def events(model: str, reply: Reply, serial: int, body: dict) -> list[str]:
    """Usage only when the request asked for it (`stream_options.include_usage`), as OpenAI."""
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    created = int(time.time())

    def event(choices: list[dict], usage: dict | None = None) -> str:
        chunk = {
            "id": f"chatcmpl-sim-{serial}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        }
        if include_usage:  # like OpenAI: null on every chunk but the last
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk)}\n\n"

    def choice(delta: dict, finish: str | None = None) -> list[dict]:
        return [{"index": 0, "delta": delta, "finish_reason": finish}]

    frames = [event(choice({"role": "assistant", "content": ""}))]
    frames += [event(choice({"content": piece})) for piece in pieces(reply.content)]
    frames.append(event(choice({}, "length" if reply.truncated else "stop")))
    if include_usage:
        frames.append(event([], _usage(reply)))
    frames.append("data: [DONE]\n\n")
    return frames


def error(status: int, message: str | None = None) -> dict:
    if status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        kind, code = "server_error", None
    else:
        kind, code = "invalid_request_error", None
    return {
        "error": {
            "message": message or f"Simulated upstream error (HTTP {status})",
            "type": kind,
            "code": code,
        }
    }


SHAPE = WireShape(
    spec=OpenAICompatAdapter.spec,
    path=PATH,
    base_path="/v1",
    prompt_outside_messages=lambda body: "",
    answer=completion,
    events=events,
    error=error,
)
