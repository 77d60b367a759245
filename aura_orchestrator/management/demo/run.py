"""The run: the demo's providers, budgets, project and key configured against the simulated
upstreams, then the plan driven through the real pipeline, a few operations at a time."""

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction

from aura_orchestrator.catalog.models import Provider
from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.management.demo.scenario import (
    BACKUP,
    CONSTRAINTS,
    DEMO_API_KEY,
    EMBEDDER,
    PRIMARY,
    PROJECT,
    Work,
)
from aura_orchestrator.pipeline import (
    EmbeddingInput,
    OperationRequest,
    OperationResult,
    PresetOverrides,
    Principal,
    execute,
)
from aura_orchestrator.providers.base import (
    ChatMessage,
    ContentPart,
    ImagePart,
    TextPart,
    ToolCall,
)
from aura_orchestrator.providers.http import close_transports
from aura_orchestrator.simulator import FakeUpstream
from aura_orchestrator.tenancy.models import ApiKey, Project
from aura_orchestrator.tenancy.services import api_key_create, project_get_or_create
from budgets.models import BudgetConstraint


@dataclass(slots=True)
class Tally:
    """What the run did so far, counted as results come in."""

    done: int = 0
    ok: int = 0
    failed: int = 0
    cached: int = 0
    refused: int = 0
    fallbacks: int = 0
    retries: int = 0
    cost: Decimal = Decimal(0)
    errors: Counter = field(default_factory=Counter)

    def add(self, result: OperationResult) -> None:
        self.done += 1
        t = result.telemetry
        self.ok += result.success
        self.failed += not result.success
        self.cached += result.was_cached
        self.retries += t.get("retry_count") or 0
        self.cost += Decimal(str(t.get("estimated_cost") or 0))
        if len({a["provider"] for a in t.get("attempts") or []}) > 1:
            self.fallbacks += 1
        if result.error is not None:
            self.errors[result.error.code] += 1
            self.refused += result.error.code == "budget_exceeded"


@transaction.atomic
def demo_setup(primary: FakeUpstream, backup: FakeUpstream) -> tuple[Project, str | None]:
    """Providers `demo` and `demo-backup` on the two upstreams (and `demo-embed`, the
    primary's embeddings model), the demo budgets, the
    project, and an API key if it has none (its raw key, shown once; else None)."""
    provider_configure(
        name=PRIMARY,
        kind="openai",
        base_url=primary.openai_base_url,
        api_key_env="",
        api_key=DEMO_API_KEY,
        model="demo-gpt",
        input_price=Decimal("2.50"),
        output_price=Decimal("10.00"),
    )
    configured = provider_configure(
        name=BACKUP,
        kind="openai",
        base_url=backup.openai_base_url,
        api_key_env="",
        api_key=DEMO_API_KEY,
        model="demo-gpt-mini",
        input_price=Decimal("0.15"),
        output_price=Decimal("0.60"),
    )
    Provider.objects.filter(pk=configured.provider.pk).update(priority=200)
    provider_configure(
        name=EMBEDDER,
        kind="openai",
        base_url=primary.openai_base_url,
        api_key_env="",
        api_key=DEMO_API_KEY,
        model="demo-embed",
        input_price=Decimal("0.02"),
        output_price=Decimal("0"),
    )
    for name, caps in CONSTRAINTS.items():
        BudgetConstraint.objects.update_or_create(name=name, defaults=caps)
    project = project_get_or_create(name=PROJECT)
    raw_key = None
    if not ApiKey.objects.filter(project=project, revoked_at__isnull=True).exists():
        raw_key = api_key_create(name="demo-service", project=project).raw_key
    return project, raw_key


async def demo_drive(
    plan: list[Work],
    *,
    project: Project,
    concurrency: int,
    progress: Callable[[Tally, int], None],
    api_key_id: int | None = None,
) -> Tally:
    """Every operation of the plan through the pipeline, `concurrency` works at a time (a
    tool round trip's two operations in turn); `progress(tally, total)` after each one.
    Calls are the key `api_key_id`'s (its spend budgets apply) when given."""
    # As the project's first live key calls: its spend budgets apply too.
    principal = Principal(project_id=project.pk, api_key_id=api_key_id)
    tally = Tally()
    total = sum(work.operations for work in plan)
    queue: asyncio.Queue[Work] = asyncio.Queue()
    for work in plan:
        queue.put_nowait(work)

    async def run(request: OperationRequest) -> OperationResult:
        result = await execute(request, principal=principal)
        tally.add(result)
        progress(tally, total)
        return result

    async def worker() -> None:
        while True:
            try:
                work = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            result = await run(_request(work))
            if work.tools:
                await run(_request(work, answered=result))

    try:
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(plan)))))
    finally:
        await close_transports()
    return tally


def _request(work: Work, *, answered: OperationResult | None = None) -> OperationRequest:
    """The work's request; with `answered` (a tool round trip's first result), the second
    one: its tool calls and their results handed back (the simulator then answers "Tool
    results: ..."), or, when the first got no call (it failed), the question asked again."""
    if work.embed:
        return OperationRequest(
            session_id=work.session_id,
            operation_type=work.operation_type,
            messages=(),
            embedding=EmbeddingInput(input=list(work.embed)),
            budget_name=work.budget,
            providers=work.providers,
            source="demo",
        )
    parts: tuple[ContentPart, ...] = (
        TextPart(work.prompt),
        *(ImagePart(url) for url in work.images),
    )
    messages: tuple[ChatMessage, ...] = (
        ChatMessage(role="system", content=work.system),
        ChatMessage(role="user", content=work.prompt, parts=parts if work.images else None),
    )
    calls = [
        ToolCall(
            id=call["id"], name=call["function"]["name"], arguments=call["function"]["arguments"]
        )
        for call in (answered.tool_calls if answered else [])
    ]
    if calls:
        messages += (ChatMessage(role="assistant", content="", tool_calls=tuple(calls)),)
        messages += tuple(
            ChatMessage(role="tool", content=_tool_result(call), tool_call_id=call.id)
            for call in calls
        )
    return OperationRequest(
        session_id=work.session_id,
        operation_type=work.operation_type,
        messages=messages,
        tools=work.tools,
        budget_name=work.budget,
        providers=work.providers,
        response_schema=work.response_schema,
        overrides=PresetOverrides(max_retries=work.max_retries),
        source="demo",
    )


def _tool_result(call: ToolCall) -> str:
    """What the demo's knowledge base answers a call (JSON, as tools usually answer)."""
    if call.name == "fetch_source":
        return '{"source": "Encyclopaedia entry, 2 pages", "retrieved": true}'
    return '{"passages": 3, "sources": ["field study", "review article", "textbook"]}'
