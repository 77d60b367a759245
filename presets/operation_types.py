"""The 13 operation types and their seed defaults (from the original design guide)."""

import re
from dataclasses import dataclass

from django.db import models


class OperationType(models.TextChoices):
    PLANNING = "planning", "Planning"
    SCRIPTING = "scripting", "Scripting"
    SSML_PLANNING = "ssml_planning", "SSML planning"
    VISUAL_PROMPTS = "visual_prompts", "Visual prompts"
    RAG_RETRIEVAL = "rag_retrieval", "RAG retrieval"
    SCENE_ANALYSIS = "scene_analysis", "Scene analysis"
    COMPLEXITY_ANALYSIS = "complexity_analysis", "Complexity analysis"
    COHERENCE_VALIDATION = "coherence_validation", "Coherence validation"
    NARRATIVE_VALIDATION = "narrative_validation", "Narrative validation"
    TRANSITION_GENERATION = "transition_generation", "Transition generation"
    SCRIPT_REFINEMENT = "script_refinement", "Script refinement"
    CREATIVE = "creative", "Creative"
    COMPLETION = "completion", "Completion"


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def parse_operation_type(value: object) -> OperationType | None:
    """`planning`, `SsmlPlanning`, `ssml-planning` and `SSML_PLANNING` all name one type."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    snake = _CAMEL_BOUNDARY.sub("_", value.strip()).replace("-", "_").lower()
    try:
        return OperationType(snake)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class PresetDefaults:
    temperature: float
    top_p: float
    max_tokens: int
    timeout_seconds: float
    max_retries: int
    cache_enabled: bool
    cache_ttl_seconds: int
    description: str


# Temperature and max_tokens are the seed's. Deterministic analysis and validation
# operations are cached by default; creative ones are not. Timeouts grow with max_tokens.
SEED_PRESETS: dict[OperationType, PresetDefaults] = {
    OperationType.PLANNING: PresetDefaults(
        0.7, 0.9, 2000, 60, 2, False, 3600, "Video plan generation"
    ),
    OperationType.SCRIPTING: PresetDefaults(0.8, 0.95, 4000, 120, 2, False, 3600, "Script content"),
    OperationType.SSML_PLANNING: PresetDefaults(0.3, 0.9, 3000, 90, 2, True, 3600, "SSML markup"),
    OperationType.VISUAL_PROMPTS: PresetDefaults(
        0.9, 0.95, 1500, 45, 2, False, 3600, "Visual generation prompts"
    ),
    OperationType.RAG_RETRIEVAL: PresetDefaults(
        0.2, 0.9, 2000, 60, 3, True, 86400, "RAG content retrieval"
    ),
    OperationType.SCENE_ANALYSIS: PresetDefaults(
        0.3, 0.9, 800, 30, 3, True, 3600, "Scene importance analysis"
    ),
    OperationType.COMPLEXITY_ANALYSIS: PresetDefaults(
        0.2, 0.9, 1000, 30, 3, True, 3600, "Content complexity analysis"
    ),
    OperationType.COHERENCE_VALIDATION: PresetDefaults(
        0.2, 0.9, 800, 30, 3, True, 3600, "Scene coherence validation"
    ),
    OperationType.NARRATIVE_VALIDATION: PresetDefaults(
        0.3, 0.9, 1500, 45, 3, True, 3600, "Narrative arc validation"
    ),
    OperationType.TRANSITION_GENERATION: PresetDefaults(
        0.7, 0.9, 500, 20, 2, False, 3600, "Transition text"
    ),
    OperationType.SCRIPT_REFINEMENT: PresetDefaults(
        0.6, 0.9, 3000, 90, 2, False, 3600, "Script editing"
    ),
    OperationType.CREATIVE: PresetDefaults(
        0.9, 0.95, 3000, 90, 2, False, 3600, "Creative generation"
    ),
    OperationType.COMPLETION: PresetDefaults(
        0.7, 0.9, 2000, 60, 2, False, 3600, "General completion"
    ),
}
