"""An Anthropic Messages body (plus our headers) → one `OperationRequest`.

Strict as Anthropic is: an unknown field or block type is a 400 naming its path. Fields
only Anthropic has (`top_k`, `thinking`) travel in `extra`, an assistant turn's thinking
blocks as `OtherPart`s and `cache_control` markers on the parts, tools and tool messages
that had them; the adapters decide who can carry them (Anthropic routes send them on).
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aura_orchestrator.api.chat import (
    MAX_ID_CHARS,
    MAX_IMAGE_URL_CHARS,
    MAX_IMAGES,
    MAX_MESSAGES,
    MAX_TEXT_CHARS,
    MAX_TOOLS,
    object_value,
    text_value,
    tool_name,
)
from aura_orchestrator.api.exceptions import invalid_field
from aura_orchestrator.api.jsonbody import schema_problem
from aura_orchestrator.gateway.translate import (
    MAX_TOKENS_LIMIT,
    aura_fields,
    model_field,
    number_field,
)
from aura_orchestrator.pipeline import OperationRequest, PresetOverrides
from aura_orchestrator.providers.anthropic_messages import IMAGE_TYPES
from aura_orchestrator.providers.base import (
    THINKING_BLOCKS,
    CacheControl,
    ChatMessage,
    ContentPart,
    ImagePart,
    OtherPart,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)

FIELDS = frozenset(
    {
        "model", "max_tokens", "system", "messages", "tools", "tool_choice", "stop_sequences",
        "temperature", "top_p", "top_k", "thinking", "metadata", "stream",
    }
)  # fmt: skip
MAX_STOP_SEQUENCES = 4  # OpenAI's limit: the request may fall back to an OpenAI-kind route
# tool_choice.type → ToolChoice.mode (the adapter's TOOL_CHOICE_TYPES, read backwards).
TOOL_CHOICE_MODES = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}
# A thinking block's fields, each a string: checked, then the block is kept verbatim.
THINKING_FIELDS = {"thinking": ("thinking", "signature"), "redacted_thinking": ("data",)}
# `anthropic-beta`: passed on to Anthropic-kind routes (`OperationRequest.provider_headers`).
BETA_HEADER = "anthropic-beta"
MAX_BETA_CHARS = 512
BETA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class MessagesCall:
    operation: OperationRequest
    stream: bool


def _int(value: object, param: str, *, low: int, high: int = MAX_TOKENS_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid_field(param, f"`{param}` must be an integer between {low} and {high}.")
    return value


def _block_type(block: object, param: str, allowed: tuple[str, ...]) -> tuple[dict, str]:
    block = object_value(block, param)
    kind = block.get("type")
    if kind not in allowed:
        raise invalid_field(
            f"{param}.type",
            f"`{param}.type` must be one of {', '.join(allowed)} (got {str(kind)[:40]!r}).",
        )
    return block, kind


def _cache_control(block: dict, param: str) -> CacheControl | None:
    """A block's cache_control, kept verbatim for Anthropic routes."""
    value = block.get("cache_control")
    return None if value is None else object_value(value, f"{param}.cache_control")


def _text_part(block: dict, param: str) -> TextPart:
    return TextPart(text_value(block.get("text"), f"{param}.text"), _cache_control(block, param))


def _text_blocks(value: object, param: str) -> tuple[TextPart, ...]:
    """A string, or text blocks (system prompts, tool results)."""
    if isinstance(value, str):
        return (TextPart(value),)
    if not isinstance(value, list):
        raise invalid_field(param, f"`{param}` must be a string or a list of text blocks.")
    return tuple(
        _text_part(_block_type(block, f"{param}[{i}]", ("text",))[0], f"{param}[{i}]")
        for i, block in enumerate(value)
    )


def _joined(parts: tuple[ContentPart, ...] | list[ContentPart]) -> str:
    return "\n".join(p.text for p in parts if isinstance(p, TextPart))


