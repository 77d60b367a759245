"""The chat format, parsed once: messages (text, image and other parts, tool calls, tool
results), tool definitions and the tool choice, in OpenAI's shapes. The gateway's
`/v1/chat/completions` and `/execute`'s `messages`, `tools`, `tool_choice` both parse
here, so both accept and refuse the same things.

Every problem is a 400 naming its path (`messages[2].tool_calls[0].function.arguments`).
Legacy `functions` / `function_call` (and `function` role messages) are mapped to tools
on the way in (`legacy_tools`).
"""

import re
from typing import Any

from aura_orchestrator import errors
from aura_orchestrator.api.exceptions import invalid_field
from aura_orchestrator.api.jsonbody import schema_problem
from aura_orchestrator.providers.base import (
    ChatMessage,
    ContentPart,
    ImagePart,
    OtherPart,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)

MAX_MESSAGES = 10_000
MAX_TEXT_CHARS = 2_000_000  # all text of a request (the REST API's prompt limit)
MAX_TOOLS = 128  # OpenAI's limit
MAX_IMAGES = 500  # OpenAI's limit per request
# One image's URL: OpenAI takes images up to 20 MB; a data URL's base64 is 4/3 of that.
MAX_IMAGE_URL_CHARS = 20 * 1024 * 1024 * 4 // 3 + 64
MAX_ID_CHARS = 256
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # OpenAI's rule for function names
ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
DETAILS = ("auto", "low", "high")
TOOL_CHOICE_MODES = ("auto", "none", "required")
# Parts passed on verbatim to the kinds that take them (OpenAI-compatible ones).
OTHER_PARTS = ("input_audio", "file", "refusal")
_IMAGE_DATA = re.compile(r"data:image/[a-zA-Z0-9.+-]+;base64,[A-Za-z0-9+/=\s]*")


def _invalid(param: str, message: str) -> errors.InvalidRequest:
    return invalid_field(param, message)


