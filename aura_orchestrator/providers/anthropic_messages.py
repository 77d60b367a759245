"""The Messages API's bodies, translated from and to the OpenAI-shaped types: the request
(tools, tool calls and results, images), what of it cannot be carried (`refusal`), and the
answer. The adapter and its stream translator live in anthropic.py.
"""

from __future__ import annotations

import json
from typing import Any

from .base import (
    THINKING_BLOCKS,
    CacheControl,
    ChatMessage,
    CompletionRequest,
    ContentPart,
    ImagePart,
    OtherPart,
    Refusal,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)

DEFAULT_MAX_TOKENS = 1024  # the Messages API requires max_tokens

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

TOOL_CHOICE_TYPES = {"auto": "auto", "required": "any", "function": "tool", "none": "none"}

# The image types the Messages API takes inline.
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

# OpenAI fields the Messages API lacks whose value asks for nothing beyond a plain answer:
# dropped rather than refused. Any other `extra` field is refused.
NO_OP_FIELDS: dict[str, Any] = {"modalities": ["text"], "logprobs": False}

# Messages API fields that ride in `extra` (from the Anthropic-compatible front door):
# sent on in the Messages body. OpenAI-kind routes refuse `thinking`, which no
# chat-completions server takes; `top_k` they pass on (vLLM and others take it).
ANTHROPIC_ONLY = ("top_k", "thinking")


def refusal(request: CompletionRequest) -> Refusal | None:
    """The first thing of `request` the Messages API cannot carry, as a body path."""
    if (request.n or 1) > 1:
        return Refusal("n", "The Messages API answers one choice (`n` must be 1).")
    for i, message in enumerate(request.messages):
        for j, part in enumerate(message.parts or ()):
            problem = _part_problem(part)
            if problem is not None:
                return Refusal(f"messages[{i}].content[{j}]", problem)
        for j, call in enumerate(message.tool_calls):
            if _arguments(call) is None:
                return Refusal(
                    f"messages[{i}].tool_calls[{j}].function.arguments",
                    "The Messages API takes a tool call's arguments as a JSON object only.",
                )
    for name, value in request.extra.items():
        if name not in ANTHROPIC_ONLY and not _asks_nothing(name, value):
            return Refusal(name, f"The Messages API has no `{name}`.")
    return None


def _part_problem(part: ContentPart) -> str | None:
    if isinstance(part, OtherPart) and not part.thinking:
        return f"The Messages API takes no `{part.type}` parts."
    inline = part.inline if isinstance(part, ImagePart) else None
    if inline is not None and inline[0] not in IMAGE_TYPES:
        return "The Messages API takes JPEG, PNG, GIF and WebP images only."
    return None


def _asks_nothing(name: str, value: Any) -> bool:
    """Null, or the no-op value (type included: `0 == False`)."""
    if value is None:
        return True
    no_op = NO_OP_FIELDS.get(name)
    return type(value) is type(no_op) and value == no_op


def _arguments(call: ToolCall) -> dict[str, Any] | None:
    """A call's arguments as tool_use's `input` (a JSON object); None when they are not one."""
    try:
        arguments = json.loads(call.arguments)
    except ValueError:
        return None
    return arguments if isinstance(arguments, dict) else None


def request_body(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
    """The Messages body of a request `refusal` accepts (`response_format` has no
    equivalent: the pipeline validates a schema'd answer itself)."""
    system = system_body(request.messages)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "messages": messages_body(request.messages),
    }
    if system:
        body["system"] = system
    body.update({k: request.extra[k] for k in ANTHROPIC_ONLY if request.extra.get(k) is not None})
    if _thinks(request):
        pass  # extended thinking takes no temperature nor top_p: the preset's are not sent
    elif request.temperature is not None:
        # OpenAI's range is 0..2, Anthropic's 0..1.
        body["temperature"] = min(max(request.temperature, 0.0), 1.0)
    elif request.top_p is not None:
        # Recent Claude models reject temperature and top_p together; temperature wins.
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if request.tools:
        body["tools"] = [tool_body(t) for t in request.tools]
        choice = tool_choice_body(request)
        if choice is not None:
            body["tool_choice"] = choice
    if stream:
        body["stream"] = True
    return body


def system_body(messages: tuple[ChatMessage, ...]) -> str | list[dict[str, Any]]:
    """The system messages joined, or as text blocks when one of them carries a
    cache_control (which only a block can hold)."""
    system = [m for m in messages if m.role == "system"]
    parts = [p for m in system for p in m.parts or (TextPart(m.content),)]
    if any(isinstance(p, TextPart) and p.cache_control for p in parts):
        return [_part_block(p) for p in parts if isinstance(p, TextPart) and p.text]
    return "\n\n".join(m.content for m in system)


def _thinks(request: CompletionRequest) -> bool:
    thinking = request.extra.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def count_body(request: CompletionRequest) -> dict[str, Any]:
    """The count_tokens body: what of the Messages body counts (no max_tokens, sampling)."""
    body = request_body(request, stream=False)
    keep = ("model", "messages", "system", "tools", "tool_choice", "thinking")
    return {k: v for k, v in body.items() if k in keep}


