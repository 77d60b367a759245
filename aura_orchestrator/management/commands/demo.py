"""`manage.py demo`: fill an install with realistic sessions and telemetry, no provider key.

Two simulated OpenAI-compatible upstreams run on loopback inside this process (latency,
occasional 429s and 500s); they are configured as providers `demo` and `demo-backup`, and a
few hundred operations of all 13 types go through the real pipeline: presets, cache,
budget reservations, retries, fallback, schema validation and telemetry.

The run takes seconds, so afterwards the rows of this run are spread over the last
`--history-hours` (order kept: a cache hit still follows the answer it reuses) for the
charts to show a history. The demo providers are then disabled: their upstreams die with
this process, and real traffic must never be routed to them.
"""

import asyncio
import math
import os
import random
import secrets
import sys
import time
import zlib
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.text import slugify

from aura_orchestrator.catalog.models import Provider
from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.pipeline import (
    OperationRequest,
    OperationResult,
    PresetOverrides,
    Principal,
    execute,
)
from aura_orchestrator.providers.base import ChatMessage
from aura_orchestrator.providers.http import close_transports
from aura_orchestrator.simulator import FakeUpstream
from aura_orchestrator.tenancy.models import ApiKey, Project
from aura_orchestrator.tenancy.services import api_key_create, project_get_or_create
from budgets.models import BudgetConstraint, LlmSession
from presets.operation_types import OperationType
from telemetry.models import OperationTelemetry
from telemetry.tasks import telemetry_rollup_job

PROJECT = "demo"
PRIMARY, BACKUP = "demo", "demo-backup"
SECRET_ENV = "AURA_DEMO_API_KEY"  # the simulator accepts any key; set so headers look real

# name, caps, hard?  Sized against demo-gpt prices so that a full session lands near its cap.
CONSTRAINTS = {
    "demo-standard": dict(
        description="Demo: a typical video session ($0.22, hard).",
        max_tokens_per_operation=8000,
        max_cost_per_session=Decimal("0.22"),
        enforce_hard_limits=True,
    ),
    "demo-tight": dict(
        description="Demo: a deliberately tight budget, so refusals show ($0.05, hard).",
        max_cost_per_session=Decimal("0.05"),
        enforce_hard_limits=True,
    ),
    "demo-soft": dict(
        description="Demo: a soft token cap, so warnings and overruns show (12k tokens).",
        max_tokens_per_session=12000,
        enforce_hard_limits=False,
    ),
}
# Session i gets BUDGET_CYCLE[i % 6]: half standard, one tight, one soft, one uncapped.
BUDGET_CYCLE = ("demo-standard", "demo-tight", "demo-standard", "demo-soft", None, "demo-standard")

TOPICS = (
    "how coral reefs recover after bleaching",
    "the history of the printing press",
    "a beginner's guide to sourdough bread",
    "the physics of black holes",
    "urban beekeeping on city rooftops",
    "electric ferries in Scandinavian fjords",
    "how vaccines train the immune system",
    "trade along the Silk Road",
    "the mathematics of origami",
    "bioluminescence in the deep sea",
    "volcanic islands of the North Atlantic",
    "the invention of the transistor",
    "migration routes of arctic terns",
    "restoring wetlands to store carbon",
    "the architecture of Gothic cathedrals",
    "how GPS satellites keep time",
)
CONCEPTS = (
    "plate tectonics",
    "compound interest",
    "photosynthesis",
    "public-key cryptography",
    "the Doppler effect",
    "supply and demand",
    "CRISPR gene editing",
    "ocean acidification",
)
FACTS = (
    "coral spawning cycles",
    "Gutenberg's movable type",
    "wild yeast fermentation",
    "event horizons",
    "honeybee waggle dances",
    "battery chemistry of ferries",
    "mRNA vaccine mechanisms",
    "caravanserais on trade routes",
    "fold-and-cut theorems",
    "luciferin and luciferase",
)
SENTENCES = (
    "The opening hook shows the subject at its most striking, then asks the question the "
    "video answers.",
    "Each scene introduces one idea, grounds it in a concrete example and ends on a visual "
    "that leads into the next.",
    "The narrator speaks to a curious adult with no specialist background, in short sentences.",
    "Facts come from the retrieved sources and every number is stated with its unit.",
    "The middle act contrasts two explanations and shows why the evidence favours one of them.",
    "The closing scene returns to the opening image with what the viewer now understands.",
)
STYLE_GUIDE = (
    "You retrieve facts from the knowledge base and cite them.",
    "Retrieve the channel's style guide: tone of voice, pacing, words to avoid.",
    {},
)
SCENES = ("the hook", "the big question", "the mechanism", "a surprising detail", "the payoff")

