"""Reads for the admin: the suggestion telemetry currently makes for a preset."""

from aura_orchestrator.optimization.fitting import fit
from aura_orchestrator.optimization.learned import learned_draft
from aura_orchestrator.optimization.suggest import optimize_context
from aura_orchestrator.optimization.types import Constraints, Suggestion
from presets.operation_types import OperationType


def suggestion_for_preset(*, operation_type: OperationType | str) -> Suggestion | None:
    """Learned from every project's history on the default chain's model; None while
    there is too little history (the admin then shows the stored values alone)."""
    op = OperationType(operation_type)
    ctx, history = optimize_context(operation_type=op, provider=None, project_id=None)
    draft = learned_draft(preset=ctx.preset, history=history, constraints=Constraints())
    if draft is None:
        return None
    return fit(draft, constraints=Constraints(), ctx=ctx)
