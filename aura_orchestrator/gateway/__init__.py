"""The OpenAI-compatible gateway: `/v1/chat/completions` (streaming included) and
`/v1/models`, in front of the same pipeline as the REST API. No models of its own."""
