"""Delay between attempts: exponential backoff with full jitter, or the provider's Retry-After."""

from __future__ import annotations

import random
from typing import Protocol


class UniformSource(Protocol):
    """What backoff_delay draws its jitter from: `random.Random`, or a stand-in."""

    def uniform(self, a: float, b: float, /) -> float: ...


_rng = random.Random()

# The longest delay backoff_delay draws without a Retry-After (deadline.py bounds on it).
BACKOFF_CAP_SECONDS = 8.0
# 2**32 * base already exceeds any sensible cap; stop there to avoid float overflow.
_MAX_EXPONENT = 32


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.25,
    cap: float = BACKOFF_CAP_SECONDS,
    retry_after: float | None = None,
    max_retry_after: float = 30.0,
    rng: UniformSource | None = None,
) -> float:
    """Seconds to sleep before retry number `attempt` (0 for the first retry).

    A provider's Retry-After is used as given (capped at `max_retry_after`, so a hostile or
    confused upstream cannot park a request for an hour). Otherwise the delay is uniform in
    [0, min(cap, base * 2**attempt)]: full jitter spreads retries of many clients apart.
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), max_retry_after)
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))
    return (rng or _rng).uniform(0.0, ceiling)
