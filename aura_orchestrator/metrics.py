"""Prometheus metrics: what the pipeline did, labelled by provider, model and type.

With several worker processes, `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh folder
before the workers start; each process then writes its samples to files there and
`/metrics` sums every process's files (prometheus-client's multiprocess mode). Without
the variable (one process, tests) the default registry is exposed.

Cost is tracked exactly in the database; here it is a float counter in USD, as
Prometheus stores every sample as a float.
"""

import logging
import os

from django.http import HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from telemetry.models import LATENCY_BOUNDS_MS

logger = logging.getLogger(__name__)

# The `_created` timestamp series double the output and are not used by Prometheus.
disable_created_metrics()

LABELS = ("provider", "model", "operation_type")

OPERATIONS = Counter(
    "aura_operations",
    "Operations finished, by outcome (success, failure, cache_hit).",
    [*LABELS, "outcome"],
)
TOKENS = Counter(
    "aura_tokens", "Tokens reported by providers, by direction (in, out).", [*LABELS, "direction"]
)
COST = Counter("aura_cost_usd", "Estimated cost in USD.", LABELS)
RETRIES = Counter("aura_retries", "Provider attempts beyond the first.", LABELS)
CACHE_HITS = Counter("aura_cache_hits", "Operations answered from the cache.", LABELS)
BUDGET_REFUSALS = Counter(
    "aura_budget_refusals", "Operations refused by a hard budget limit.", LABELS
)
BUDGET_OVERRUNS = Counter(
    "aura_budget_overruns",
    "Operations settled after their reservation had expired (charged in full; a worker "
    "was frozen past its deadline and margin).",
    LABELS,
)
JOURNALED_FINISHES = Counter(
    "aura_journaled_finishes",
    "Finishes kept in the on-disk journal while the database was unavailable.",
)
OPERATION_ERRORS = Counter(
    "aura_operation_errors", "Failed operations, by error code.", [*LABELS, "error_code"]
)
PROVIDER_ERRORS = Counter(
    "aura_provider_errors",
    "Failed provider attempts (each retry counts), by error kind.",
    [*LABELS, "kind"],
)
LATENCY = Histogram(
    "aura_operation_latency_seconds",
    "End-to-end latency of an operation.",
    LABELS,
    buckets=[b / 1000 for b in LATENCY_BOUNDS_MS] + [float("inf")],
)


def record_operation(fields: dict) -> None:
    """Count one finished operation from its telemetry fields (as written by the
    pipeline). Never raises: metrics must not fail an operation."""
    try:
        _record(fields)
    except Exception:
        logger.exception("could not record operation metrics")


def _record(fields: dict) -> None:
    labels = {
        "provider": fields.get("provider_name") or "unknown",
        "model": fields.get("model_name") or "unknown",
        "operation_type": fields.get("operation_type") or "unknown",
    }
    if fields.get("cache_hit"):
        outcome = "cache_hit"
        CACHE_HITS.labels(**labels).inc()
    else:
        outcome = "success" if fields.get("success") else "failure"
    OPERATIONS.labels(**labels, outcome=outcome).inc()
    TOKENS.labels(**labels, direction="in").inc(fields.get("tokens_in") or 0)
    TOKENS.labels(**labels, direction="out").inc(fields.get("tokens_out") or 0)
    COST.labels(**labels).inc(float(fields.get("estimated_cost") or 0))
    RETRIES.labels(**labels).inc(fields.get("retry_count") or 0)
    LATENCY.labels(**labels).observe((fields.get("latency_ms") or 0) / 1000)
    if fields.get("budget_overrun"):
        BUDGET_OVERRUNS.labels(**labels).inc()
    error_code = fields.get("error_code")
    if error_code:
        OPERATION_ERRORS.labels(**labels, error_code=error_code).inc()
        if error_code == "budget_exceeded":
            BUDGET_REFUSALS.labels(**labels).inc()
    for attempt in fields.get("attempts") or ():
        if attempt.get("outcome") not in (None, "ok"):
            PROVIDER_ERRORS.labels(
                provider=attempt.get("provider") or labels["provider"],
                model=attempt.get("model") or labels["model"],
                operation_type=labels["operation_type"],
                kind=attempt["outcome"],
            ).inc()


def metrics_text() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@require_GET
def metrics_view(request) -> HttpResponse:
    """GET /metrics: Prometheus text format, every worker process included."""
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