# Output tokens per operation type (min, max): what a real model tends to write.
TOKENS_OUT = {
    OperationType.PLANNING: (600, 1400),
    OperationType.SCRIPTING: (900, 2400),
    OperationType.SSML_PLANNING: (400, 1100),
    OperationType.VISUAL_PROMPTS: (150, 420),
    OperationType.RAG_RETRIEVAL: (200, 600),
    OperationType.SCENE_ANALYSIS: (60, 150),
    OperationType.COMPLEXITY_ANALYSIS: (60, 150),
    OperationType.COHERENCE_VALIDATION: (80, 220),
    OperationType.NARRATIVE_VALIDATION: (150, 420),
    OperationType.TRANSITION_GENERATION: (20, 60),
    OperationType.SCRIPT_REFINEMENT: (500, 1500),
    OperationType.CREATIVE: (150, 420),
    OperationType.COMPLETION: (60, 150),
}
# A video session's usual order of work; every type appears in each cycle.
FLOW = (
    OperationType.PLANNING,
    OperationType.RAG_RETRIEVAL,
    OperationType.COMPLEXITY_ANALYSIS,
    OperationType.SCRIPTING,
    OperationType.SCENE_ANALYSIS,
    OperationType.VISUAL_PROMPTS,
    OperationType.SSML_PLANNING,
    OperationType.TRANSITION_GENERATION,
    OperationType.COHERENCE_VALIDATION,
    OperationType.NARRATIVE_VALIDATION,
    OperationType.SCRIPT_REFINEMENT,
    OperationType.CREATIVE,
    OperationType.COMPLETION,
)
# Cheap, short operations go to the small model first.
MINI_FIRST = {
    OperationType.SCENE_ANALYSIS,
    OperationType.COMPLEXITY_ANALYSIS,
    OperationType.TRANSITION_GENERATION,
    OperationType.COMPLETION,
}
SCORE_SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "reason": {"type": "string", "minLength": 8},
    },
    "required": ["score", "reason"],
}


@dataclass(frozen=True, slots=True)
class Work:
    session_id: str
    operation_type: OperationType
    system: str
    prompt: str
    budget: str | None
    providers: tuple[str, ...]
    response_schema: dict | None = None
    max_retries: int | None = None


def _context(rng: random.Random, topic: str, sentences: int) -> str:
    """A plan excerpt sent along as context, so prompts have realistic sizes."""
    body = " ".join(rng.choice(SENTENCES) for _ in range(sentences))
    return f"Video: {topic}.\nPlan excerpt: {body}"


def _prompt(op: OperationType, rng: random.Random, topic: str, step: int) -> tuple[str, str, dict]:
    """(system prompt, user prompt, extra Work fields) for one operation. Prompts of the
    cacheable types are drawn from small pools, so sessions repeat them and the cache hits."""
    scene = SCENES[step % len(SCENES)]
    if op == OperationType.PLANNING:
        minutes = rng.choice((3, 5, 8, 12))
        return (
            "You are a video planning assistant.",
            f"Create a plan for a {minutes}-minute explainer video about {topic}: audience, "
            "structure, five key scenes and tone.",
            {},
        )
    if op == OperationType.SCRIPTING:
        return (
            "You write narration scripts for explainer videos.",
            f"{_context(rng, topic, 8)}\nWrite the narration for {scene}, about 250 words.",
            {},
        )
    if op == OperationType.SSML_PLANNING:
        return (
            "You turn narration into SSML for a speech engine.",
            f"Add SSML pauses and emphasis to the narration of {scene} in the video about {topic}.",
            {},
        )
    if op == OperationType.VISUAL_PROMPTS:
        return (
            "You write prompts for an image generator.",
            f"Three cinematic 16:9 image prompts for {scene} of the video about {topic}.",
            {},
        )
    if op == OperationType.RAG_RETRIEVAL:
        return (
            "You retrieve facts from the knowledge base and cite them.",
            f"Retrieve the key facts, with sources, about {rng.choice(FACTS)}.",
            {},
        )
    if op == OperationType.SCENE_ANALYSIS:
        return (
            "You rate scenes. Answer in JSON.",
            f"Rate from 1 to 10 how important {scene} is to the video about {topic}.",
            {"response_schema": SCORE_SCHEMA},
        )
    if op == OperationType.COMPLEXITY_ANALYSIS:
        return (
            "You assess how hard a concept is to explain. Answer in JSON.",
            f"Rate from 1 to 10 how hard {rng.choice(CONCEPTS)} is to explain to a general "
            "audience.",
            {"response_schema": SCORE_SCHEMA},
        )
    if op == OperationType.COHERENCE_VALIDATION:
        return (
            "You check that consecutive scenes connect.",
            f"Does {scene} follow coherently from the scene before it in the video about {topic}?",
            {},
        )
    if op == OperationType.NARRATIVE_VALIDATION:
        return (
            "You review the narrative arc of scripts.",
            f"{_context(rng, topic, 4)}\nValidate the arc: hook, development, payoff.",
            {},
        )
    if op == OperationType.TRANSITION_GENERATION:
        nxt = SCENES[(step + 1) % len(SCENES)]
        return (
            "You write one-sentence transitions.",
            f"A transition from {scene} to {nxt} in the video about {topic}.",
            {},
        )
    if op == OperationType.SCRIPT_REFINEMENT:
        return (
            "You are a script editor.",
            f"{_context(rng, topic, 10)}\nTighten this narration by 20%, keep every fact.",
            {},
        )
    if op == OperationType.CREATIVE:
        return (
            "You are a creative director.",
            f"Five catchy titles and a thumbnail idea for a video about {topic}.",
            {},
        )
    return (
        "You are a helpful assistant.",
        f"Summarise the video about {topic} in two sentences for its description.",
        {},
    )


