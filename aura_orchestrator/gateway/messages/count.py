"""`/v1/messages/count_tokens`: the provider's exact count when the model's first route is
Anthropic-kind, else our own estimate (the one the worst case reserves)."""

import logging
from collections.abc import Mapping
from typing import Any

from aura_orchestrator.catalog.selectors import route_chain_resolve
from aura_orchestrator.catalog.tokens import count_chat_tokens
from aura_orchestrator.db import db
from aura_orchestrator.gateway.messages.translate import messages_call_from
from aura_orchestrator.gateway.translate import MAX_TOKENS_LIMIT
from aura_orchestrator.pipeline.wire import provider_config
from aura_orchestrator.providers import anthropic
from aura_orchestrator.providers.base import CompletionRequest, ProviderError
from aura_orchestrator.providers.http import get_transport

logger = logging.getLogger(__name__)

COUNT_TIMEOUT_SECONDS = 30.0


async def count_tokens(body: object, headers: Mapping[str, str]) -> dict[str, Any]:
    if isinstance(body, dict) and body.get("max_tokens") is None:
        body = {**body, "max_tokens": MAX_TOKENS_LIMIT}  # count_tokens takes none
    operation = messages_call_from(body=body, headers=headers, default_session="count").operation
    route = (await db(route_chain_resolve, provider_names=None, model=operation.model))[0]
    if route.kind == anthropic.AnthropicAdapter.spec.kind:
        request = CompletionRequest(
            model=route.model_name,
            messages=operation.messages,
            tools=operation.tools,
            tool_choice=operation.tool_choice,
            parallel_tool_calls=operation.parallel_tool_calls,
            extra=operation.extra,
            headers=operation.provider_headers,
            timeout_seconds=COUNT_TIMEOUT_SECONDS,
        )
        try:
            tokens = await anthropic.count_tokens(get_transport(), provider_config(route), request)
        except ProviderError as exc:  # an estimate beats no answer
            logger.warning("count_tokens of %s failed: %s", route.provider_name, exc.message)
        else:
            return {"input_tokens": tokens, "estimate": False}
    tokens = count_chat_tokens(
        operation.messages, tools=operation.tools, model=route.model_name, kind=route.kind
    )
    return {"input_tokens": tokens, "estimate": True}
