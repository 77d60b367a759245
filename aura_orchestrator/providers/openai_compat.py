"""OpenAI Chat Completions wire format (OpenAI itself and the many servers that copy it)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx

from .base import (
    ChatMessage,
    CompletionRequest,
    CompletionResult,
    ContentPart,
    EmbeddingRequest,
    EmbeddingResult,
    ImagePart,
    OtherPart,
    ProviderConfig,
    ProviderKindSpec,
    Refusal,
    StreamChunk,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)
from .chunks import passthrough_of
from .http import (
    Sender,
    aclosing_response,
    bad_response,
    error_for_stream_event,
    iter_sse,
    json_body,
    json_request,
    parse_event_json,
    raise_for_status,
    send,
    translate_transport_errors,
)


class OpenAICompatAdapter:
    spec = ProviderKindSpec(
        kind="openai",
        label="OpenAI-compatible (chat completions)",
        price_catalogue="openai",
        native_json_schema=True,
    )

    async def complete(
        self, client: Sender, config: ProviderConfig, request: CompletionRequest
    ) -> CompletionResult:
        with translate_transport_errors(config, request.timeout_seconds):
            response = await send(
                client,
                _post(config, request, stream=False),
            )
            await raise_for_status(config, response)
        return parse_completion(config, json_body(config, response), request, response.status_code)

    async def stream(
        self, client: Sender, config: ProviderConfig, request: CompletionRequest
    ) -> AsyncGenerator[StreamChunk, None]:
        finished = False
        with translate_transport_errors(config, request.timeout_seconds):
            response = await send(
                client,
                _post(config, request, stream=True),
                stream=True,
            )
            async with aclosing_response(response):
                await raise_for_status(config, response)
                async for event in iter_sse(response):
                    if event.data.strip() == "[DONE]":
                        return
                    chunk = parse_event_json(config, event.data)
                    if "error" in chunk:
                        raise error_for_stream_event(config, chunk)
                    parsed = _stream_chunk(chunk)
                    finished = finished or parsed.finish_reason is not None
                    yield parsed
        # Some compatible servers omit [DONE]; a stream cut before any finish_reason is broken.
        if not finished:
            raise bad_response(config, "stream ended before [DONE]")

    def refusal(self, request: CompletionRequest) -> Refusal | None:
        # The chat-completions format itself: everything is passed on, but Anthropic's
        # extended thinking, which no chat-completions server takes.
        if request.extra.get("thinking") is not None:
            return Refusal("thinking", "Extended `thinking` is served by Anthropic routes only.")
        return None

    async def embed(
        self, client: Sender, config: ProviderConfig, request: EmbeddingRequest
    ) -> EmbeddingResult:
        with translate_transport_errors(config, request.timeout_seconds):
            response = await send(
                client,
                json_request(
                    _url(config, "/embeddings"),
                    embedding_body(request),
                    headers=_headers(config),
                    timeout=request.timeout_seconds,
                ),
            )
            await raise_for_status(config, response)
        return parse_embeddings(config, json_body(config, response), request, response.status_code)

    async def list_models(self, client: httpx.AsyncClient, config: ProviderConfig) -> list[str]:
        with translate_transport_errors(config, 30.0):
            response = await client.get(
                _url(config, "/models"), headers=_headers(config), timeout=httpx.Timeout(30.0)
            )
            await raise_for_status(config, response)
        data = json_body(config, response).get("data")
        if not isinstance(data, list):
            raise bad_response(config, "models response has no data list", response.status_code)
        return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]


def request_body(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body: only the parameters the caller set, so upstream defaults apply
    otherwise. Fields the pipeline does not read (`extra`) go first, verbatim: ours win."""
    body: dict[str, Any] = {
        **request.extra,
        "model": request.model,
        "messages": [message_body(m) for m in request.messages],
    }
    optional = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "stop": list(request.stop) if request.stop is not None else None,
        "response_format": request.response_format,
        "n": request.n,
        "user": request.user,
        "parallel_tool_calls": request.parallel_tool_calls,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if request.tools:
        body["tools"] = [tool_body(t) for t in request.tools]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.mode == "function"
            else choice.mode
        )
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def embedding_body(request: EmbeddingRequest) -> dict[str, Any]:
    """The embeddings body: the fields set, after the verbatim ones (ours win)."""
    optional = {
        "dimensions": request.dimensions,
        "encoding_format": request.encoding_format,
        "user": request.user,
    }
    return {
        **request.extra,
        "model": request.model,
        "input": request.input,
        **{key: value for key, value in optional.items() if value is not None},
    }


