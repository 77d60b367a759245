"""What telemetry says about one operation type (and model) in one project.

Exact percentiles over the raw rows of a recent window (nearest rank, the same
definition as the statistics endpoint). Cache hits are left out: they say nothing
about a provider. Only rows that reached a provider count towards the error rate.
"""

import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from telemetry.models import OperationTelemetry

# Final error codes of operations that reached a provider and failed there.
PROVIDER_FAILURES = ("provider_error", "timeout", "rate_limited")
# Telemetry `source` of the optimiser's own LLM calls: not part of any history it learns.
OPTIMIZER_SOURCE = "optimizer"


def setting(name: str, default):
    """An optimiser setting from `settings.AURA`, read at call time."""
    return settings.AURA.get(name, default)


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile of non-empty `values` (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class History:
    operation_type: str
    model_name: str | None  # None: every model of the type
    successes: int
    failures: int  # operations that failed at the provider after every retry
    attempts: int  # provider attempts of those operations, retries included
    tokens_in_p50: int | None
    tokens_out_p50: int | None
    tokens_out_p95: int | None
    tokens_out_p99: int | None
    truncated_share: float  # successes whose output reached their max_tokens
    latency_ms_p99: int | None

    @property
    def attempt_failure_rate(self) -> float:
        """Share of provider attempts that failed (retried or final)."""
        return 0.0 if not self.attempts else (self.attempts - self.successes) / self.attempts


def history_summarize(
    *, project_id: int | None, operation_type: str, model_name: str | None
) -> History:
    """The recent history of a type (`project_id` None: every project, for staff)."""
    since = timezone.now() - timedelta(days=setting("OPTIMIZER_WINDOW_DAYS", 30))
    rows = OperationTelemetry.objects.filter(
        operation_type=operation_type, cache_hit=False, started_at__gte=since
    ).exclude(source=OPTIMIZER_SOURCE)
    if project_id is not None:
        rows = rows.filter(project_id=project_id)
    if model_name:
        rows = rows.filter(model_name=model_name)
    limit = setting("OPTIMIZER_MAX_ROWS", 5000)
    recent = list(
        rows.order_by("-started_at").values_list(
            "success", "error_code", "tokens_in", "tokens_out", "max_tokens", "latency_ms",
            "retry_count",
        )[:limit]
    )  # fmt: skip
    ok = [r for r in recent if r[0]]
    failed = [r for r in recent if not r[0] and r[1] in PROVIDER_FAILURES]
    tokens_out = [r[3] for r in ok]
    return History(
        operation_type=operation_type,
        model_name=model_name or None,
        successes=len(ok),
        failures=len(failed),
        attempts=sum(r[6] + 1 for r in (*ok, *failed)),
        tokens_in_p50=percentile([r[2] for r in ok], 50) if ok else None,
        tokens_out_p50=percentile(tokens_out, 50) if ok else None,
        tokens_out_p95=percentile(tokens_out, 95) if ok else None,
        tokens_out_p99=percentile(tokens_out, 99) if ok else None,
        truncated_share=(sum(1 for r in ok if r[4] and r[3] >= r[4]) / len(ok)) if ok else 0.0,
        latency_ms_p99=percentile([r[5] for r in ok], 99) if ok else None,
    )


def history_for(*, project_id: int | None, operation_type: str, model_name: str | None) -> History:
    """The model's own history when it is large enough, else the type's across models."""
    minimum = setting("OPTIMIZER_MIN_SAMPLE", 30)
    if model_name:
        scoped = history_summarize(
            project_id=project_id, operation_type=operation_type, model_name=model_name
        )
        if scoped.successes >= minimum:
            return scoped
    return history_summarize(project_id=project_id, operation_type=operation_type, model_name=None)