def text_value(value: object, param: str, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A string of at most `max_chars` (both chat formats' fields and blocks)."""
    if type(value) is not str:
        raise _invalid(param, f"`{param}` must be a string.")
    if len(value) > max_chars:
        raise _invalid(param, f"`{param}` exceeds {max_chars} characters.")
    return value


def object_value(value: object, param: str) -> dict[str, Any]:
    """A JSON object, or a 400 naming `param`."""
    if not isinstance(value, dict):
        raise _invalid(param, f"`{param}` must be an object.")
    return value


# --- Content -------------------------------------------------------------------------------


def _image(part: dict, param: str) -> ImagePart:
    spec = object_value(part.get("image_url"), f"{param}.image_url")
    url = spec.get("url")
    url_param = f"{param}.image_url.url"
    if type(url) is not str:
        raise _invalid(url_param, f"`{url_param}` must be a string.")
    if len(url) > MAX_IMAGE_URL_CHARS:
        raise _invalid(url_param, f"`{url_param}`: an image may be at most 20 MB.")
    if url.startswith("data:"):
        if _IMAGE_DATA.fullmatch(url) is None:
            raise _invalid(url_param, f"`{url_param}` must be a base64 `data:image/...` URL.")
    elif not url.startswith(("https://", "http://")) or len(url) > 8192:
        raise _invalid(url_param, f"`{url_param}` must be an http(s) URL or a data: URL.")
    detail = spec.get("detail")
    if detail is not None and detail not in DETAILS:
        raise _invalid(f"{param}.image_url.detail", "`detail` must be auto, low or high.")
    return ImagePart(url=url, detail=detail)


def _parts(content: list, param: str) -> tuple[str, tuple[ContentPart, ...] | None]:
    """(the text parts joined, every part when one is not text or has a cache_control)."""
    texts: list[str] = []
    parts: list[ContentPart] = []
    for index, part in enumerate(content):
        part_param = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = text_value(part.get("text"), f"{part_param}.text")
            texts.append(text)
            cache_control = part.get("cache_control")  # LiteLLM's: kept for Anthropic routes
            if cache_control is not None and not isinstance(cache_control, dict):
                raise _invalid(
                    f"{part_param}.cache_control",
                    f"`{part_param}.cache_control` must be an object.",
                )
            parts.append(TextPart(text, cache_control))
        elif kind == "image_url":
            parts.append(_image(part, part_param))
        elif kind in OTHER_PARTS:
            parts.append(OtherPart(type=kind, body=part))
        else:
            raise _invalid(
                f"{part_param}.type",
                f"`{part_param}.type` must be one of text, image_url, "
                + ", ".join(OTHER_PARTS)
                + f" (got {str(kind)[:40]!r}).",
            )
    rich = any(not isinstance(p, TextPart) or p.cache_control for p in parts)
    return "\n".join(texts), tuple(parts) if rich else None


def _content(
    content: object, param: str, *, required: bool
) -> tuple[str, tuple[ContentPart, ...] | None]:
    if content is None:
        if required:
            raise _invalid(param, f"`{param}` is required for this message.")
        return "", None
    if isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        raise _invalid(param, f"`{param}` must be a string or a list of content parts.")
    return _parts(content, param)


# --- Tool calls in messages ----------------------------------------------------------------


def _tool_call(value: object, param: str) -> ToolCall:
    call = object_value(value, param)
    call_id = text_value(call.get("id"), f"{param}.id", max_chars=MAX_ID_CHARS)
    if call.get("type", "function") != "function":
        raise _invalid(f"{param}.type", f"`{param}.type` must be function.")
    function = object_value(call.get("function"), f"{param}.function")
    name = tool_name(function.get("name"), f"{param}.function.name")
    arguments = text_value(function.get("arguments"), f"{param}.function.arguments")
    return ToolCall(id=call_id, name=name, arguments=arguments)


def _tool_calls(value: object, param: str) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid(param, f"`{param}` must be a list of tool calls.")
    return tuple(_tool_call(call, f"{param}[{i}]") for i, call in enumerate(value))


class _LegacyCalls:
    """Ids for legacy `function_call`s, which have none: each `function` message answers
    the latest call before it."""

    def __init__(self) -> None:
        self.latest: str | None = None

    def call(self, value: object, param: str, index: int) -> ToolCall:
        call = object_value(value, param)
        self.latest = f"call_legacy_{index}"
        return ToolCall(
            id=self.latest,
            name=tool_name(call.get("name"), f"{param}.name"),
            arguments=text_value(call.get("arguments"), f"{param}.arguments"),
        )


# --- Messages ------------------------------------------------------------------------------


def parse_messages(raw: object, *, param: str = "messages") -> tuple[ChatMessage, ...]:
    """Validate a messages list (OpenAI's format) into the pipeline's messages."""
    if not isinstance(raw, list) or not raw:
        raise _invalid(param, f"`{param}` must be a non-empty list of messages.")
    if len(raw) > MAX_MESSAGES:
        raise _invalid(param, f"`{param}` may hold at most {MAX_MESSAGES} messages.")
    messages = []
    total = images = 0
    legacy = _LegacyCalls()
    for index, message in enumerate(raw):
        at = f"{param}[{index}]"
        message = object_value(message, at)
        message_, text_chars = _message(message, at, index, legacy)
        total += text_chars
        images += sum(isinstance(p, ImagePart) for p in message_.parts or ())
        messages.append(message_)
    if total > MAX_TEXT_CHARS:
        raise _invalid(param, f"The messages exceed {MAX_TEXT_CHARS} characters of text.")
    if images > MAX_IMAGES:
        raise _invalid(param, f"At most {MAX_IMAGES} images per request.")
    return tuple(messages)


def _message(message: dict, at: str, index: int, legacy: _LegacyCalls) -> tuple[ChatMessage, int]:
    role_name = message.get("role")
    if role_name == "function":  # legacy: the result of a function_call
        content, _ = _content(message.get("content"), f"{at}.content", required=True)
        call_id = legacy.latest or f"call_legacy_{index}"
        return ChatMessage(role="tool", content=content, tool_call_id=call_id), len(content)
    role = ROLES.get(role_name) if isinstance(role_name, str) else None
    if role is None:
        raise _invalid(
            f"{at}.role",
            f"`{at}.role` must be one of system, developer, user, assistant, tool.",
        )
    name = message.get("name")
    if name is not None and type(name) is not str:
        raise _invalid(f"{at}.name", f"`{at}.name` must be a string.")
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id = None
    if role == "assistant":
        tool_calls = _tool_calls(message.get("tool_calls"), f"{at}.tool_calls")
        if message.get("function_call") is not None:
            tool_calls += (legacy.call(message["function_call"], f"{at}.function_call", index),)
    elif message.get("tool_calls") is not None:
        raise _invalid(f"{at}.tool_calls", "Only assistant messages carry `tool_calls`.")
    if role == "tool":
        if message.get("tool_call_id") is None:
            raise _invalid(
                f"{at}.tool_call_id",
                f"`{at}.tool_call_id` is required: the id of the tool call it answers.",
            )
        tool_call_id = text_value(
            message.get("tool_call_id"), f"{at}.tool_call_id", max_chars=MAX_ID_CHARS
        )
    # OpenAI requires content of every message but an assistant's (it may hold only calls).
    content, parts = _content(message.get("content"), f"{at}.content", required=role != "assistant")
    if parts is not None and role != "user" and any(isinstance(p, ImagePart) for p in parts):
        raise _invalid(f"{at}.content", "Only user messages may carry images.")
    message_ = ChatMessage(
        role=role,
        content=content,
        parts=parts,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id,
        name=name,
    )
    return message_, len(content) + sum(len(c.arguments) for c in tool_calls)


# --- Tools ---------------------------------------------------------------------------------


def tool_name(value: object, param: str) -> str:
    """A function name as OpenAI accepts it (Anthropic's rule is the same)."""
    if type(value) is not str or TOOL_NAME.fullmatch(value) is None:
        raise _invalid(param, f"`{param}` must be 1 to 64 letters, digits, '_' or '-'.")
    return value


def _function(spec: object, param: str) -> Tool:
    function = object_value(spec, param)
    name = tool_name(function.get("name"), f"{param}.name")
    description = function.get("description")
    if description is not None:
        text_value(description, f"{param}.description", max_chars=100_000)
    parameters = function.get("parameters")
    if parameters is not None:
        parameters = object_value(parameters, f"{param}.parameters")
        problem = schema_problem(parameters)
        if problem is not None:
            raise _invalid(f"{param}.parameters", problem)
    strict = function.get("strict")
    if strict is not None and type(strict) is not bool:
        raise _invalid(f"{param}.strict", f"`{param}.strict` must be a boolean.")
    return Tool(name=name, description=description, parameters=parameters, strict=strict)


def parse_tools(raw: object, *, param: str = "tools") -> tuple[Tool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _invalid(param, f"`{param}` must be a list of tools.")
    if len(raw) > MAX_TOOLS:
        raise _invalid(param, f"`{param}` may hold at most {MAX_TOOLS} tools.")
    tools = []
    for index, tool in enumerate(raw):
        at = f"{param}[{index}]"
        tool = object_value(tool, at)
        if tool.get("type") != "function":
            raise _invalid(f"{at}.type", f"`{at}.type` must be function.")
        tools.append(_function(tool.get("function"), f"{at}.function"))
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise _invalid(param, f"`{param}`: tool names must be unique.")
    return tuple(tools)


def parse_tool_choice(
    raw: object, tools: tuple[Tool, ...], *, param: str = "tool_choice"
) -> ToolChoice | None:
    return check_tool_choice(tool_choice_form(raw, param=param), tools, param=param)


def tool_choice_form(raw: object, *, param: str = "tool_choice") -> ToolChoice | None:
    """A tool choice's own shape, before it is checked against the tools
    (`check_tool_choice`): `/execute` parses each field alone, then the two together."""
    if raw is None:
        return None
    if isinstance(raw, str):
        if raw not in TOOL_CHOICE_MODES:
            raise _invalid(param, f"`{param}` must be auto, none, required or a function.")
        return ToolChoice(mode=raw)
    choice = object_value(raw, param)
    if choice.get("type") != "function":
        raise _invalid(f"{param}.type", f"`{param}.type` must be function.")
    function = object_value(choice.get("function"), f"{param}.function")
    return ToolChoice(
        mode="function", name=tool_name(function.get("name"), f"{param}.function.name")
    )


def check_tool_choice(
    choice: ToolChoice | None, tools: tuple[Tool, ...], *, param: str = "tool_choice"
) -> ToolChoice | None:
    """A tool choice needs tools, and the function it names must be one of them."""
    if choice is None:
        return None
    if not tools:
        raise _invalid(param, f"`{param}` is only allowed with `tools`.")
    if choice.name is not None and choice.name not in {t.name for t in tools}:
        raise _invalid(f"{param}.function.name", f"No tool named {choice.name!r} in `tools`.")
    return choice


def legacy_tools(body: dict) -> tuple[tuple[Tool, ...], ToolChoice | None]:
    """Legacy `functions` and `function_call`, as the tools they became."""
    raw = body.get("functions")
    if not isinstance(raw, list):
        raise _invalid("functions", "`functions` must be a list of functions.")
    if len(raw) > MAX_TOOLS:
        raise _invalid("functions", f"`functions` may hold at most {MAX_TOOLS} functions.")
    tools = tuple(_function(spec, f"functions[{i}]") for i, spec in enumerate(raw))
    choice = body.get("function_call")
    if choice is None:
        return tools, None
    if isinstance(choice, str):
        if choice not in ("auto", "none"):
            raise _invalid("function_call", "`function_call` must be auto, none or a function.")
        return tools, ToolChoice(mode=choice)
    name = tool_name(object_value(choice, "function_call").get("name"), "function_call.name")
    if name not in {t.name for t in tools}:
        raise _invalid("function_call.name", f"No function named {name!r} in `functions`.")
    return tools, ToolChoice(mode="function", name=name)
