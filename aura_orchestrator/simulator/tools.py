"""Tool use, whatever the kind: when the fake upstream calls tools, which, with what.

Each kind reads its own request format into a `ToolTurn`; the decision and the arguments
are made here once, so OpenAI and Anthropic answer the same conversation alike.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

from .examples import example_for_schema

_CALLS_MARKER = re.compile(r"\[\[tool_calls:(\d+)\]\]")


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: Any  # a minimal instance of the tool's parameters schema

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments)


@dataclass(frozen=True, slots=True)
class ToolTurn:
    """What a request says about tools, read from a kind's own format."""

    tools: tuple[tuple[str, dict], ...] = ()  # (name, JSON schema of the arguments), in order
    forced: str | None = None  # the one tool tool_choice names
    allowed: bool = True  # tool_choice is not "none"
    parallel: bool = True  # several calls in one answer may be made
    user_turn: bool = False  # the last message is the user's own (not tool results)
    results: tuple[str, ...] | None = None  # the tool results the last message hands back


def tool_calls(turn: ToolTurn, last_user: str) -> tuple[ToolCall, ...]:
    """The calls to answer with: none unless tools are offered, allowed and the user spoke
    last; one (the forced tool or the first), or N cycling through the tools in order for
    the marker `[[tool_calls:N]]` when parallel calls are allowed."""
    if not (turn.tools and turn.allowed and turn.user_turn):
        return ()
    schemas = dict(turn.tools)
    names = [turn.forced] if turn.forced in schemas else list(schemas)
    marker = _CALLS_MARKER.search(last_user)
    count = int(marker.group(1)) if marker and turn.parallel else 1
    return tuple(
        ToolCall(name, example_for_schema(schemas[name]))
        for name in islice(cycle(names), max(count, 1))
    )


def results_text(results: tuple[str, ...]) -> str:
    return "Tool results: " + " | ".join(results)


def fragments(text: str, parts: int = 3) -> list[str]:
    """About `parts` pieces that concatenate back to `text`: streamed arguments."""
    size = max(1, math.ceil(len(text) / parts))
    return [text[start : start + size] for start in range(0, len(text), size)] or [text]