def _rich(parts: tuple[ContentPart, ...] | list[ContentPart]) -> tuple[ContentPart, ...] | None:
    """The parts, when the text alone would lose something (an image, a cache_control)."""
    if any(not isinstance(p, TextPart) or p.cache_control for p in parts):
        return tuple(parts)
    return None


def _thinking(block: dict, kind: str, param: str) -> OtherPart:
    """A thinking block of an assistant turn, verbatim: its signature must reach the
    provider unchanged."""
    for name in THINKING_FIELDS[kind]:
        if type(block.get(name)) is not str:
            raise invalid_field(f"{param}.{name}", f"`{param}.{name}` must be a string.")
    return OtherPart(type=kind, body=block)


def _image(block: dict, param: str) -> ImagePart:
    source = object_value(block.get("source"), f"{param}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type not in IMAGE_TYPES:
            raise invalid_field(
                f"{param}.source.media_type",
                f"`{param}.source.media_type` must be one of {', '.join(IMAGE_TYPES)}.",
            )
        data = text_value(source.get("data"), f"{param}.source.data", max_chars=MAX_IMAGE_URL_CHARS)
        return ImagePart(
            url=f"data:{media_type};base64,{data}", cache_control=_cache_control(block, param)
        )
    if kind == "url":
        url = text_value(source.get("url"), f"{param}.source.url", max_chars=8192)
        if not url.startswith(("https://", "http://")):
            raise invalid_field(
                f"{param}.source.url", f"`{param}.source.url` must be an http(s) URL."
            )
        return ImagePart(url=url, cache_control=_cache_control(block, param))
    raise invalid_field(f"{param}.source.type", f"`{param}.source.type` must be base64 or url.")


def _tool_use(block: dict, param: str) -> ToolCall:
    arguments = object_value(block.get("input"), f"{param}.input")
    return ToolCall(
        id=text_value(block.get("id"), f"{param}.id", max_chars=MAX_ID_CHARS),
        name=tool_name(block.get("name"), f"{param}.name"),
        arguments=json.dumps(arguments),
    )


def _tool_result(block: dict, param: str) -> ChatMessage:
    """`is_error` has no chat-completions equivalent: the result's text says it. The
    block's cache_control rides on the tool message (its text blocks' are not kept)."""
    if block.get("tool_use_id") is None:
        raise invalid_field(f"{param}.tool_use_id", f"`{param}.tool_use_id` is required.")
    call_id = text_value(block.get("tool_use_id"), f"{param}.tool_use_id", max_chars=MAX_ID_CHARS)
    content = block.get("content")
    text = "" if content is None else _joined(_text_blocks(content, f"{param}.content"))
    return ChatMessage(
        role="tool",
        content=text,
        tool_call_id=call_id,
        cache_control=_cache_control(block, param),
    )


def _message(raw: object, param: str) -> list[ChatMessage]:
    """One turn as chat messages: a user turn's tool results first (each a `tool`
    message), then the rest of it; an assistant turn's text and calls in one message."""
    message = object_value(raw, param)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise invalid_field(f"{param}.role", f"`{param}.role` must be user or assistant.")
    unknown = set(message) - {"role", "content"}
    if unknown:
        raise invalid_field(f"{param}.{min(unknown)}", f"`{param}.{min(unknown)}`: unknown field.")
    content = message.get("content")
    if isinstance(content, str):
        return [ChatMessage(role=role, content=content)]
    if not isinstance(content, list):
        raise invalid_field(f"{param}.content", f"`{param}.content` must be a string or a list.")
    allowed = (
        ("text", "image", "tool_result")
        if role == "user"
        else ("text", "tool_use", *THINKING_BLOCKS)
    )
    results: list[ChatMessage] = []
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    for i, raw_block in enumerate(content):
        at = f"{param}.content[{i}]"
        block, kind = _block_type(raw_block, at, allowed)
        if kind == "text":
            parts.append(_text_part(block, at))
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "tool_result":
            results.append(_tool_result(block, at))
        elif kind == "tool_use":
            calls.append(_tool_use(block, at))
        else:
            parts.append(_thinking(block, kind, at))
    if parts or calls or not results:
        message_ = ChatMessage(
            role=role, content=_joined(parts), parts=_rich(parts), tool_calls=tuple(calls)
        )
        results.append(message_)
    return results


def _messages(body: dict) -> tuple[ChatMessage, ...]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise invalid_field("messages", "`messages` must be a non-empty list of messages.")
    if len(raw) > MAX_MESSAGES:
        raise invalid_field("messages", f"`messages` may hold at most {MAX_MESSAGES} messages.")
    messages: list[ChatMessage] = []
    system = body.get("system")
    if system is not None:
        blocks = _text_blocks(system, "system")
        messages.append(ChatMessage(role="system", content=_joined(blocks), parts=_rich(blocks)))
    for i, message in enumerate(raw):
        messages += _message(message, f"messages[{i}]")
    text = sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in messages)
    if text > MAX_TEXT_CHARS:
        raise invalid_field("messages", f"The messages exceed {MAX_TEXT_CHARS} characters of text.")
    images = sum(isinstance(p, ImagePart) for m in messages for p in m.parts or ())
    if images > MAX_IMAGES:
        raise invalid_field("messages", f"At most {MAX_IMAGES} images per request.")
    return tuple(messages)


