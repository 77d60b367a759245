"""Rate limits as sliding windows: what a limit is, what one admission asks, what it
answers (pure; the stores in this package keep the windows).

Why a sliding log and not GCRA or a token bucket: the promise is "N per minute" in the
sense operators and tests read it, at most N in ANY 60 s, with no burst of 2N across a
boundary (a fixed window's flaw) and no off-by-one from a refill during the burst (a
bucket admits N + the refill of the seconds the burst took). A log holds each admitted
call's time (and, for tokens, its cost) for one window, so it is exact; its memory is
one entry per call of the last minute per limit, small at the rates a key has. Tokens
are admitted at the call's worst case and corrected to actual usage when it settles, so
the window counts what was used, not what was feared. Calls in flight are a set whose
members expire (a killed worker's calls leave by themselves).
"""

from dataclasses import dataclass
from enum import StrEnum

WINDOW_SECONDS = 60


class Kind(StrEnum):
    REQUESTS = "requests"  # per minute, each call counts 1
    TOKENS = "tokens"  # per minute, each call counts its tokens (worst case, then actual)
    IN_FLIGHT = "in_flight"  # calls admitted and not yet ended


@dataclass(frozen=True, slots=True)
class Check:
    """One limit one call must pass: `key` names its window (scope and subject)."""

    key: str
    kind: Kind
    limit: int
    cost: int = 1  # tokens for Kind.TOKENS; 1 otherwise
    scope: str = ""  # how a refusal names the limit's owner: api_key:ingest, end_user:u-42

    @property
    def field(self) -> str:
        """The limit's name, as set_limits and the admin call it."""
        return {
            Kind.REQUESTS: "requests_per_minute",
            Kind.TOKENS: "tokens_per_minute",
            Kind.IN_FLIGHT: "max_in_flight",
        }[self.kind]


@dataclass(frozen=True, slots=True)
class Standing:
    """A limit as the admission left it: for the `x-ratelimit-*` headers."""

    check: Check
    remaining: int
    reset_seconds: float  # until the window holds nothing of now's (0: already empty)


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    standings: tuple[Standing, ...]
    refused_by: Check | None = None
    retry_after_seconds: float = 0.0  # when refused: until the refusing limit has room


def reset_text(seconds: float) -> str:
    """OpenAI's `x-ratelimit-reset-*` form: `1s`, `6m0s`, `250ms`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = int(seconds + 0.999)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def headers(decision: Decision) -> dict[str, str]:
    """OpenAI's rate-limit headers: for requests and tokens, the tightest limit of each
    (the one with the least remaining); on a refusal `retry-after-ms`, which OpenAI's
    SDKs read before Retry-After, so they wait just long enough by themselves."""
    out: dict[str, str] = {}
    for kind, suffix in ((Kind.REQUESTS, "requests"), (Kind.TOKENS, "tokens")):
        standings = [s for s in decision.standings if s.check.kind is kind]
        if not standings:
            continue
        tightest = min(standings, key=lambda s: (s.remaining, -s.reset_seconds))
        out[f"x-ratelimit-limit-{suffix}"] = str(tightest.check.limit)
        out[f"x-ratelimit-remaining-{suffix}"] = str(tightest.remaining)
        out[f"x-ratelimit-reset-{suffix}"] = reset_text(tightest.reset_seconds)
    if not decision.admitted:  # (Retry-After itself: errors.AuraError.headers)
        out["retry-after-ms"] = str(max(1, round(decision.retry_after_seconds * 1000)))
    return out
