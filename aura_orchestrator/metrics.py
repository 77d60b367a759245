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
from prometheus_client.core import GaugeMetricFamily

from aura_orchestrator.money import micros_to_usd
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


# The gauges of spend budgets are read from the database at each scrape: the ledger is
# there (and shared by every worker), so no process has to keep them current, and the
# multiprocess files never hold them. At most this many budgets (and end users of default
# budgets) are exported: a bound on the scrape's work and on the series' cardinality.
BUDGET_GAUGE_LIMIT = 1000
BUDGET_LABELS = ("project", "scope", "period", "unit")


class BudgetCollector:
    """aura_budget_used / _reserved / _cap: each active spend budget in its current
    period, by unit (tokens, usd)."""

    def describe(self) -> list:
        return []  # registering must not query the database

    def collect(self):
        from budgets.usage import usage_current  # models: not at import time

        try:
            entries = usage_current(limit=BUDGET_GAUGE_LIMIT)
        except Exception:
            logger.exception("could not read spend budgets for /metrics")
            return
        used = GaugeMetricFamily(
            "aura_budget_used",
            "Spent in the current period of a spend budget.",
            labels=BUDGET_LABELS,
        )
        reserved = GaugeMetricFamily(
            "aura_budget_reserved",
            "Reserved by operations in flight in the current period of a spend budget.",
            labels=BUDGET_LABELS,
        )
        cap = GaugeMetricFamily(
            "aura_budget_cap", "The cap of a spend budget.", labels=BUDGET_LABELS
        )
        for entry in entries:
            budget, sums = entry.budget, entry.sums
            project, label, period = budget.project.name, entry.label, budget.period
            tokens = [project, label, period, "tokens"]
            money = [project, label, period, "usd"]
            used.add_metric(tokens, sums.tokens_used)
            used.add_metric(money, float(micros_to_usd(sums.cost_micros)))
            reserved.add_metric(tokens, sums.tokens_reserved)
            reserved.add_metric(money, float(micros_to_usd(sums.cost_reserved_micros)))
            if budget.max_tokens is not None:
                cap.add_metric(tokens, budget.max_tokens)
            if budget.max_cost is not None:
                cap.add_metric(money, float(budget.max_cost))
        yield from (used, reserved, cap)


BUDGETS = BudgetCollector()
REGISTRY.register(BUDGETS)


def metrics_text() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(BUDGETS)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@require_GET
def metrics_view(request) -> HttpResponse:
    """GET /metrics: Prometheus text format, every worker process included."""
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
