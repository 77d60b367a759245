"""What comes into the pipeline and what goes out, and the state of one run.

`Principal`, `PresetOverrides`, `OperationRequest` and `OperationResult` are the public
types (re-exported by `aura_orchestrator.pipeline`); `Plan`, `Usage` and `Run` are the
pipeline's own bookkeeping, shared by its modules.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from django.utils import timezone

from aura_orchestrator import errors
from aura_orchestrator.caching.services import Answer, CachedAnswer
from aura_orchestrator.catalog.selectors import Route
from aura_orchestrator.providers.base import (
    ChatMessage,
    EmbeddingInputValue,
    Refusal,
    Tool,
    ToolChoice,
)
from aura_orchestrator.ratelimit.window import Check, Decision
from budgets.models import LlmSession
from budgets.reserving import Reservation
from budgets.services import Caps
from budgets.spending import SpendState
from presets.operation_types import OperationType
from presets.selectors import EffectivePreset

# --- What comes in and what goes out ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the project (tenant) and the API key."""

    project_id: int
    api_key_id: int | None = None


@dataclass(frozen=True, slots=True)
class PresetOverrides:
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    timeout_seconds: float | None = None
    max_retries: int | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingInput:
    """What an embeddings operation embeds (its request has no messages)."""

    input: EmbeddingInputValue  # validated, as the client sent it
    dimensions: int | None = None
    encoding_format: str | None = None

    @property
    def items(self) -> list[str] | list[list[int]]:
        """One entry per vector: a text or a token array."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [value]
        return cast("list[str] | list[list[int]]", value)


@dataclass(frozen=True, slots=True)
class OperationRequest:
    session_id: str
    operation_type: OperationType
    messages: tuple[ChatMessage, ...]
    enable_cache: bool | None = None
    cache_ttl_seconds: int | None = None
    caps: Caps | None = None
    budget_name: str | None = None
    overrides: PresetOverrides = PresetOverrides()
    providers: tuple[str, ...] | None = None
    model: str | None = None
    response_schema: dict[str, Any] | None = None
    # Passed through to the provider (adapters translate them for their kind).
    stop: tuple[str, ...] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    # The application's end user whose spend budgets apply (`end_user`, the gateway's
    # X-Aura-End-User header or `user` field); telemetry keeps it.
    end_user: str | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    n: int | None = None  # choices asked for; the worst case holds n times one choice
    extra: dict[str, Any] = field(default_factory=dict)  # CompletionRequest.extra
    # CompletionRequest.headers: headers for the provider (the Messages front's
    # `anthropic-beta`); the kinds they mean nothing to drop them.
    provider_headers: tuple[tuple[str, str], ...] = ()
    source: str = "api"
    embedding: EmbeddingInput | None = None  # an embeddings operation (messages empty)

    @property
    def choices(self) -> int:
        return self.n or 1

    @property
    def plain(self) -> bool:
        """Text messages only, one choice, nothing for a kind to refuse: most requests,
        which skip the work the others need (capabilities, images, tools)."""
        return (
            not self.tools
            and not self.extra
            and self.choices == 1
            and all(
                m.parts is None and not m.tool_calls and m.tool_call_id is None
                for m in self.messages
            )
        )


@dataclass(slots=True)
class OperationResult:
    operation_id: uuid.UUID
    success: bool
    content: str | None
    was_cached: bool
    error: errors.AuraError | None
    telemetry: dict[str, Any]
    budget: dict[str, Any]
    finish_reason: str | None = None
    answer: Answer | None = None  # every choice, tool calls and provider fields (gateways)
    headers: dict[str, str] = field(default_factory=dict)  # the rate limits' (x-ratelimit-*)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """Choice 0's tool calls, in OpenAI's shape."""
        return self.answer.tool_calls() if self.answer else []

    @property
    def status(self) -> int:
        return 200 if self.error is None else self.error.status


# --- Internal state of one run -----------------------------------------------------------


@dataclass(slots=True)
class Plan:
    """What step 1 (prepare) decided: the effective preset, the route chain, the caps,
    the cache key, the prompt's size; the session's ledger and a cache hit once read."""

    preset: EffectivePreset
    chain: list[Route]
    caps: Caps | None
    cache_key: str | None
    cache_ttl: int
    prompt_tokens: int
    max_output_tokens: int  # the worst case's output: n choices of max_tokens
    skipped: list[tuple[Route, Refusal]] = field(default_factory=list)  # cannot take it
    session: LlmSession | None = None
    cached: CachedAnswer | None = None


@dataclass(slots=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cost_micros: int = 0
    # The parts of tokens_in read from and written to the provider's prompt cache: what
    # telemetry keeps and prices the caching's savings from.
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    # What prompt caching took off this usage's cost, in micro-dollars (negative when
    # writes cost more than reads saved); exact, not rounded, summed per operation.
    cache_savings_micros: Decimal = Decimal(0)

    def add(self, other: "Usage") -> None:
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.cost_micros += other.cost_micros
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cache_savings_micros += other.cache_savings_micros

    def minus(self, other: "Usage") -> "Usage":
        return Usage(
            tokens_in=self.tokens_in - other.tokens_in,
            tokens_out=self.tokens_out - other.tokens_out,
            cost_micros=self.cost_micros - other.cost_micros,
            cache_read_tokens=self.cache_read_tokens - other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens - other.cache_write_tokens,
            cache_savings_micros=self.cache_savings_micros - other.cache_savings_micros,
        )

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass(frozen=True, slots=True)
class LimitsHeld:
    """The rate-limit windows that admitted a run (`decision`), to end with it."""

    checks: list[Check]
    decision: Decision


@dataclass(slots=True)
class Run:
    """One operation in flight, from `execute` (or `execute_stream`) to its row."""

    request: OperationRequest
    principal: Principal
    operation_id: uuid.UUID = field(default_factory=uuid.uuid4)
    started_at: object = field(default_factory=timezone.now)
    t0: float = field(default_factory=time.perf_counter)
    plan: Plan | None = None
    reservation: Reservation | None = None
    # The spend budgets that apply (budgets/spending.py) and their totals after the last
    # reservation: the budget body's tightest remaining, soft-cap warnings, alerts.
    spend: SpendState | None = None
    # The rate limits that admitted it (pipeline/limits.py): ended with it.
    limits: LimitsHeld | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # perf_counter at each provider attempt's start (skipped routes have none): the
    # attempts' spans when OpenTelemetry export is on (aura_orchestrator/tracing.py).
    attempt_starts: list[float] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)  # everything the providers reported
    charged: Usage = field(default_factory=Usage)  # the part already settled on the ledger
    route: Route | None = None
    warnings: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    answer: Answer | None = None  # beyond the text: choices, tool calls, provider fields
    streamed: bool = False
    ttft_ms: int | None = None  # streams: time to the first text delta
    deadline: float | None = None  # the loop's clock; set when it first reserves
    database_down: bool = False  # it failed for want of a database: its finish is journaled
    finishing: bool = False  # its finish has begun: it writes the one row

    def time_left(self) -> float:
        deadline = self.deadline
        assert deadline is not None  # asked only once reserve (step 4) has set it
        return deadline - asyncio.get_running_loop().time()

    def elapsed_ms(self) -> int:
        return round((time.perf_counter() - self.t0) * 1000)

    @property
    def retry_count(self) -> int:
        return max(0, len(self.attempts) - 1)

    @property
    def unsettled(self) -> Usage:
        return self.usage.minus(self.charged)