def _tools(body: dict) -> tuple[Tool, ...]:
    raw = body.get("tools")
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_TOOLS:
        raise invalid_field("tools", f"`tools` must be a list of at most {MAX_TOOLS} tools.")
    tools = []
    for i, spec in enumerate(raw):
        at = f"tools[{i}]"
        spec = object_value(spec, at)
        if spec.get("type", "custom") != "custom":
            raise invalid_field(
                f"{at}.type", f"`{at}.type`: only client tools (custom) are served."
            )
        description = spec.get("description")
        if description is not None:
            text_value(description, f"{at}.description", max_chars=100_000)
        schema = object_value(spec.get("input_schema"), f"{at}.input_schema")
        problem = schema_problem(schema)
        if problem is not None:
            raise invalid_field(f"{at}.input_schema", problem)
        name = tool_name(spec.get("name"), f"{at}.name")
        cache_control = _cache_control(spec, at)
        tools.append(Tool(name, description, schema, cache_control=cache_control))
    if len({t.name for t in tools}) != len(tools):
        raise invalid_field("tools", "`tools`: tool names must be unique.")
    return tuple(tools)


def _tool_choice(body: dict, tools: tuple[Tool, ...]) -> tuple[ToolChoice | None, bool | None]:
    """(the choice, parallel_tool_calls: False when `disable_parallel_tool_use`)."""
    raw = body.get("tool_choice")
    if raw is None:
        return None, None
    choice = object_value(raw, "tool_choice")
    mode = TOOL_CHOICE_MODES.get(choice.get("type"))  # type: ignore[arg-type]
    if mode is None:
        raise invalid_field(
            "tool_choice.type", "`tool_choice.type` must be auto, any, tool or none."
        )
    if not tools:
        raise invalid_field("tool_choice", "`tool_choice` is only allowed with `tools`.")
    name = None
    if mode == "function":
        name = tool_name(choice.get("name"), "tool_choice.name")
        if name not in {t.name for t in tools}:
            raise invalid_field("tool_choice.name", f"No tool named {name!r} in `tools`.")
    serial = choice.get("disable_parallel_tool_use")
    if serial is not None and type(serial) is not bool:
        raise invalid_field(
            "tool_choice.disable_parallel_tool_use",
            "`tool_choice.disable_parallel_tool_use` must be a boolean.",
        )
    return ToolChoice(mode=mode, name=name), (False if serial else None)


def _stop(body: dict) -> tuple[str, ...] | None:
    value = body.get("stop_sequences")
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and s for s in value)
    ):
        raise invalid_field(
            "stop_sequences",
            f"`stop_sequences` must be a list of up to {MAX_STOP_SEQUENCES} non-empty strings.",
        )
    return tuple(value) or None


