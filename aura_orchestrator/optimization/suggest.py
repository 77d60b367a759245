"""The entry point: telemetry where history is large enough, else rules; then, when
asked, an LLM's suggestion that falls back to those values when it is unusable."""

from dataclasses import dataclass, field

from aura_orchestrator.catalog.selectors import route_chain_resolve
from aura_orchestrator.db import db
from aura_orchestrator.errors import InvalidRequest
from aura_orchestrator.optimization.assisted import assisted_suggest
from aura_orchestrator.optimization.fitting import Context, fit
from aura_orchestrator.optimization.history import History, history_for, setting
from aura_orchestrator.optimization.learned import learned_draft
from aura_orchestrator.optimization.rules import DEFAULT_PROMPT_TOKENS, rules_draft
from aura_orchestrator.optimization.types import Constraints, Draft, Suggestion
from presets.operation_types import OperationType
from presets.selectors import preset_get

# Fewer successful operations than this and their median prompt is noise.
TYPICAL_PROMPT_MIN_SAMPLE = 5


@dataclass(frozen=True, slots=True)
class OptimizeRequest:
    operation_type: OperationType
    constraints: Constraints = field(default_factory=Constraints)
    use_case: str = ""
    use_llm: bool = False
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class Offline:
    """The suggestion without the LLM, with what it was made from."""

    suggestion: Suggestion
    draft: Draft
    ctx: Context
    history: History


def optimize_context(
    *, operation_type: OperationType, provider: str | None, project_id: int | None
) -> tuple[Context, History]:
    """Preset, chain (the given provider, else the default chain), history, typical prompt."""
    preset = preset_get(operation_type=operation_type)
    try:
        routes = route_chain_resolve(provider_names=[provider] if provider else None, model=None)
    except InvalidRequest:
        if provider:
            raise
        routes = []  # nothing configured: rules still work, cost constraints cannot
    model = routes[0].model_name if routes else None
    history = history_for(
        project_id=project_id, operation_type=operation_type.value, model_name=model
    )
    p50 = history.tokens_in_p50 if history.successes >= TYPICAL_PROMPT_MIN_SAMPLE else None
    from_history = bool(p50)
    typical = p50 or DEFAULT_PROMPT_TOKENS
    ctx = Context(
        operation_type=operation_type.value,
        preset=preset,
        routes=tuple(routes),
        typical_prompt_tokens=typical,
        typical_from_history=from_history,
    )
    return ctx, history


def suggest_offline(*, request: OptimizeRequest, project_id: int | None) -> Offline:
    """Rules or telemetry, constraints applied (a sync unit of ORM work)."""
    ctx, history = optimize_context(
        operation_type=request.operation_type, provider=request.provider, project_id=project_id
    )
    constraints = request.constraints
    draft = learned_draft(preset=ctx.preset, history=history, constraints=constraints)
    if draft is None:
        draft = rules_draft(preset=ctx.preset, constraints=constraints)
        minimum = setting("OPTIMIZER_MIN_SAMPLE", 30)
        draft = draft.noted(
            f"Telemetry holds {history.successes} successful operations of this type; "
            f"{minimum} are needed to learn from it."
        )
    origin = "median of the history" if ctx.typical_from_history else "default, too little history"
    draft = draft.noted(f"Typical prompt: {ctx.typical_prompt_tokens} tokens ({origin}).")
    suggestion = fit(draft, constraints=constraints, ctx=ctx)
    return Offline(suggestion=suggestion, draft=draft, ctx=ctx, history=history)


async def optimize(*, request: OptimizeRequest, principal) -> Suggestion:
    offline = await db(suggest_offline, request=request, project_id=principal.project_id)
    if not request.use_llm:
        return offline.suggestion
    return await assisted_suggest(request=request, principal=principal, offline=offline)