def demo_plan(*, operations: int, sessions: int, seed: int, run_tag: str) -> list[Work]:
    """The work of the run, session by session (so each session keeps to its own stretch of
    the simulated history), sizes varying between sessions."""
    rng = random.Random(seed)
    weights = [rng.uniform(0.6, 1.6) for _ in range(sessions)]
    total = sum(weights)
    sizes = [max(1, math.floor(operations * w / total)) for w in weights]
    for i in range(operations - sum(sizes)):
        sizes[i % sessions] += 1
    while sum(sizes) > operations:  # more sessions than operations
        sizes[sizes.index(max(sizes))] -= 1
    plan: list[Work] = []
    for index, size in enumerate(sizes):
        topic = TOPICS[index % len(TOPICS)]
        slug = slugify(topic)[:32].rstrip("-")
        session_id = f"video-{slug}-{run_tag}"
        budget = BUDGET_CYCLE[index % len(BUDGET_CYCLE)]
        for step in range(size):
            # Planning first, then the channel's style guide (the same retrieval in every
            # session: the cache answers it), then the other types in turn, each session
            # starting at another one, so that even a short run covers all 13.
            if step == 0:
                op = OperationType.PLANNING
            elif step == 1:
                op = OperationType.RAG_RETRIEVAL
            else:
                op = FLOW[1 + (step - 2 + index * 4) % (len(FLOW) - 1)]
            if step == 1:
                system, prompt, extra = STYLE_GUIDE
            else:
                system, prompt, extra = _prompt(op, rng, topic, step)
            low, high = TOKENS_OUT[op]
            # Deterministic per prompt, so a repeated prompt is a cache key repeated.
            tokens_out = low + zlib.crc32(prompt.encode()) % (high - low)
            providers = (BACKUP, PRIMARY) if op in MINI_FIRST else (PRIMARY, BACKUP)
            plan.append(
                Work(
                    session_id=session_id,
                    operation_type=op,
                    system=system,
                    prompt=f"{prompt} [[tokens_out:{tokens_out}]]",
                    budget=budget,
                    providers=providers,
                    # Some calls do not retry, so a 429/500 falls straight to the backup.
                    max_retries=0 if rng.random() < 0.4 else None,
                    **extra,
                )
            )
    return plan


@dataclass(slots=True)
class Tally:
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


def _history_warp(hours: float) -> list[float]:
    """Cumulative share of traffic over the window, in 10-minute slots, busier in the
    working day (UTC) than at night: a monotone map from run time to history."""
    now = timezone.now()
    slots = max(1, int(hours * 6))
    start = now - timedelta(hours=hours)
    weights = []
    for i in range(slots):
        hour = (start + timedelta(minutes=10 * i)).hour + (i % 6) / 6
        weights.append(0.25 + math.exp(-(((hour - 14.5) / 4.0) ** 2)))
    cumulative, acc = [], 0.0
    total = sum(weights)
    for w in weights:
        acc += w / total
        cumulative.append(acc)
    return cumulative


