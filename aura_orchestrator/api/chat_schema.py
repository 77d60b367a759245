"""The chat format's OpenAPI schemas (messages, tools, tool choice), beside its parser
(`api/chat.py`): `/execute`'s request table and the gateway's request schema both use
them, so the two fronts document the one format once.

What is written here the parser accepts: a schema may leave out what the parser also
takes (it is narrower), never the reverse. What JSON Schema cannot say (tool names unique,
a tool choice naming one of `tools`) is in the descriptions.
"""

from typing import Any

from aura_orchestrator.api import chat

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_ID: Schema = {"type": "string", "maxLength": chat.MAX_ID_CHARS}
TOOL_NAME: Schema = {"type": "string", "pattern": f"^{chat.TOOL_NAME.pattern}$"}


def _object(properties: dict[str, Schema], *required: str, **more: Any) -> Schema:
    """An object with these properties; others are allowed (and ignored by the parser)."""
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema | more


def _kind(name: str) -> Schema:
    return {"type": "string", "enum": [name]}


TEXT_PART = _object({"type": _kind("text"), "text": _STRING}, "type", "text")
IMAGE_PART = _object(
    {
        "type": _kind("image_url"),
        "image_url": _object(
            {
                "url": {
                    "type": "string",
                    "maxLength": 8192,
                    "pattern": r"^(https?://|data:image/[a-zA-Z0-9.+-]+;base64,[A-Za-z0-9+/=]*$)",
                    "description": "An http(s) URL or a base64 `data:image/…` URL (up to 20 MB).",
                },
                "detail": {"type": "string", "enum": list(chat.DETAILS)},
            },
            "url",
        ),
    },
    "type",
    "image_url",
)
AUDIO_PART = _object(
    {
        "type": _kind("input_audio"),
        "input_audio": _object({"data": _STRING, "format": _STRING}, "data", "format"),
    },
    "type",
    "input_audio",
    description="Passed on verbatim (OpenAI-compatible kinds only).",
)
FILE_PART = _object(
    {
        "type": _kind("file"),
        "file": _object({"file_id": _STRING, "file_data": _STRING, "filename": _STRING}),
    },
    "type",
    "file",
    description="Passed on verbatim (OpenAI-compatible kinds only).",
)
REFUSAL_PART = _object({"type": _kind("refusal"), "refusal": _STRING}, "type", "refusal")


def _content(*parts: Schema, nullable: bool = False) -> Schema:
    schema: Schema = {
        "oneOf": [_STRING, {"type": "array", "items": {"oneOf": list(parts)}}],
        "description": "A string, or parts (their text joined by newlines).",
    }
    if nullable:
        schema["nullable"] = True
    return schema


FUNCTION_CALL = _object(
    {"name": TOOL_NAME, "arguments": {"type": "string", "description": "JSON text."}},
    "name",
    "arguments",
)
TOOL_CALL = _object(
    {"id": _ID, "type": _kind("function"), "function": FUNCTION_CALL}, "id", "function"
)


def _message(role: Schema, properties: dict[str, Schema], *required: str, **more: Any) -> Schema:
    return _object({"role": role, "name": _STRING, **properties}, "role", *required, **more)


MESSAGE: Schema = {
    "oneOf": [
        _message(
            {"type": "string", "enum": ["system", "developer"]},
            {"content": _content(TEXT_PART)},
            "content",
            description="`developer` is treated as `system`.",
        ),
        _message(
            _kind("user"),
            {"content": _content(TEXT_PART, IMAGE_PART, AUDIO_PART, FILE_PART)},
            "content",
        ),
        _message(
            _kind("assistant"),
            {
                "content": _content(TEXT_PART, REFUSAL_PART, nullable=True),
                "refusal": {"type": "string", "nullable": True},
                "tool_calls": {"type": "array", "items": TOOL_CALL},
                "function_call": FUNCTION_CALL | {"nullable": True},
            },
            description="`content` may be left out when the message holds tool calls; the "
            "legacy `function_call` becomes a tool call.",
        ),
        _message(
            _kind("tool"),
            {"content": _content(TEXT_PART), "tool_call_id": _ID},
            "content",
            "tool_call_id",
            description="The result of the assistant's tool call `tool_call_id`.",
        ),
        _message(
            _kind("function"),
            {"content": _STRING},
            "content",
            description="Legacy: the result of the latest `function_call` before it.",
        ),
    ]
}
MESSAGES: Schema = {
    "type": "array",
    "items": MESSAGE,
    "minItems": 1,
    "maxItems": chat.MAX_MESSAGES,
    "description": f"At most {chat.MAX_TEXT_CHARS} characters of text and "
    f"{chat.MAX_IMAGES} images in all; only user messages carry images.",
}
FUNCTION: Schema = _object(
    {
        "name": TOOL_NAME,
        "description": {"type": "string", "maxLength": 100_000},
        "parameters": {
            "type": "object",
            "additionalProperties": {},
            "description": "The arguments' JSON Schema.",
        },
        "strict": {"type": "boolean"},
    },
    "name",
)
TOOLS: Schema = {
    "type": "array",
    "items": _object({"type": _kind("function"), "function": FUNCTION}, "type", "function"),
    "maxItems": chat.MAX_TOOLS,
    "description": "Function tools; their names must be unique.",
}
TOOL_CHOICE: Schema = {
    "oneOf": [
        {"type": "string", "enum": list(chat.TOOL_CHOICE_MODES)},
        _object(
            {"type": _kind("function"), "function": _object({"name": TOOL_NAME}, "name")},
            "type",
            "function",
        ),
    ],
    "description": "Only with `tools`; a function it names must be one of them.",
}
FUNCTIONS: Schema = {
    "type": "array",
    "items": FUNCTION,
    "maxItems": chat.MAX_TOOLS,
    "description": "Legacy `tools` (not with `tools`); answered with `function_call`.",
}
FUNCTION_CHOICE: Schema = {
    "oneOf": [
        {"type": "string", "enum": ["auto", "none"]},
        _object({"name": TOOL_NAME}, "name"),
    ],
    "description": "Legacy `tool_choice`: only with `functions`, naming one of them.",
}
