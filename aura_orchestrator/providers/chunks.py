"""OpenAI stream chunks and whole choices, each rebuilt from the other.

`ChoicesAssembler` reassembles `chat.completion.chunk` dicts into choices the way the
SDKs do (text concatenated, tool calls by index with their argument fragments joined,
logprobs appended, LiteLLM's `reasoning_content` pieces and `thinking_blocks` joined into
whole thinking blocks), so a streamed answer is cached and recorded like a complete one.
`replay_deltas` turns choices back into deltas, to replay a cached answer as a stream.
`passthrough_of` picks what an answer (or a chunk) carries that we pass back as sent.
"""

from typing import Any


class _Choice:
    __slots__ = (
        "content",
        "finish_reason",
        "logprobs",
        "reasoning",
        "refusal",
        "thinking",
        "thinking_blocks",
        "tool_calls",
    )

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []  # every reasoning_content piece
        self.thinking: list[str] = []  # the pieces of the thinking block not yet signed
        self.thinking_blocks: list[dict[str, Any]] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.logprobs: list[Any] | None = None
        self.finish_reason: str | None = None

    def feed(self, choice: dict[str, Any]) -> bool:
        """Take one chunk's choice; True when it holds more than text."""
        rich = False
        delta = choice.get("delta") or {}
        if isinstance(delta.get("content"), str):
            self.content.append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            self.refusal.append(delta["refusal"])
            rich = True
        for call in delta.get("tool_calls") or ():
            self._call(call)
            rich = True
        if isinstance(delta.get("reasoning_content"), str):
            self.reasoning.append(delta["reasoning_content"])
            self.thinking.append(delta["reasoning_content"])
            rich = True
        for block in delta.get("thinking_blocks") or ():
            self._thinking_block(block)
            rich = True
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            self.logprobs = (self.logprobs or []) + list(logprobs.get("content") or ())
            rich = True
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        return rich

    def _call(self, call: dict[str, Any]) -> None:
        index = call.get("index", 0)
        known = self.tool_calls.setdefault(
            index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if call.get("id"):
            known["id"] = call["id"]
        function = call.get("function") or {}
        if function.get("name"):
            known["function"]["name"] += function["name"]
        if function.get("arguments"):
            known["function"]["arguments"] += function["arguments"]

    def _thinking_block(self, block: dict[str, Any]) -> None:
        """A signed thinking block with no text holds the pieces streamed before it."""
        if block.get("type") == "thinking" and not block.get("thinking"):
            block = {**block, "thinking": "".join(self.thinking)}
        self.thinking.clear()
        self.thinking_blocks.append(block)

    def body(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.content) if self.content or not self.tool_calls else None,
            "refusal": "".join(self.refusal) if self.refusal else None,
        }
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.thinking_blocks:
            message["thinking_blocks"] = self.thinking_blocks
        return {
            "index": index,
            "message": message,
            "logprobs": None if self.logprobs is None else {"content": self.logprobs},
            "finish_reason": self.finish_reason,
        }


class ChoicesAssembler:
    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}
        self._rich = False

    def feed(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _Choice()
                self._rich = self._rich or index != 0
            self._rich = state.feed(choice) or self._rich

    def choices(self) -> tuple[dict[str, Any], ...]:
        """Every choice, in OpenAI's shape; () for one plain text choice."""
        if not self._rich:
            return ()
        return tuple(self._choices[i].body(i) for i in sorted(self._choices))


def replay_deltas(choice: dict[str, Any], *, chunk_chars: int) -> list[dict[str, Any]]:
    """A whole choice as the deltas of a stream (each an OpenAI chunk's choice): the role,
    its thinking blocks (text in pieces, then the signature), its text in pieces, each
    tool call whole, then the finish."""
    index = choice.get("index", 0)
    message = choice.get("message") or {}
    # As OpenAI opens: an empty text, or null content when the answer is only tool calls.
    content = message.get("content")
    first = {"role": "assistant", "content": None if content is None else ""}
    deltas = [{"index": index, "delta": first, "finish_reason": None}]

    def add(delta: dict[str, Any]) -> None:
        deltas.append({"index": index, "delta": delta, "finish_reason": None})

    for block in message.get("thinking_blocks") or ():
        thinking = block.get("thinking") if block.get("type") == "thinking" else None
        if isinstance(thinking, str) and thinking:
            for piece in _pieces(thinking, chunk_chars):
                add({"reasoning_content": piece})
            block = {**block, "thinking": ""}
        add({"thinking_blocks": [block]})
    for piece in _pieces(content or "", chunk_chars):
        add({"content": piece})
    if choice.get("logprobs") is not None:
        deltas[-1]["logprobs"] = choice["logprobs"]
    for position, call in enumerate(message.get("tool_calls") or ()):
        deltas.append(
            {
                "index": index,
                "delta": {"tool_calls": [{"index": position, **call}]},
                "finish_reason": None,
            }
        )
    deltas.append({"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")})
    return deltas


def _pieces(text: str, size: int) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


# Top-level answer fields passed back to the client as the provider sent them.
PASSTHROUGH = ("system_fingerprint", "service_tier")
USAGE_DETAILS = ("prompt_tokens_details", "completion_tokens_details")


def passthrough_of(body: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion's (or a chunk's) fields we do not produce ourselves: the
    fingerprint, the service tier, the usage details (cached and reasoning tokens)."""
    fields = {key: body[key] for key in PASSTHROUGH if body.get(key) is not None}
    usage = body.get("usage")
    if isinstance(usage, dict):
        details = {key: usage[key] for key in USAGE_DETAILS if isinstance(usage.get(key), dict)}
        if details:
            fields["usage"] = details
    return fields