def parse_embeddings(
    config: ProviderConfig, body: dict[str, Any], request: EmbeddingRequest, status: int
) -> EmbeddingResult:
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise bad_response(config, "embeddings response has no data list", status)
    usage = body.get("usage")
    tokens_in = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return EmbeddingResult(
        data=data,
        usage=Usage(tokens_in, 0) if isinstance(tokens_in, int) else None,
        model=str(body.get("model") or request.model),
    )


def message_body(message: ChatMessage) -> dict[str, Any]:
    """OpenAI's message. Dropped: Anthropic's thinking blocks (the model's own reasoning,
    not input) and cache_control markers (OpenAI caches prompts by itself)."""
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    parts = [p for p in message.parts or () if not (isinstance(p, OtherPart) and p.thinking)]
    if parts:
        body["content"] = [part_body(p) for p in parts]
    if message.tool_calls:
        body["tool_calls"] = [c.body() for c in message.tool_calls]
        if not message.content:
            body["content"] = None
    if message.tool_call_id is not None:
        body["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        body["name"] = message.name
    return body


def part_body(part: ContentPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        image: dict[str, Any] = {"url": part.url}
        if part.detail is not None:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    return part.body


def tool_body(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def parse_completion(
    config: ProviderConfig, body: dict[str, Any], request: CompletionRequest, status: int
) -> CompletionResult:
    choice = _first_choice(body)
    message = choice.get("message") if choice is not None else None
    if choice is None or not isinstance(message, dict):
        raise bad_response(config, "response has no choices[0].message", status)
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise bad_response(config, "choices[0].message.content is not text", status)
    try:
        tool_calls = tuple(_tool_call(call) for call in message.get("tool_calls") or ())
    except (TypeError, KeyError, AttributeError):
        raise bad_response(config, "choices[0].message.tool_calls are malformed", status) from None
    choices = body["choices"]
    rich = (
        len(choices) > 1
        or tool_calls
        or message.get("function_call")
        or message.get("refusal")
        or choice.get("logprobs")
    )
    return CompletionResult(
        content=content or "",  # null for refusals and tool calls
        usage=parse_usage(body.get("usage")),
        model=str(body.get("model") or request.model),
        finish_reason=choice.get("finish_reason"),
        raw=body,
        tool_calls=tool_calls,
        choices=tuple(choices) if rich else (),
        passthrough=passthrough_of(body),
    )


def _tool_call(call: dict[str, Any]) -> ToolCall:
    function = call["function"]
    arguments = function.get("arguments")
    return ToolCall(
        id=str(call["id"]),
        name=str(function["name"]),
        arguments=arguments if isinstance(arguments, str) else "",
    )


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    tokens_in, tokens_out = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if not isinstance(tokens_in, int) or not isinstance(tokens_out, int):
        return None
    cached = _detail(raw, "prompt_tokens_details", "cached_tokens")
    reasoning = _detail(raw, "completion_tokens_details", "reasoning_tokens")
    return Usage(tokens_in, tokens_out, cached, reasoning)


def _detail(usage: dict[str, Any], group: str, name: str) -> int:
    details = usage.get(group)
    value = details.get(name) if isinstance(details, dict) else None
    return value if isinstance(value, int) else 0


def _url(config: ProviderConfig, path: str) -> str:
    return config.base_url.rstrip("/") + path


def _headers(config: ProviderConfig) -> dict[str, str]:
    headers: dict[str, str] = {}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    headers.update(config.extra_headers)
    return headers


def _first_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    """Choice 0: with n > 1 the other choices stay available in `raw`."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


def _stream_chunk(chunk: dict[str, Any]) -> StreamChunk:
    choice = _first_choice(chunk)
    delta = choice.get("delta") if choice is not None else None
    text = delta.get("content") if isinstance(delta, dict) else None
    return StreamChunk(
        delta=text if isinstance(text, str) else "",
        finish_reason=choice.get("finish_reason") if choice is not None else None,
        usage=parse_usage(chunk.get("usage")),
        raw=chunk,
    )


def _post(config: ProviderConfig, request: CompletionRequest, *, stream: bool) -> httpx.Request:
    return json_request(
        _url(config, "/chat/completions"),
        request_body(request, stream=stream),
        headers=_headers(config),
        timeout=request.timeout_seconds,
    )
