"""backoff_delay: exponential backoff with full jitter, Retry-After honoured and capped."""

from __future__ import annotations

import random

import pytest

from aura_orchestrator.providers import backoff_delay


@pytest.mark.parametrize(("attempt", "ceiling"), [(0, 0.25), (1, 0.5), (2, 1.0), (5, 8.0)])
def test_delay_is_jittered_between_zero_and_the_exponential_ceiling(attempt, ceiling):
    rng = random.Random(1)
    delays = [backoff_delay(attempt, rng=rng) for _ in range(500)]

    assert all(0.0 <= delay <= ceiling for delay in delays)
    assert max(delays) > ceiling * 0.9  # full jitter uses the whole range...
    assert min(delays) < ceiling * 0.1  # ...from zero up
    assert len(set(delays)) == len(delays)


def test_delay_never_exceeds_the_cap_even_for_huge_attempts():
    rng = random.Random(2)
    assert all(backoff_delay(10_000, cap=3.0, rng=rng) <= 3.0 for _ in range(200))


def test_negative_attempt_counts_as_the_first_retry():
    rng = random.Random(3)
    assert all(backoff_delay(-4, base=1.0, rng=rng) <= 1.0 for _ in range(200))


def test_seeded_rng_makes_delays_reproducible():
    first = [backoff_delay(3, rng=random.Random(42)) for _ in range(3)]
    assert first == [backoff_delay(3, rng=random.Random(42)) for _ in range(3)]


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(0.0, 0.0), (2.5, 2.5), (30.0, 30.0), (3600.0, 30.0), (-5, 0.0)]
)
def test_retry_after_is_used_as_the_delay_and_capped(retry_after, expected):
    assert backoff_delay(0, retry_after=retry_after) == expected


def test_retry_after_cap_is_configurable_and_independent_of_backoff_cap():
    assert backoff_delay(9, cap=1.0, retry_after=12.0, max_retry_after=10.0) == 10.0
