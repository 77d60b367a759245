"""Plain-language explanation of the difference between two sets of parameters: for each
changed one, its expected effect on cost, latency and the output. Template-based by
default; LLM-written when asked, falling back to the template."""

from dataclasses import asdict, dataclass

from aura_orchestrator.db import db
from aura_orchestrator.optimization.llm import ask, plain_text
from presets.operation_types import OperationType
from presets.selectors import preset_get

PARAMETERS = ("temperature", "top_p", "max_tokens", "timeout_seconds", "max_retries")
ANSWER_MAX_TOKENS = 700


@dataclass(frozen=True, slots=True)
class Change:
    parameter: str
    base: float | int
    adjusted: float | int
    cost: str
    latency: str
    output: str

    @property
    def line(self) -> str:
        return (
            f"- {self.parameter} {_num(self.base)} → {_num(self.adjusted)}"
            f"{_percent(self.base, self.adjusted)}"
            f": cost: {self.cost}; latency: {self.latency}; output: {self.output}."
        )


@dataclass(frozen=True, slots=True)
class Explanation:
    explanation: str
    source: str  # template | llm
    changes: list[Change]
    notes: list[str]

    def as_body(self) -> dict:
        return {
            "explanation": self.explanation,
            "source": self.source,
            "changes": [asdict(c) for c in self.changes],
            "notes": self.notes,
        }


def _num(value) -> str:
    """25.0 reads as 25, 0.70 as 0.7."""
    return f"{value:g}"


def _percent(base, adjusted) -> str:
    if not base:
        return ""
    change = (adjusted - base) / base * 100
    return f" ({change:+.0f}%)"


def _effects(name: str, base, new) -> tuple[str, str, str]:
    up = new > base
    base_text, new_text = _num(base), _num(new)
    if name == "max_tokens":
        if up:
            return (
                f"worst-case output cost and the budget reserved per call grow by "
                f"{(new - base) / base:.0%}",
                "long answers may take longer; short ones are unaffected",
                f"room for answers up to {new} tokens, so fewer answers are cut off",
            )
        return (
            f"worst-case output cost and the budget reserved per call fall by "
            f"{(base - new) / base:.0%}",
            "long answers finish sooner; short ones are unaffected",
            f"answers longer than {new} tokens are cut off (finish_reason `length`)",
        )
    if name == "temperature":
        if up:
            return (
                "no direct effect on price; answers can run a little longer",
                "no direct effect",
                "more varied and creative wording, less predictable, more risk of drifting "
                "off the task; repeated prompts rarely give the same answer",
            )
        return (
            "no direct effect on price; answers tend to be shorter and more repeatable",
            "no direct effect",
            "more focused, consistent and deterministic, with less varied wording",
        )
    if name == "top_p":
        if up:
            return (
                "no direct effect",
                "no direct effect",
                "sampling draws from a wider set of likely tokens: more diverse wording",
            )
        return (
            "no direct effect",
            "no direct effect",
            "sampling keeps to the most likely tokens: safer, more conventional wording",
        )
    if name == "timeout_seconds":
        if up:
            return (
                "no direct effect",
                f"a stuck call is waited on for up to {new_text} s per attempt instead of "
                f"{base_text} s, so the worst case grows",
                "slow, long answers get time to finish instead of failing with a timeout",
            )
        return (
            "no direct effect",
            f"a stuck call is abandoned after {new_text} s instead of {base_text} s, so the "
            "worst case falls",
            f"answers that need more than {new_text} s fail with a timeout (and are retried)",
        )
    # max_retries
    if up:
        return (
            "failed attempts are usually not billed, but more of them may be when a provider "
            "bills a timed-out answer",
            "the worst case grows by one attempt and its backoff per extra retry",
            "transient provider errors (429, 5xx, timeouts) fail the operation less often",
        )
    return (
        "fewer re-attempts to pay for when a provider bills failed answers",
        "the worst case falls by one attempt and its backoff per retry removed",
        "a transient provider error fails the operation sooner",
    )


def changes_between(*, base: dict, adjusted: dict) -> list[Change]:
    """One change per parameter present in both and different."""
    changes = []
    for name in PARAMETERS:
        if name in base and name in adjusted and base[name] != adjusted[name]:
            cost, latency, output = _effects(name, base[name], adjusted[name])
            changes.append(Change(name, base[name], adjusted[name], cost, latency, output))
    return changes


def explain_template(*, changes: list[Change], reason: str) -> str:
    if not changes:
        return "No parameter differs between the base and the adjusted values."
    intro = f"Adjusted for {plain_text(reason, 300)}." if reason.strip() else "Adjusted values."
    return "\n".join([intro, *(c.line for c in changes)])


def preset_parameters(*, operation_type: OperationType) -> dict:
    preset = preset_get(operation_type=operation_type)
    return {name: getattr(preset, name) for name in PARAMETERS}


async def explain(
    *,
    base: dict | None,
    operation_type: OperationType | None,
    adjusted: dict,
    reason: str,
    use_llm: bool,
    provider: str | None,
    principal,
) -> Explanation:
    """`base` None: the operation type's preset is the base."""
    if base is None:
        if operation_type is None:  # the API asks for one or the other
            raise ValueError("explain() needs `base` or an `operation_type`")
        base = await db(preset_parameters, operation_type=operation_type)
    changes = changes_between(base=base, adjusted=adjusted)
    template = explain_template(changes=changes, reason=reason)
    if not use_llm or not changes:
        return Explanation(template, "template", changes, [])
    result = await ask(
        principal=principal,
        system=(
            "You explain LLM parameter changes to the operator of an LLM gateway in plain "
            "language: for each changed parameter, its expected effect on cost, latency and "
            "the output. Short paragraphs, no headings, no JSON."
        ),
        prompt=f"Reason for the change: {plain_text(reason, 300) or 'not given'}.\n"
        f"Changes and their known effects:\n{template}",
        provider=provider,
        max_tokens=ANSWER_MAX_TOKENS,
    )
    text = (result.content or "").strip() if result.success else ""
    if not text:
        why = f"{result.error.code}: {result.error.message[:200]}" if result.error else "empty"
        note = f"LLM-written explanation unavailable ({why}); this is the template's."
        return Explanation(template, "template", changes, [note])
    return Explanation(text[:6000], "llm", changes, [])
