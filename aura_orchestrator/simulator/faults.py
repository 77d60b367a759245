"""Scripted faults: what the next answer does wrong."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Fault:
    """One scripted answer to the next completion or embedding request (FIFO order)."""

    status: int = 200
    headers: dict | None = None
    body: str | dict | None = None  # raw body override for error statuses
    delay: float = 0.0  # seconds to wait before answering (to trigger client timeouts)
    malformed: bool = False  # 200 whose body (or stream event) is not JSON
    reset: bool = False  # drop the connection with a TCP reset instead of answering
    content: str | None = None  # success content override (no tool calls then)
    usage: tuple[int, int] | None = None  # (prompt, completion) tokens; embeddings: prompt
    drip: float = 0.0  # > 0: headers at once, then the body one byte every `drip` seconds
    drip_after: int = 0  # bytes of the body sent at once before the drip starts
    usage_at_end_only: bool = False  # Anthropic streams: message_start's usage all zeros


def random_fault(rng: random.Random, error_rate: float) -> Fault | None:
    """With probability `error_rate`, a 429 (Retry-After: 0) or a 500, evenly."""
    if error_rate and rng.random() < error_rate:
        if rng.random() < 0.5:
            return Fault(status=429, headers={"Retry-After": "0"})
        return Fault(status=500)
    return None