def _anthropic_only(body: dict, max_tokens: int) -> dict[str, Any]:
    """`top_k` and `thinking`, checked, for `extra`."""
    extra: dict[str, Any] = {}
    if body.get("top_k") is not None:
        extra["top_k"] = _int(body["top_k"], "top_k", low=0, high=1_000_000)
    thinking = body.get("thinking")
    if thinking is not None:
        thinking = object_value(thinking, "thinking")
        kind = thinking.get("type")
        if kind == "enabled":
            _int(thinking.get("budget_tokens"), "thinking.budget_tokens", low=1024)
            if thinking["budget_tokens"] >= max_tokens:
                raise invalid_field("thinking.budget_tokens", "Must be less than `max_tokens`.")
        elif kind != "disabled":
            raise invalid_field("thinking.type", "`thinking.type` must be enabled or disabled.")
        extra["thinking"] = thinking
    return extra


def _user(body: dict) -> str | None:
    meta = body.get("metadata")
    if meta is None:
        return None
    meta = object_value(meta, "metadata")
    if set(meta) - {"user_id"}:
        raise invalid_field("metadata", "`metadata` takes `user_id` only.")
    user = meta.get("user_id")
    return None if user is None else text_value(user, "metadata.user_id", max_chars=256)


def _beta(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The `anthropic-beta` header, checked (printable ASCII, at most 512 characters, a
    comma-separated list of beta names) and normalised to `a,b`; () when absent."""
    value = headers.get(BETA_HEADER)
    if value is None:
        return ()
    problem = None
    if len(value) > MAX_BETA_CHARS:
        problem = f"at most {MAX_BETA_CHARS} characters"
    elif not all(" " <= c <= "~" for c in value):
        problem = "printable ASCII"
    names = [name.strip() for name in value.split(",")]
    if problem is None and not all(BETA_NAME.fullmatch(name) for name in names):
        problem = "comma-separated beta names (letters, digits, '.', '_', '-')"
    if problem is not None:
        raise invalid_field(BETA_HEADER, f"The `{BETA_HEADER}` header must be {problem}.")
    return ((BETA_HEADER, ",".join(names)),)


def messages_call_from(
    *, body: object, headers: Mapping[str, str], default_session: str
) -> MessagesCall:
    """Validate a Messages body and build the pipeline's request from it."""
    if not isinstance(body, dict):
        raise invalid_field("body", "The request body must be a JSON object.")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        name = unknown[0][:64] or "body"
        raise invalid_field(name, f"`{name}`: Extra inputs are not permitted.")
    model = model_field(body)
    if body.get("max_tokens") is None:
        raise invalid_field("max_tokens", "`max_tokens` is required.")
    max_tokens = _int(body["max_tokens"], "max_tokens", low=1)
    stream = body.get("stream")
    if stream is not None and type(stream) is not bool:
        raise invalid_field("stream", "`stream` must be a boolean.")
    tools = _tools(body)
    tool_choice, parallel = _tool_choice(body, tools)
    aura = aura_fields(headers, {}, default_session=default_session)
    operation = OperationRequest(
        session_id=aura.session_id,
        operation_type=aura.operation_type,
        messages=_messages(body),
        enable_cache=aura.enable_cache,
        budget_name=aura.budget_name,
        overrides=PresetOverrides(
            temperature=number_field(body, "temperature", low=0.0, high=1.0),
            top_p=number_field(body, "top_p", low=0.0, high=1.0),
            max_tokens=max_tokens,
        ),
        model=model,
        stop=_stop(body),
        user=_user(body),
        end_user=aura.end_user_or(_user(body)),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        extra=_anthropic_only(body, max_tokens),
        provider_headers=_beta(headers),
        source="gateway",
    )
    return MessagesCall(operation=operation, stream=bool(stream))
