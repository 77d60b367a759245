"""The optimiser's own LLM calls: through the pipeline, on its own daily session with a
token budget, so they are cached, capped, retried and visible in telemetry like any call."""

import json
import math

from django.utils import timezone

from aura_orchestrator import pipeline
from aura_orchestrator.optimization.history import OPTIMIZER_SOURCE, setting
from aura_orchestrator.providers.base import ChatMessage
from budgets.services import Caps
from presets.operation_types import OperationType

SESSION_PREFIX = "optimizer"


def session_id() -> str:
    """One session per project and day: its token cap is the optimiser's daily budget."""
    return f"{SESSION_PREFIX}-{timezone.now().date().isoformat()}"


async def ask(
    *,
    principal: pipeline.Principal,
    system: str,
    prompt: str,
    provider: str | None,
    max_tokens: int,
    response_schema: dict | None = None,
) -> pipeline.OperationResult:
    providers = provider or setting("OPTIMIZER_PROVIDER", None)
    request = pipeline.OperationRequest(
        session_id=session_id(),
        operation_type=OperationType.COMPLETION,
        messages=(
            ChatMessage(role="system", content=system),
            ChatMessage(role="user", content=prompt),
        ),
        caps=Caps.inline(
            max_tokens_per_operation=setting("OPTIMIZER_LLM_MAX_TOKENS_PER_CALL", 8000),
            max_tokens_per_session=setting("OPTIMIZER_LLM_DAILY_TOKENS", 500_000),
            enforce_hard_limits=True,
        ),
        overrides=pipeline.PresetOverrides(
            temperature=0.2, max_tokens=max_tokens, timeout_seconds=30.0, max_retries=1
        ),
        providers=(providers,) if providers else None,
        response_schema=response_schema,
        source=OPTIMIZER_SOURCE,
    )
    return await pipeline.execute(request, principal=principal)


def parse_json_object(content: str | None) -> dict:
    """The JSON object of an answer (a ```json fence tolerated); ValueError otherwise."""
    text = (content or "").strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[-1].rsplit("```", 1)[0]
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the answer is not JSON ({str(exc)[:80]})") from exc
    if not isinstance(document, dict):
        raise ValueError("the answer is not a JSON object")
    return document


def finite_number(document: dict, name: str) -> float:
    value = document.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"`{name}` is missing or not a number")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` is not a finite number")
    return float(value)


def plain_text(value: object, limit: int) -> str:
    """Text safe to show: control characters dropped, whitespace folded, length bounded."""
    text = value if isinstance(value, str) else ""
    text = "".join(c if c.isprintable() or c in "\n" else " " for c in text)
    return " ".join(text.split())[:limit]
