"""LLM-assisted suggestions: ask for JSON, clamp it into safe ranges and the constraints,
fall back to the rules (or telemetry) with a note whenever the answer is unusable."""

import contextlib
from dataclasses import asdict

from aura_orchestrator.optimization.fitting import fit
from aura_orchestrator.optimization.llm import ask, finite_number, parse_json_object, plain_text
from aura_orchestrator.optimization.types import (
    SAFE_MAX_RETRIES,
    SAFE_MAX_TOKENS,
    SAFE_TEMPERATURE,
    SAFE_TIMEOUT_SECONDS,
    SAFE_TOP_P,
    ConstraintsUnsatisfiable,
    Draft,
    Suggestion,
)

# Types only: ranges are ours to enforce (clamping), so an out-of-range answer is still
# usable instead of failing validation.
RESPONSE_SCHEMA = {
    "type": "object",
    "required": ["temperature", "top_p", "max_tokens", "timeout_seconds", "max_retries"],
    "properties": {
        "temperature": {"type": "number"},
        "top_p": {"type": "number"},
        "max_tokens": {"type": "number"},
        "timeout_seconds": {"type": "number"},
        "max_retries": {"type": "number"},
        "rationale": {"type": "string"},
        "confidence": {"type": "number"},
    },
}
ANSWER_MAX_TOKENS = 600
# An LLM's self-assessed confidence is capped, and lowered when we had to clamp it.
MAX_LLM_CONFIDENCE = 0.85
CLAMPED_CONFIDENCE_FACTOR = 0.75
SAFE = {
    "temperature": SAFE_TEMPERATURE,
    "top_p": SAFE_TOP_P,
    "max_tokens": SAFE_MAX_TOKENS,
    "timeout_seconds": SAFE_TIMEOUT_SECONDS,
    "max_retries": SAFE_MAX_RETRIES,
}

SYSTEM = (
    "You tune the sampling and reliability parameters of LLM calls for a production "
    "gateway. Answer with one JSON object only, no prose around it."
)


def _prompt(request, offline) -> str:
    ctx, history, base = offline.ctx, offline.history, offline.suggestion
    preset = {k: v for k, v in asdict(ctx.preset).items() if k in base.parameters()}
    constraints = {
        "max_tokens": request.constraints.max_tokens,
        "max_cost_usd": str(request.constraints.max_cost)
        if request.constraints.max_cost is not None
        else None,
        "max_latency_seconds": request.constraints.max_latency_seconds,
        "priority": request.constraints.priority,
    }
    observed = "none yet"
    if history.successes:
        observed = (
            f"{history.successes} successful operations; output tokens p50 "
            f"{history.tokens_out_p50}, p95 {history.tokens_out_p95}; latency p99 "
            f"{history.latency_ms_p99} ms; {history.attempt_failure_rate:.1%} of attempts failed"
        )
    return (
        f"Operation type: {ctx.operation_type} ({ctx.preset.description}).\n"
        f"Model: {ctx.model or 'unknown'}.\n"
        f"Use case: {plain_text(request.use_case, 1000) or 'not given'}.\n"
        f"Current preset: {preset}.\n"
        f"Constraints: {constraints}. max_tokens limits the answer length; the worst case "
        "latency is (max_retries + 1) * timeout_seconds plus backoff.\n"
        f"Telemetry: {observed}.\n"
        f"Our rule-based suggestion: {base.parameters()}.\n"
        'Suggest better values. Reply with JSON: {"temperature": number 0-2, "top_p": '
        'number 0-1, "max_tokens": integer, "timeout_seconds": number, "max_retries": '
        'integer 0-5, "rationale": one or two sentences, "confidence": number 0-1}.'
    )


def llm_draft(document: dict, *, offline, served_by: str) -> Draft:
    """A draft from the parsed answer; ValueError when a parameter is missing or not a number."""
    values = {name: finite_number(document, name) for name in SAFE}
    clamped = [n for n, v in values.items() if not SAFE[n][0] <= v <= SAFE[n][1]]
    confidence = 0.5
    if "confidence" in document:
        with contextlib.suppress(ValueError):  # a bad confidence alone is not fatal
            confidence = min(max(finite_number(document, "confidence"), 0.0), 1.0)
    confidence = min(confidence, MAX_LLM_CONFIDENCE)
    if clamped:
        confidence *= CLAMPED_CONFIDENCE_FACTOR
    rationale = plain_text(document.get("rationale"), 300) or "no rationale given"
    return Draft(
        temperature=values["temperature"],
        top_p=values["top_p"],
        max_tokens=round(min(values["max_tokens"], 1e9)),
        timeout_seconds=values["timeout_seconds"],
        max_retries=round(min(values["max_retries"], 1e3)),
        source="llm",
        confidence=confidence,
        min_useful_timeout=offline.draft.min_useful_timeout,
        notes=(f"LLM suggestion from {served_by}: {rationale}",),
        sample_size=offline.history.successes,
    )


def _fallback(offline, why: str) -> Suggestion:
    return offline.suggestion.with_note(
        f"LLM-assisted suggestion unusable ({why}); these are the {offline.suggestion.source} "
        "values."
    )


async def assisted_suggest(*, request, principal, offline) -> Suggestion:
    result = await ask(
        principal=principal,
        system=SYSTEM,
        prompt=_prompt(request, offline),
        provider=request.provider,
        max_tokens=ANSWER_MAX_TOKENS,
        response_schema=RESPONSE_SCHEMA,
    )
    if not result.success:
        error = result.error
        assert error is not None  # a failed result carries its error
        return _fallback(offline, f"{error.code}: {error.message[:200]}")
    served_by = f"{result.telemetry['provider_name']}/{result.telemetry['model_name']}"
    try:
        draft = llm_draft(parse_json_object(result.content), offline=offline, served_by=served_by)
    except ValueError as exc:
        return _fallback(offline, str(exc))
    try:
        return fit(draft, constraints=request.constraints, ctx=offline.ctx)
    except ConstraintsUnsatisfiable as exc:  # the offline values met them; keep those
        return _fallback(offline, exc.message)
