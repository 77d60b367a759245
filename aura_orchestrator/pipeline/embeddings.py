"""Step 5 of an embeddings operation: vectors from the chain, through the attempts,
retries, fallback and deadline every operation has (`chain.attempt_routes`).

The rest is the pipeline's own: an `OperationRequest` with `embedding` set goes through
`execute` like any other; step 1 plans it (`plan.embedding_plan`: the routes that embed,
the input as prompt, no output), step 7 settles it at the input price, keeps its `data`
in the cache entry (`Answer.data`) and writes its row.
"""

from collections.abc import Awaitable, Callable

from aura_orchestrator.caching.services import Answer
from aura_orchestrator.catalog.selectors import Route
from aura_orchestrator.catalog.tokens import count_input_tokens
from aura_orchestrator.pipeline.chain import attempt_routes
from aura_orchestrator.pipeline.plan import cost_of
from aura_orchestrator.pipeline.types import Run, Usage
from aura_orchestrator.pipeline.wire import provider_config
from aura_orchestrator.providers.base import EmbeddingRequest, EmbeddingResult
from aura_orchestrator.providers.http import get_transport
from aura_orchestrator.providers.registry import get_embedder


async def call_embeddings(run: Run) -> None:
    """Step 5: one answer from the chain; its `data` kept as the provider sent it, its
    input tokens counted (the provider's usage, else ours)."""
    request, plan = run.request, run.plan
    embedding = request.embedding
    assert plan is not None and embedding is not None  # an embeddings operation, prepared

    def on(route: Route) -> Callable[[], Awaitable[EmbeddingResult]]:
        embedder = get_embedder(route.kind)
        assert embedder is not None  # the plan keeps only routes that embed
        provider_request = EmbeddingRequest(
            model=route.model_name,
            input=embedding.input,
            dimensions=embedding.dimensions,
            encoding_format=embedding.encoding_format,
            user=request.user,
            timeout_seconds=plan.preset.timeout_seconds,
            extra=request.extra,
        )
        # The key inside the attempt (as pipeline.chain.attempt_chain): a refusal sends nothing.
        return lambda: embedder.embed(get_transport(), provider_config(route), provider_request)

    result = await attempt_routes(run, on)
    route = run.route
    assert route is not None  # the route that served (attempt_routes)
    run.answer = Answer(choices=(), data=result.data)
    if result.usage is not None:
        tokens_in = result.usage.tokens_in
    else:
        tokens_in = count_input_tokens(embedding.items, model=route.model_name)
    cost = cost_of(route, tokens_in=tokens_in, tokens_out=0) or 0
    run.usage.add(Usage(tokens_in=tokens_in, cost_micros=cost))
