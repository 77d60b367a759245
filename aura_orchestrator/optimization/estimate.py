"""What a request would consume before it runs: prompt tokens with the model's real
tokenizer, the worst case the budget would reserve, a typical cost from telemetry, and
whether the session's ledger would admit it. Reads only: nothing is reserved."""

from dataclasses import dataclass, field
from decimal import Decimal

from aura_orchestrator.catalog.selectors import Route, route_chain_resolve
from aura_orchestrator.catalog.tokens import count_message_tokens, encoding_name_for_model
from aura_orchestrator.money import cost_micros, micros_to_usd
from aura_orchestrator.optimization.history import history_for

# The ledger's own checks, so an estimate can never disagree with a reservation.
from budgets.caps import REMAINING_FIELDS
from budgets.models import LlmSession
from budgets.selectors import budget_status, operation_overruns, session_get, session_overruns
from presets.operation_types import OperationType
from presets.selectors import preset_get

# Fewer successful operations than this and a "typical" output length is noise.
TYPICAL_MIN_SAMPLE = 5


@dataclass(frozen=True, slots=True)
class EstimateRequest:
    operation_type: OperationType
    prompt: str
    system_prompt: str | None = None
    model: str | None = None
    providers: tuple[str, ...] | None = None
    overrides: dict = field(default_factory=dict)
    session_id: str | None = None


def _cost(route: Route, tokens_in: int, tokens_out: int) -> int | None:
    """The worst case as the budget reserves it (the prompt at `Route.worst_input_price`)."""
    input_price = route.worst_input_price
    if input_price is None or route.output_price is None:  # not route.priced
        return None
    return cost_micros(
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        input_price=input_price,
        output_price=route.output_price,
    )


def _admission(
    session: LlmSession | None, *, session_id: str, tokens: int, cost: int | None, model: str
) -> dict:
    if session is None:
        return {
            "session_id": session_id,
            "exists": False,
            "would_admit": True,
            "enforce_hard_limits": None,
            "reasons": [],
            **dict.fromkeys(REMAINING_FIELDS),
            "note": "No ledger yet: a new session has no caps unless its first request "
            "brings them.",
        }
    problems = operation_overruns(session, tokens=tokens, cost_micros=cost, model_name=model)
    problems += session_overruns(session, tokens=tokens, cost_micros=cost or 0)
    status = budget_status(session)
    return {
        "session_id": session_id,
        "exists": True,
        "would_admit": not (problems and session.enforce_hard_limits),
        "enforce_hard_limits": session.enforce_hard_limits,
        "reasons": problems,
        **status.remaining,
        "note": "Soft limits: admitted with warnings." if problems else "",
    }


def estimate(*, request: EstimateRequest, project_id: int) -> dict:
    preset = preset_get(operation_type=request.operation_type).with_overrides(**request.overrides)
    chain = route_chain_resolve(
        provider_names=list(request.providers) if request.providers else None,
        model=request.model,
    )
    messages = [("system", request.system_prompt)] if request.system_prompt else []
    messages.append(("user", request.prompt))
    per_model = {m: count_message_tokens(messages, model=m) for m in {r.model_name for r in chain}}
    tokens_in = max(per_model.values())  # what the pipeline reserves for the prompt
    tokens_out = preset.max_tokens
    routes = [
        {
            "provider": r.provider_name,
            "model": r.model_name,
            "tokenizer": encoding_name_for_model(r.model_name) or "estimate (~3 characters/token)",
            "tokens_in": per_model[r.model_name],
            "input_price": r.input_price,
            "output_price": r.output_price,
            "worst_case_cost": _usd(_cost(r, tokens_in, tokens_out)),
        }
        for r in chain
    ]
    worst = [c for c in (_cost(r, tokens_in, tokens_out) for r in chain) if c is not None]
    worst_cost = max(worst) if worst else None
    first = chain[0]
    history = history_for(
        project_id=project_id,
        operation_type=request.operation_type.value,
        model_name=first.model_name,
    )
    typical_out = None
    if history.successes >= TYPICAL_MIN_SAMPLE and history.tokens_out_p50 is not None:
        typical_out = min(history.tokens_out_p50, tokens_out)
    typical_cost = _cost(first, tokens_in, typical_out) if typical_out is not None else None
    budget = None
    if request.session_id:
        budget = _admission(
            session_get(project_id=project_id, session_id=request.session_id),
            session_id=request.session_id,
            tokens=tokens_in + tokens_out,
            cost=worst_cost,
            model=first.model_name,
        )
    return {
        "operation_type": request.operation_type.value,
        "provider": first.provider_name,
        "model": first.model_name,
        "tokens_in": tokens_in,
        "worst_case_tokens_out": tokens_out,
        "worst_case_tokens": tokens_in + tokens_out,
        "worst_case_cost": _usd(worst_cost),
        "typical_tokens_out": typical_out,
        "typical_cost": _usd(typical_cost),
        "typical_source": "telemetry" if typical_out is not None else None,
        "typical_sample_size": history.successes,
        "priced": len(worst) == len(chain),
        "routes": routes,
        "budget": budget,
    }


def _usd(micros: int | None) -> Decimal | None:
    return None if micros is None else micros_to_usd(micros)
