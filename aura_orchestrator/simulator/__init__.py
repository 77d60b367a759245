"""A fake OpenAI and Anthropic upstream: a real HTTP server on loopback, stdlib only
(plus the adapters' kind declarations it is keyed by).

Used by the test suite (scripted faults, captured requests) and by `manage.py demo`
(latency and random errors). Answers are deterministic for a given request, so cache tests
can compare them:

- content is "Simulated answer to: <last user message>", or a minimal JSON instance of the
  requested `response_format` schema, or exactly `...` when the last user message holds the
  marker `[[content:...]]`;
- usage is always reported: prompt tokens ~ characters / 4 (+ the JSON of `tools` / 4,
  + 85 per low-detail image, 765 per other image), completion tokens ~ content characters
  / 4 capped by max_tokens (+ the thinking's characters / 4 + 1), or N when the marker
  `[[tokens_out:N]]` is present; an Anthropic stream reports it in `message_start` (1
  output token) and again in full in `message_delta`, or only there (`message_start`'s all
  zeros) for `Fault(usage_at_end_only=True)`;
- the marker `[[cache:R,W]]` reports R cache-read and W cache-write prompt tokens:
  Anthropic's `cache_read_input_tokens` / `cache_creation_input_tokens` (its
  `input_tokens` excluding both), OpenAI's `prompt_tokens_details.cached_tokens` (within
  `prompt_tokens`; no writes);
- Anthropic's extended thinking (`thinking: {"type": "enabled"}`) opens the answer with a
  thinking block "Simulated reasoning about: <last user message, 40 characters>" signed
  "sig_sim_<serial>"; `/v1/messages/count_tokens` answers the `input_tokens` that
  `/v1/messages` reports for the same body;
- a plain answer ends with " [images: N]" when the request held N images;
- with tools offered (tool_choice not "none") and the user speaking last, the answer calls
  the named tool or the first one, with a minimal instance of its schema as arguments, N
  times (cycling through the tools) for the marker `[[tool_calls:N]]` unless parallel calls
  are off; a last turn of tool results is answered "Tool results: r1 | r2" (tools.py);
- OpenAI's `n`, `logprobs`/`top_logprobs` and `/v1/embeddings` (embeddings.py) are served
  in OpenAI's own shapes, streams included.

Scripted `Fault`s change the next answer: a status, a delay before answering, a malformed
body, a TCP reset, or a drip (headers at once, then the body one byte at a time: a
provider that is alive but never finishes, which no per-read timeout notices).

The modules: upstream.py (`FakeUpstream`: state, scripting, inspection), server.py (HTTP:
routing, faults on the wire, pacing, drips), faults.py, answers.py (what is answered,
whatever the kind), tools.py (tool calls, whatever the kind), examples.py (schema
instances), embeddings.py, and one module per provider kind (openai_compat.py,
anthropic.py: paths, bodies, stream events, error bodies), keyed by the adapters'
declarations in kinds.py.

Run one by hand: `python -m aura_orchestrator.simulator --port 9000 --latency 0.2`.
"""

from __future__ import annotations

from .answers import DEFAULT_MAX_TOKENS, IMAGE_TOKENS, LOW_DETAIL_IMAGE_TOKENS
from .anthropic import COUNT_TOKENS_PATH
from .anthropic import PATH as ANTHROPIC_PATH
from .embeddings import PATH as EMBEDDINGS_PATH
from .embeddings import vector as embedding_vector
from .examples import example_for_schema
from .faults import Fault
from .kinds import COMPLETION_PATHS, SHAPES
from .openai_compat import PATH as OPENAI_PATH
from .server import (
    MODELS_PATH,
    _Handler,  # noqa: F401  (bench/gateway_overhead.py sets its Nagle flag)
)
from .upstream import DEFAULT_MODELS, FakeUpstream, main

__all__ = [
    "ANTHROPIC_PATH",
    "COMPLETION_PATHS",
    "COUNT_TOKENS_PATH",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODELS",
    "EMBEDDINGS_PATH",
    "IMAGE_TOKENS",
    "LOW_DETAIL_IMAGE_TOKENS",
    "MODELS_PATH",
    "OPENAI_PATH",
    "SHAPES",
    "FakeUpstream",
    "Fault",
    "embedding_vector",
    "example_for_schema",
    "main",
]