class Command(BaseCommand):
    help = (
        "Fill this install with realistic sessions and telemetry: simulated upstreams on "
        "loopback, providers `demo` and `demo-backup`, a project `demo`, operations of all "
        "13 types through the real pipeline."
    )

    def add_arguments(self, parser):
        parser.add_argument("--operations", type=int, default=300)
        parser.add_argument("--sessions", type=int, default=12)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help="Operations in flight at once (default 16; 6 on SQLite, a single writer).",
        )
        parser.add_argument(
            "--latency", type=float, default=0.25, help="Simulated upstream base latency (s)."
        )
        parser.add_argument(
            "--history-hours",
            type=float,
            default=48,
            help="Spread this run's operations over the last N hours (0: leave them now).",
        )

    def handle(self, *args, **options):
        operations, sessions = options["operations"], options["sessions"]
        latency, history = options["latency"], options["history_hours"]
        sqlite = connection.vendor == "sqlite"
        concurrency = options["concurrency"] or (6 if sqlite else 16)
        if not 1 <= operations <= 20000:
            raise CommandError("--operations must be between 1 and 20000.")
        if not 1 <= sessions <= 1000:
            raise CommandError("--sessions must be between 1 and 1000.")
        if not 1 <= concurrency <= 128:
            raise CommandError("--concurrency must be between 1 and 128.")
        if not 0 <= latency <= 10:
            raise CommandError("--latency must be between 0 and 10 seconds.")
        if not 0 <= history <= 24 * 90:
            raise CommandError("--history-hours must be between 0 and 2160.")
        sessions = min(sessions, operations)

        primary = FakeUpstream(
            latency=latency,
            latency_jitter=latency * 2.5,
            error_rate=0.05,
            seed=options["seed"],
        ).start()
        backup = FakeUpstream(
            latency=latency * 0.6,
            latency_jitter=latency * 1.5,
            error_rate=0.02,
            seed=options["seed"] + 1,
        ).start()
        try:
            project, raw_key = self._setup(primary, backup)
            run_tag = secrets.token_hex(2)
            plan = demo_plan(
                operations=operations, sessions=sessions, seed=options["seed"], run_tag=run_tag
            )
            self.stdout.write(
                f"Running {len(plan)} operations in {sessions} sessions through the pipeline "
                f"({concurrency} at a time) against simulated upstreams on "
                f"127.0.0.1:{primary.port} and 127.0.0.1:{backup.port}…"
            )
            started = timezone.now()
            t0 = time.perf_counter()
            tally = asyncio.run(self._drive(plan, project=project, concurrency=concurrency))
            elapsed = time.perf_counter() - t0
        finally:
            primary.stop()
            backup.stop()
            # Their upstreams are gone: keep the configuration, route no traffic to it.
            Provider.objects.filter(name__in=(PRIMARY, BACKUP)).update(enabled=False)
        if history > 0:
            self._spread(project=project, since=started, hours=history)
        rolled = self._roll_up(hours=history)
        self._summary(
            tally, project=project, raw_key=raw_key, elapsed=elapsed, rolled=rolled, plan=plan
        )

    # -- setup ---------------------------------------------------------------------------

    @transaction.atomic
    def _setup(self, primary: FakeUpstream, backup: FakeUpstream) -> tuple[Project, str | None]:
        os.environ.setdefault(SECRET_ENV, "sk-demo-simulated")
        provider_configure(
            name=PRIMARY,
            kind="openai",
            base_url=primary.openai_base_url,
            api_key_env=SECRET_ENV,
            model="demo-gpt",
            input_price=Decimal("2.50"),
            output_price=Decimal("10.00"),
        )
        configured = provider_configure(
            name=BACKUP,
            kind="openai",
            base_url=backup.openai_base_url,
            api_key_env=SECRET_ENV,
            model="demo-gpt-mini",
            input_price=Decimal("0.15"),
            output_price=Decimal("0.60"),
        )
        Provider.objects.filter(pk=configured.provider.pk).update(priority=200)
        for name, caps in CONSTRAINTS.items():
            BudgetConstraint.objects.update_or_create(name=name, defaults=caps)
        project = project_get_or_create(name=PROJECT)
        raw_key = None
        if not ApiKey.objects.filter(project=project, revoked_at__isnull=True).exists():
            raw_key = api_key_create(name="demo-service", project=project).raw_key
        return project, raw_key

    # -- the run ---------------------------------------------------------------------------

    async def _drive(self, plan: list[Work], *, project: Project, concurrency: int) -> Tally:
        principal = Principal(project_id=project.pk)
        tally = Tally()
        queue: asyncio.Queue[Work] = asyncio.Queue()
        for work in plan:
            queue.put_nowait(work)

        async def worker() -> None:
            while True:
                try:
                    work = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                result = await execute(_request(work), principal=principal)
                tally.add(result)
                self._progress(tally, len(plan))

        try:
            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(plan)))))
        finally:
            await close_transports()
        self.stdout.write("")
        return tally

    def _progress(self, tally: Tally, total: int) -> None:
        width = 30
        filled = round(width * tally.done / total)
        bar = "█" * filled + "·" * (width - filled)
        line = (
            f"\r  [{bar}] {tally.done}/{total}  ok {tally.ok}  cached {tally.cached}  "
            f"failed {tally.failed}"
        )
        # A terminal gets a live bar; a log or a pipe gets a line every 10%.
        if self.stdout.isatty() or tally.done == total or tally.done % max(1, total // 10) == 0:
            self.stdout.write(line, ending="" if self.stdout.isatty() else "\n")
            self.stdout.flush()

    # -- afterwards ------------------------------------------------------------------------

    @transaction.atomic
    def _spread(self, *, project: Project, since: datetime, hours: float) -> None:
        """Map this run's rows, in order, onto the last `hours` hours (busier by day)."""
        rows = list(
            OperationTelemetry.objects.filter(project=project, started_at__gte=since).order_by(
                "started_at", "pk"
            )
        )
        if not rows:
            return
        now = timezone.now()
        first, last = rows[0].started_at, rows[-1].started_at
        span = max((last - first).total_seconds(), 1e-6)
        warp = _history_warp(hours)
        window_start = now - timedelta(hours=hours)
        slot = timedelta(minutes=10)
        for row in rows:
            share = (row.started_at - first).total_seconds() / span
            index = min(bisect_left(warp, share), len(warp) - 1)
            previous = warp[index - 1] if index else 0.0
            within = (share - previous) / max(warp[index] - previous, 1e-9)
            moved = window_start + slot * (index + min(max(within, 0.0), 1.0))
            # Keep the last minutes empty, so the newest operation is not "in the future".
            moved = min(moved, now - timedelta(seconds=30))
            row.completed_at = moved + (row.completed_at - row.started_at)
            row.started_at = moved
        OperationTelemetry.objects.bulk_update(rows, ["started_at", "completed_at"], batch_size=500)
        session_ids = {row.session_id for row in rows}
        spans = (
            OperationTelemetry.objects.filter(project=project, session_id__in=session_ids)
            .values("session_id")
            .annotate(first=Min("started_at"), last=Max("completed_at"))
        )
        for span_row in spans:
            LlmSession.objects.filter(project=project, session_id=span_row["session_id"]).update(
                created_at=span_row["first"], last_activity_at=span_row["last"]
            )

    def _roll_up(self, *, hours: float) -> str:
        """Run the rollup job over the demo's window (its rows were moved into hours the
        periodic job may already have rolled up), so the dashboards read fresh rollups."""
        written = telemetry_rollup_job(hours=math.ceil(hours) + 2)
        return f"rollup job wrote {written} hourly rollup rows"

    def _summary(
        self,
        tally: Tally,
        *,
        project: Project,
        raw_key: str | None,
        elapsed: float,
        rolled: str,
        plan: list[Work],
    ) -> None:
        w = self.stdout.write
        types = len({work.operation_type for work in plan})
        w(self.style.SUCCESS(f"Done in {elapsed:.1f}s: {tally.done} operations, {types} types."))
        rate = tally.cached / tally.done if tally.done else 0
        w(
            f"  succeeded {tally.ok}, failed {tally.failed} "
            f"({', '.join(f'{c} {n}' for c, n in tally.errors.most_common()) or 'none'})"
        )
        w(f"  cache hits {tally.cached} ({rate:.0%}), retries {tally.retries}")
        w(f"  fallbacks to {BACKUP} {tally.fallbacks}, budget refusals {tally.refused}")
        w(f"  estimated cost ${tally.cost.quantize(Decimal('0.000001'))}")
        w(f"  telemetry: {rolled}")
        w(
            f"Providers '{PRIMARY}' and '{BACKUP}' stay configured but disabled (their "
            "simulated upstreams stopped with this command)."
        )
        if raw_key:
            w(f"API key of project '{PROJECT}' (shown once): {raw_key}")
        w(f"Dashboards: http://127.0.0.1:8000/dashboard/?project={project.pk}")
        w("  (staff only: `python manage.py createsuperuser` if you have no admin user yet)")
        sys.stdout.flush()


def _request(work: Work) -> OperationRequest:
    messages = (
        ChatMessage(role="system", content=work.system),
        ChatMessage(role="user", content=work.prompt),
    )
    return OperationRequest(
        session_id=work.session_id,
        operation_type=work.operation_type,
        messages=messages,
        budget_name=work.budget,
        providers=work.providers,
        response_schema=work.response_schema,
        overrides=PresetOverrides(max_retries=work.max_retries),
        source="demo",
    )
