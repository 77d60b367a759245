"""One deadline per operation, and the reservation lifetime that follows from it.

The promise it serves: a reservation is handed back by the expiry job only once its
operation can no longer be running. So the operation's whole-call deadline is computed
before it reserves, enforced on every provider call (headers, body, stream idle and
total, backoff sleeps), and the reservation expires at that deadline plus a margin:

    deadline  = min(worst case of the chain, TTL - margin)
    expires   = now + time left before the deadline + margin      (≤ now + TTL)

    worst case = routes * (attempts * timeout + retries * longest backoff)
                 * 2 when a response schema may need its one corrective call

`BUDGET_RESERVATION_TTL_SECONDS` keeps its meaning (a reservation is released after at
most this long); `BUDGET_RESERVATION_MARGIN_SECONDS` is what a frozen worker may
overshoot its deadline by before its reservation is released. Pure functions: no clock
is read here except through the arguments.
"""

from dataclasses import dataclass

from aura_orchestrator.providers.retry import BACKOFF_CAP_SECONDS

# Never shorter than this, whatever the settings: a deadline must leave room for a call.
MIN_DEADLINE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """The settings that bound an operation (seconds)."""

    reservation_ttl: float
    margin: float
    max_retry_after: float

    @property
    def effective_margin(self) -> float:
        """The margin, at most half the TTL: a short TTL (tests, impatient operators) still
        leaves its operations time to run."""
        return min(self.margin, self.reservation_ttl / 2)

    @property
    def max_deadline(self) -> float:
        return max(MIN_DEADLINE_SECONDS, self.reservation_ttl - self.effective_margin)


def operation_seconds(
    *,
    timeout_seconds: float,
    max_retries: int,
    routes: int,
    schema_repair: bool,
    lifetimes: Lifetimes,
) -> float:
    """How long one operation may take, all attempts, backoffs and fallbacks included."""
    longest_backoff = max(BACKOFF_CAP_SECONDS, lifetimes.max_retry_after)
    per_route = (max_retries + 1) * timeout_seconds + max_retries * longest_backoff
    worst = max(routes, 1) * per_route * (2 if schema_repair else 1)
    return max(MIN_DEADLINE_SECONDS, min(worst, lifetimes.max_deadline))


def reservation_seconds(*, remaining: float, lifetimes: Lifetimes) -> float:
    """How long a reservation taken now lives: the operation's time left plus the margin."""
    return max(0.0, remaining) + lifetimes.effective_margin
