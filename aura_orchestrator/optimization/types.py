"""Values the optimiser works with: constraints in, drafts in between, suggestions out."""

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal

from aura_orchestrator.errors import AuraError

Source = Literal["rules", "telemetry", "llm"]

# Ranges no suggestion leaves, whatever its source (an LLM's answer is clamped into them).
# Narrower than what a request may set: temperatures above 1.5 are rarely useful output.
SAFE_TEMPERATURE = (0.0, 1.5)
SAFE_TOP_P = (0.05, 1.0)
SAFE_MAX_TOKENS = (1, 128_000)
SAFE_TIMEOUT_SECONDS = (1.0, 600.0)
SAFE_MAX_RETRIES = (0, 5)


class ConstraintsUnsatisfiable(AuraError):
    """No parameters can meet the constraints (e.g. the prompt alone costs more)."""

    code = "constraints_unsatisfiable"
    status = 422
    default_message = "No parameters can satisfy these constraints."


@dataclass(frozen=True, slots=True)
class Constraints:
    max_tokens: int | None = None
    max_cost: Decimal | None = None
    max_latency_seconds: float | None = None
    # True: quality first (stay near the preset); False: cost first (trim); None: balanced.
    prioritize_quality: bool | None = None

    @property
    def priority(self) -> str:
        return {True: "quality", False: "cost", None: "balanced"}[self.prioritize_quality]


@dataclass(frozen=True, slots=True)
class Draft:
    """Parameters a source proposes before the constraints are applied."""

    temperature: float
    top_p: float
    max_tokens: int
    timeout_seconds: float
    max_retries: int
    source: Source
    confidence: float
    # The shortest timeout worth keeping when latency forces a cut: below it, calls that
    # would have succeeded time out, so dropping a retry is the better trade.
    min_useful_timeout: float
    notes: tuple[str, ...] = ()
    sample_size: int = 0

    def noted(self, *notes: str, **changes) -> "Draft":
        return replace(self, notes=(*self.notes, *notes), **changes)


@dataclass(frozen=True, slots=True)
class Suggestion:
    operation_type: str
    temperature: float
    top_p: float
    max_tokens: int
    timeout_seconds: float
    max_retries: int
    confidence: float
    source: Source
    adjustments: tuple[str, ...]
    model: str | None = None
    sample_size: int = 0
    worst_case_cost: Decimal | None = None  # a typical prompt with max_tokens out
    worst_case_latency_seconds: float = 0.0
    typical_prompt_tokens: int = 0
    extra_notes: tuple[str, ...] = field(default=())

    @property
    def rationale(self) -> str:
        return " ".join((*self.adjustments, *self.extra_notes))

    def with_note(self, note: str) -> "Suggestion":
        return replace(self, extra_notes=(*self.extra_notes, note))

    def parameters(self) -> dict:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "timeout_seconds": self.timeout_seconds,
            "max_retries": self.max_retries,
        }

    def as_body(self) -> dict:
        return {
            **self.parameters(),
            "rationale": self.rationale,
            "confidence": self.confidence,
            "source": self.source,
            "operation_type": self.operation_type,
            "model": self.model,
            "sample_size": self.sample_size,
            "typical_prompt_tokens": self.typical_prompt_tokens,
            "worst_case_cost": self.worst_case_cost,
            "worst_case_latency_seconds": self.worst_case_latency_seconds,
            "adjustments": list(self.adjustments),
            "notes": list(self.extra_notes),
        }