def tool_body(tool: Tool) -> dict[str, Any]:
    """`strict` has no Messages equivalent: dropped."""
    body: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        body["description"] = tool.description
    body["input_schema"] = tool.parameters or {"type": "object", "properties": {}}
    return _cached(body, tool.cache_control)


def tool_choice_body(request: CompletionRequest) -> dict[str, Any] | None:
    """OpenAI's tool_choice and parallel_tool_calls, which Anthropic keeps in one object."""
    choice = request.tool_choice
    serial = request.parallel_tool_calls is False
    if choice is None and not serial:
        return None  # auto, Anthropic's default too
    body: dict[str, Any] = {"type": TOOL_CHOICE_TYPES[choice.mode if choice else "auto"]}
    if choice is not None and choice.name is not None:
        body["name"] = choice.name
    if serial and body["type"] != "none":
        body["disable_parallel_tool_use"] = True
    return body


def messages_body(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    """The conversation as Messages turns. Anthropic alternates user and assistant turns
    and wants every result of one round of tool calls in one user turn: consecutive
    messages of one role (tool results being the user's) merge into one turn."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        # A lone plain text block (or none) reads as the plain string it came from.
        blocks = turn["content"]
        if not blocks or (len(blocks) == 1 and blocks[0].keys() == {"type", "text"}):
            turn["content"] = blocks[0]["text"] if blocks else ""
    return turns


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if message.tool_call_id is not None:
        result = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        return [_cached({**result, "content": message.content}, message.cache_control)]
    parts = message.parts if message.parts is not None else (TextPart(message.content),)
    # Anthropic rejects empty text blocks; an assistant turn of calls alone has no text.
    blocks = [_part_block(p) for p in parts if not isinstance(p, TextPart) or p.text]
    blocks += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": _arguments(call)}
        for call in message.tool_calls
    ]
    return blocks


def _part_block(part: ContentPart) -> dict[str, Any]:
    """A text or image part, or a thinking block verbatim (`refusal` turns down the
    others); an image's `detail` has no Messages equivalent."""
    if isinstance(part, OtherPart):
        return part.body
    if isinstance(part, TextPart):
        return _cached({"type": "text", "text": part.text}, part.cache_control)
    inline = part.inline
    if inline is None:
        source: dict[str, Any] = {"type": "url", "url": part.url}
    else:
        media_type, data = inline
        source = {"type": "base64", "media_type": media_type, "data": data}
    return _cached({"type": "image", "source": source}, part.cache_control)


def _cached(block: dict[str, Any], cache_control: CacheControl | None) -> dict[str, Any]:
    """`block` with its cache_control, verbatim, when it has one."""
    return block if cache_control is None else {**block, "cache_control": cache_control}


def answer_of(blocks: list[Any]) -> tuple[str, tuple[ToolCall, ...]]:
    """(the text blocks joined, the tool_use blocks as calls) of an answer's content."""
    text = "".join(
        str(block.get("text", ""))
        for block in blocks
        if isinstance(block, dict) and block.get("type") == "text"
    )
    calls = tuple(
        ToolCall(
            id=str(block.get("id", "")),
            name=str(block.get("name", "")),
            arguments=json.dumps(block.get("input") or {}),
        )
        for block in blocks
        if isinstance(block, dict) and block.get("type") == "tool_use"
    )
    return text, calls


def thinking_of(blocks: list[Any]) -> list[dict[str, Any]]:
    """An answer's thinking and redacted_thinking blocks, verbatim (their signatures are
    what the provider checks when a client sends them back)."""
    return [b for b in blocks if isinstance(b, dict) and b.get("type") in THINKING_BLOCKS]


def choice_of(
    text: str,
    calls: tuple[ToolCall, ...],
    finish_reason: str | None,
    thinking: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The answer as an OpenAI choice: what the gateway sends back when it calls tools or
    thought. Thinking follows LiteLLM: `thinking_blocks` verbatim, `reasoning_content`
    their text joined."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = [call.body() for call in calls]
    if thinking:
        message["reasoning_content"] = "".join(str(b.get("thinking", "")) for b in thinking)
        message["thinking_blocks"] = thinking
    return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}


def parse_usage(raw: Any) -> Usage | None:
    """Anthropic's input_tokens exclude cache reads and writes; Usage.tokens_in includes them."""
    if not isinstance(raw, dict):
        return None
    tokens_in, tokens_out = raw.get("input_tokens"), raw.get("output_tokens")
    if not isinstance(tokens_in, int) or not isinstance(tokens_out, int):
        return None
    cached = _int(raw.get("cache_read_input_tokens"))
    written = _int(raw.get("cache_creation_input_tokens"))
    return Usage(tokens_in + cached + written, tokens_out, cached, cache_write_tokens=written)


def map_finish_reason(stop_reason: Any) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(str(stop_reason), str(stop_reason))


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0
