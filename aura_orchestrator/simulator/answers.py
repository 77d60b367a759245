"""What the fake upstream answers, whatever the kind: deterministic for a given request."""

from __future__ import annotations

import json
import re

from .examples import example_for_schema
from .faults import Fault
from .tools import results_text, tool_calls
from .wire import Reply, WireShape, message_text

DEFAULT_MAX_TOKENS = 256

# A fixed cost per image, OpenAI's rule without its tiling: 85 tokens at "low" detail,
# 765 otherwise (a 1024x1024 image at "high": 85 + 4 tiles of 170). Anthropic images
# have no detail: 765.
LOW_DETAIL_IMAGE_TOKENS = 85
IMAGE_TOKENS = 765

# The content marker may itself contain "]]" (JSON arrays): it ends at "]]" followed by the
# end of the message, whitespace or another marker.
_CONTENT_MARKER = re.compile(r"\[\[content:(.*?)\]\](?=\s|\[\[|$)", re.DOTALL)
_TOKENS_MARKER = re.compile(r"\[\[tokens_out:(\d+)\]\]")
_CACHE_MARKER = re.compile(r"\[\[cache:\s*(\d+)\s*,\s*(\d+)\s*\]\]")


def compose_reply(body: dict, fault: Fault, shape: WireShape) -> Reply:
    messages = _messages(body)
    last_user = next(
        (message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        "",
    )
    images = _image_tokens(messages)
    turn = shape.tool_turn(body)
    # Scripted content wins over tool calls: a test that scripts the text gets the text.
    explicit = fault.content if fault.content is not None else _marked_content(last_user)
    calls = tool_calls(turn, last_user) if explicit is None else ()
    if explicit is not None:
        content = explicit
    elif calls:
        content = ""
    elif turn.results is not None:
        content = results_text(turn.results)
    else:
        content = _content_for(body, last_user, len(images))
    thinking = (
        f"Simulated reasoning about: {' '.join(last_user.split())[:40]}"
        if shape.thinks(body)
        else None
    )
    max_tokens = body.get("max_tokens")
    natural = (len(content) + sum(len(c.name + c.arguments_json) for c in calls)) // 4 + 1
    cap = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_MAX_TOKENS
    tokens_in = prompt_tokens(body, shape)
    tokens_out = min(cap, natural) + (len(thinking) // 4 + 1 if thinking else 0)
    marker = _TOKENS_MARKER.search(last_user)
    if marker:
        tokens_out = int(marker.group(1))
    if fault.usage is not None:
        tokens_in, tokens_out = fault.usage
    truncated = isinstance(max_tokens, int) and natural > max_tokens
    cache = _CACHE_MARKER.search(last_user)
    read, written = (int(cache.group(1)), int(cache.group(2))) if cache else (0, 0)
    return Reply(
        content,
        tokens_in,
        tokens_out,
        truncated,
        calls,
        read,
        written,
        thinking,
        usage_at_end_only=fault.usage_at_end_only,
    )


def prompt_tokens(body: dict, shape: WireShape) -> int:
    """The prompt tokens reported for `body`, cache reads and writes excluded: characters
    / 4 (messages and what the kind keeps outside them) + the JSON of `tools` / 4 + images."""
    messages = _messages(body)
    texts = [message_text(m.get("content")) for m in messages]
    texts.append(shape.prompt_outside_messages(body))
    # Tool definitions cost prompt tokens too, as upstream.
    tools = body.get("tools")
    tools_tokens = len(json.dumps(tools)) // 4 if tools else 0
    return max(1, sum(len(text) for text in texts) // 4 + tools_tokens) + sum(
        _image_tokens(messages)
    )


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _image_tokens(messages: list[dict]) -> list[int]:
    """The prompt tokens of each image part of the messages, either kind's."""
    costs = []
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image":
                costs.append(IMAGE_TOKENS)
            elif kind == "image_url":
                image = part.get("image_url")
                low = isinstance(image, dict) and image.get("detail") == "low"
                costs.append(LOW_DETAIL_IMAGE_TOKENS if low else IMAGE_TOKENS)
    return costs


def _marked_content(last_user: str) -> str | None:
    marker = _CONTENT_MARKER.search(last_user)
    return marker.group(1) if marker else None


def _content_for(body: dict, last_user: str, images: int) -> str:
    """The default answer; a plain one ends with " [images: N]" when images were sent, so
    tests see that they reached the upstream."""
    answer = f"Simulated answer to: {' '.join(last_user.split())[:60]}"
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema") or {}
            schema = spec.get("schema") or {"type": "object"}
            return json.dumps(example_for_schema(schema))
        if response_format.get("type") == "json_object":
            return json.dumps({"answer": answer})
    return f"{answer} [images: {images}]" if images else answer
