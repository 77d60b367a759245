"""What every simulated kind shares: the reply to give, and the shape a kind gives it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from aura_orchestrator.providers.base import ProviderKindSpec

from .tools import ToolCall, ToolTurn


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer, before a kind's wire format dresses it."""

    content: str
    tokens_in: int
    tokens_out: int
    truncated: bool  # max_tokens cut the answer short
    tool_calls: tuple[ToolCall, ...] = ()  # made instead of a text answer (content "")
    cache_read: int = 0  # prompt tokens read from the cache (marker [[cache:R,W]])
    cache_write: int = 0  # prompt tokens written to it (Anthropic only)
    thinking: str | None = None  # extended thinking's text, when the request enabled it
    usage_at_end_only: bool = False  # Anthropic streams: the usage only in message_delta


# (model, reply, serial, request body) -> what the kind sends back
Answer = Callable[[str, Reply, int, dict], dict]
Events = Callable[[str, Reply, int, dict], list[str]]


@dataclass(frozen=True, slots=True)
class WireShape:
    """How the fake upstream speaks one provider kind; `kinds.SHAPES` keys it by the
    declaration of the adapter it stands in for."""

    spec: ProviderKindSpec  # the adapter's declaration (providers/registry.py)
    path: str  # where completions are POSTed
    base_path: str  # what a provider's base_url adds to the server's URL
    prompt_outside_messages: Callable[[dict], str]  # e.g. Anthropic's `system`
    tool_turn: Callable[[dict], ToolTurn]  # what the body says about tools, in its format
    answer: Answer  # the body of a non-streamed answer
    events: Events  # the SSE events of a stream, already framed
    error: Callable[[int, str | None], dict]  # (status, message) -> the kind's error body
    thinks: Callable[[dict], bool] = lambda body: False  # does the body ask for thinking?


def pieces(content: str) -> list[str]:
    """Word-sized stream deltas that concatenate back to the content."""
    return re.findall(r"\s*\S+\s*", content) or [content]


def message_text(content: object) -> str:
    """Text of an OpenAI or Anthropic message content (a string or a list of parts), the
    text of Anthropic's tool_result blocks included."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(part) for part in content if isinstance(part, dict))
    return ""


def _part_text(part: dict) -> str:
    if part.get("type") == "tool_result":
        return message_text(part.get("content"))
    return str(part.get("text", ""))
