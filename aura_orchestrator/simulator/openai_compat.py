"""The OpenAI Chat Completions side of the fake upstream (providers/openai_compat.py's peer)."""

from __future__ import annotations

import json
import time
from itertools import takewhile

from aura_orchestrator.providers.openai_compat import OpenAICompatAdapter

from .tools import ToolTurn, fragments
from .wire import Reply, WireShape, message_text, pieces

PATH = "/v1/chat/completions"
FINGERPRINT = "fp_sim"


def tool_turn(body: dict) -> ToolTurn:
    """Function tools and `tool_choice` ("none", "auto", "required" or one named function);
    the trailing `tool` messages are the results handed back."""
    tools = body.get("tools")
    functions = tuple(
        (function["name"], function.get("parameters") or {"type": "object"})
        for tool in (tools if isinstance(tools, list) else [])
        if isinstance(tool, dict)
        for function in [tool.get("function")]
        if isinstance(function, dict) and isinstance(function.get("name"), str)
    )
    choice = body.get("tool_choice")
    named = choice.get("function") if isinstance(choice, dict) else None
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    trailing = list(takewhile(lambda m: m.get("role") == "tool", reversed(messages)))
    return ToolTurn(
        tools=functions,
        forced=named.get("name") if isinstance(named, dict) else None,
        allowed=choice != "none",
        parallel=body.get("parallel_tool_calls") is not False,
        user_turn=bool(messages) and messages[-1].get("role") == "user",
        results=tuple(message_text(m.get("content")) for m in reversed(trailing)) or None,
    )


def _choices(body: dict) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def _finish(reply: Reply) -> str:
    return "length" if reply.truncated else "tool_calls" if reply.tool_calls else "stop"


def _call_id(serial: int, index: int) -> str:
    return f"call_sim_{serial}_{index}"


def _usage(reply: Reply, choices: int = 1) -> dict:
    """Cached tokens are part of OpenAI's prompt_tokens; it has no cache writes."""
    tokens_in = reply.tokens_in + reply.cache_read
    tokens_out = reply.tokens_out * choices
    return {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
        "prompt_tokens_details": {"cached_tokens": reply.cache_read},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _top_logprobs(body: dict) -> int | None:
    """How many alternatives each token lists; None when logprobs were not asked for."""
    if body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs")
    return top if isinstance(top, int) and not isinstance(top, bool) and top > 0 else 0


def _logprob(piece: str, k: int, top: int) -> dict:
    """Piece k (from 1) has logprob -0.1·k; its alternatives are itself, then "alt1",
    "alt2"... each 1 lower than the one before."""

    def entry(token: str, logprob: float) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    logprob = round(-0.1 * k, 6)
    alternatives = [
        entry(piece if j == 0 else f"alt{j}", round(logprob - j, 6)) for j in range(top)
    ]
    return {**entry(piece, logprob), "top_logprobs": alternatives}


def _logprobs(body: dict, reply: Reply) -> dict | None:
    top = _top_logprobs(body)
    if top is None:
        return None
    text = [piece for piece in pieces(reply.content) if piece]
    content = [_logprob(piece, k, top) for k, piece in enumerate(text, 1)]
    return {"content": content, "refusal": None}


def _message(reply: Reply, serial: int) -> dict:
    message: dict = {
        "role": "assistant",
        "content": None if reply.tool_calls else reply.content,
        "refusal": None,
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id(serial, index),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for index, call in enumerate(reply.tool_calls)
        ]
    return message


def completion(model: str, reply: Reply, serial: int, body: dict) -> dict:
    choices = _choices(body)
    return {
        "id": f"chatcmpl-sim-{serial}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {
                "index": index,
                "message": _message(reply, serial),
                "logprobs": _logprobs(body, reply),
                "finish_reason": _finish(reply),
            }
            for index in range(choices)
        ],
        "usage": _usage(reply, choices),
    }


def events(model: str, reply: Reply, serial: int, body: dict) -> list[str]:
    """The choices' chunks interleaved, as OpenAI streams n > 1; usage (all choices) only
    when the request asked for it (`stream_options.include_usage`), as OpenAI."""
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    created = int(time.time())
    top = _top_logprobs(body)

    def event(choices: list[dict], usage: dict | None = None) -> str:
        chunk = {
            "id": f"chatcmpl-sim-{serial}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        }
        if include_usage:  # like OpenAI: null on every chunk but the last
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk)}\n\n"

    def piece_logprobs(piece: str, k: int) -> dict | None:
        return None if top is None else {"content": [_logprob(piece, k, top)], "refusal": None}

    def one_choice(index: int) -> list[dict]:
        def choice(delta: dict, finish: str | None = None, logprobs: dict | None = None) -> dict:
            return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}

        first = {"role": "assistant", "content": None if reply.tool_calls else "", "refusal": None}
        deltas = [choice(first)]
        for at, call in enumerate(reply.tool_calls):
            head = {"index": at, "id": _call_id(serial, at), "type": "function"}
            head["function"] = {"name": call.name, "arguments": ""}
            deltas.append(choice({"tool_calls": [head]}))
            deltas += [
                choice({"tool_calls": [{"index": at, "function": {"arguments": fragment}}]})
                for fragment in fragments(call.arguments_json)
            ]
        if not reply.tool_calls:
            deltas += [
                choice({"content": piece}, logprobs=piece_logprobs(piece, k))
                for k, piece in enumerate(pieces(reply.content), 1)
            ]
        deltas.append(choice({}, _finish(reply)))
        return deltas

    choices = _choices(body)
    rounds = zip(*(one_choice(index) for index in range(choices)), strict=True)
    frames = [event([choice]) for step in rounds for choice in step]
    if include_usage:
        frames.append(event([], _usage(reply, choices)))
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
    tool_turn=tool_turn,
    answer=completion,
    events=events,
    error=error,
)
