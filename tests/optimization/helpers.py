"""Generated telemetry histories with known percentiles."""

import random
import uuid
from datetime import timedelta

from django.utils import timezone

from telemetry.models import OperationTelemetry

OPTIMIZE = "/api/v1/optimize"
EXPLAIN = "/api/v1/optimize/explain"
ESTIMATE = "/api/v1/estimate"


def make_history(
    *,
    project,
    operation_type: str = "planning",
    model_name: str = "sim-gpt",
    count: int = 200,
    tokens_in: int = 300,
    retried: int = 0,
    failed: int = 0,
    max_tokens: int = 2000,
    seed: int = 7,
    **overrides,
) -> None:
    """`count` successful rows with tokens_out 1..count and latency 10..10*count ms (so
    percentiles are known exactly, e.g. p95 of 200 rows is 190), in shuffled order;
    `retried` of them needed one retry; plus `failed` rows that failed after 2 retries."""
    rng = random.Random(seed)
    now = timezone.now()
    order = list(range(1, count + 1))
    rng.shuffle(order)
    rows = []
    for index, n in enumerate(order):
        started = now - timedelta(minutes=index + 1)
        rows.append(
            OperationTelemetry(
                operation_id=uuid.uuid4(),
                project=project,
                session_id="history",
                operation_type=operation_type,
                provider_name="primary",
                model_name=model_name,
                tokens_in=tokens_in,
                tokens_out=n,
                retry_count=1 if index < retried else 0,
                latency_ms=10 * n,
                success=True,
                started_at=started,
                completed_at=started,
                max_tokens=max_tokens,
                **overrides,
            )
        )
    for index in range(failed):
        started = now - timedelta(minutes=count + index + 1)
        rows.append(
            OperationTelemetry(
                operation_id=uuid.uuid4(),
                project=project,
                session_id="history",
                operation_type=operation_type,
                provider_name="primary",
                model_name=model_name,
                retry_count=2,
                latency_ms=5000,
                success=False,
                error_code="provider_error",
                started_at=started,
                completed_at=started,
                max_tokens=max_tokens,
            )
        )
    OperationTelemetry.objects.bulk_create(rows)
