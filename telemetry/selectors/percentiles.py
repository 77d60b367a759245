"""Percentiles, portable: percentile_cont's definition over sorted values (exact), and the
approximation from a latency histogram (rollups). The SQL ones are in `vendor`."""

import math

from telemetry.models import LATENCY_BOUNDS_MS


def continuous_percentile(sorted_values: list[float], fraction: float) -> float:
    """percentile_cont's definition: linear interpolation between the two closest ranks
    of position fraction·(n-1) in the sorted values."""
    if not sorted_values:
        return 0.0
    position = fraction * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low))


def histogram_percentile(histogram: list[int], fraction: float, *, max_ms: int) -> float:
    """Approximate percentile from bucket counts: find the bucket holding rank
    fraction·(n-1) and interpolate linearly inside it (the last bucket ends at max_ms)."""
    total = sum(histogram)
    if total == 0:
        return 0.0
    rank = fraction * (total - 1)
    seen = 0
    for i, count in enumerate(histogram):
        if count and rank < seen + count:
            low = LATENCY_BOUNDS_MS[i - 1] if i > 0 else 0
            high = LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else max(max_ms, low)
            high = min(high, max(max_ms, low))
            within = min(1.0, (rank - seen + 0.5) / count)
            return float(low + (high - low) * within)
        seen += count
    return float(max_ms)
