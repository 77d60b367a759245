"""The demo's scenario: its project, providers and budgets, the video-making sessions'
prompts, and the plan of the run (which operation, in which session, against what budget)."""

import base64
import math
import random
import struct
import zlib
from dataclasses import dataclass
from decimal import Decimal

from django.utils.text import slugify

from aura_orchestrator.providers.base import Tool
from presets.operation_types import OperationType

PROJECT = "demo"
PRIMARY, BACKUP = "demo", "demo-backup"
EMBEDDER = "demo-embed"  # the primary upstream's embeddings model, as a provider of its own
DEMO_PROVIDERS = (PRIMARY, BACKUP, EMBEDDER)
# Stored encrypted like a key pasted in the admin: the simulator accepts any key.
DEMO_API_KEY = "sk-demo-simulated"

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
STYLE_GUIDE: tuple[str, str, dict] = (
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


# Retrieval with tools: the model calls them, the demo hands back their results, the model
# answers (a round trip of two operations).
KNOWLEDGE_TOOLS = (
    Tool(
        name="search_knowledge_base",
        description="Search the channel's knowledge base; returns passages with sources.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 3},
                "top_k": {"type": "integer", "minimum": 3, "maximum": 10},
            },
            "required": ["query", "top_k"],
        },
    ),
    Tool(
        name="fetch_source",
        description="Fetch one cited source in full.",
        parameters={
            "type": "object",
            "properties": {"source_id": {"type": "string", "minLength": 6}},
            "required": ["source_id"],
        },
    ),
)


def _png(width: int, height: int, sky: bytes, ground: bytes) -> bytes:
    """A real PNG (8-bit RGB, unfiltered rows): a sky over the ground, a storyboard frame."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(
        b"\x00" + (sky if y < height * 2 // 3 else ground) * width for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# Scene analysis looks at a storyboard frame sent inline; visual prompts at a reference
# image by URL (never fetched: the simulator only counts images).
STORYBOARD_FRAME = "data:image/png;base64," + base64.b64encode(
    _png(32, 18, sky=b"\x87\xce\xeb", ground=b"\x2e\x8b\x57")
).decode("ascii")
REFERENCE_IMAGES = "https://images.example.com/demo/reference/{}.jpg"


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
    images: tuple[str, ...] = ()  # image URLs sent with the prompt (data: or https)
    tools: tuple[Tool, ...] = ()  # offered: a round trip, the call then the answer
    embed: tuple[str, ...] = ()  # texts to embed: an embeddings operation (no chat)

    @property
    def operations(self) -> int:
        """Operations it takes: two for a tool round trip."""
        return 2 if self.tools else 1


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
            f"Three cinematic 16:9 image prompts for {scene} of the video about {topic}, in "
            "the style of the reference image.",
            {"images": (REFERENCE_IMAGES.format(slugify(topic)),)},
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
            f"Rate from 1 to 10 how important {scene}, drawn in this storyboard frame, is to "
            f"the video about {topic}.",
            {"response_schema": SCORE_SCHEMA, "images": (STORYBOARD_FRAME,)},
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
    the simulated history), sizes varying between sessions; `operations` in all, a tool
    round trip counting two."""
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
        slots, step = 0, 0
        while slots < size:
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
            if op == OperationType.RAG_RETRIEVAL and step > 1 and slots + 2 <= size:
                # Retrieval through tools, every other time two calls in parallel.
                extra = {**extra, "tools": KNOWLEDGE_TOOLS}
                prompt += " Use the tools." + (" [[tool_calls:2]]" if len(plan) % 2 else "")
            elif op == OperationType.RAG_RETRIEVAL and step > 1:
                # The passages a retrieval would index, embedded in one batch.
                extra = {**extra, "embed": tuple(_context(rng, topic, 2) for _ in range(3))}
            low, high = TOKENS_OUT[op]
            # Deterministic per prompt, so a repeated prompt is a cache key repeated.
            tokens_out = low + zlib.crc32(prompt.encode()) % (high - low)
            providers: tuple[str, ...] = (
                (EMBEDDER,)
                if extra.get("embed")
                else (BACKUP, PRIMARY)
                if op in MINI_FIRST
                else (PRIMARY, BACKUP)
            )
            work = Work(
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
            plan.append(work)
            slots += work.operations
            step += 1
    return plan
