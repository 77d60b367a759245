"""The Anthropic-compatible front door (`POST /v1/messages`): a Messages request
translated into the pipeline's OpenAI-shaped vocabulary, run as the chat gateway runs
it, and rendered back in Anthropic's shapes (so any provider kind serves it)."""
