import openai
import pytest


@pytest.fixture
def client(live_server_url, api_key, provider):
    """The official OpenAI SDK against a real `manage.py serve`, no retries."""
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=api_key.raw_key, max_retries=0)


@pytest.fixture
def slow_stream(fake_upstream):
    """The upstream waits between stream events; restored afterwards (shared server)."""

    def set_delay(seconds: float) -> None:
        fake_upstream.stream_chunk_delay = seconds

    yield set_delay
    fake_upstream.stream_chunk_delay = 0.0
