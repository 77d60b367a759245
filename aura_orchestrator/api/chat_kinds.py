"""`/execute`'s chat fields (`messages`, `tools`, `tool_choice`) as Kinds of its table
(`api/fields.py`): each delegates to the chat parser (`api/chat.py`), the one definition
of the format the gateway parses too, and records the parser's complaint under the path
it names (`messages[0].content`), with the shared OpenAPI schema (`api/chat_schema.py`)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from aura_orchestrator import errors
from aura_orchestrator.api import chat, chat_schema
from aura_orchestrator.api.fields import Kind, Problems, SchemaRef, record
from aura_orchestrator.api.jsonbody import Path, field_path


@dataclass(frozen=True)
class Chat(Kind):
    """A field the chat parser reads: `parser(value, param=<the field's path>)`."""

    parser: Callable[..., Any]
    openapi: dict[str, Any]
    leaf: ClassVar[bool] = False  # it needs its path: the parser names paths inside it

    def parse(self, value: object, path: Path, problems: Problems) -> Any:
        try:
            return self.parser(value, param=field_path(path))
        except errors.InvalidRequest as exc:
            record(problems, exc.details["param"], exc.message)
            return None

    def schema(self, ref: SchemaRef) -> dict:
        return dict(self.openapi)


MESSAGES = Chat(chat.parse_messages, chat_schema.MESSAGES)
TOOLS = Chat(chat.parse_tools, chat_schema.TOOLS)
# Its own shape only: that it names one of `tools` is the execute table's rule.
TOOL_CHOICE = Chat(chat.tool_choice_form, chat_schema.TOOL_CHOICE)


def tool_choice_problem(data: dict) -> tuple[str, str] | None:
    """The tool choice checked against the tools (a table `rule`)."""
    try:
        chat.check_tool_choice(data.get("tool_choice"), data.get("tools") or ())
    except errors.InvalidRequest as exc:
        return exc.details["param"], exc.message
    return None
