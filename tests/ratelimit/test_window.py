"""What the windows answer, as OpenAI's rate-limit headers."""

from aura_orchestrator.ratelimit.window import Check, Decision, Kind, Standing, headers, reset_text


def test_reset_is_written_as_openai_writes_it():
    assert reset_text(0) == "0ms"
    assert reset_text(0.25) == "250ms"
    assert reset_text(1) == "1s"
    assert reset_text(59.2) == "1m0s"
    assert reset_text(360) == "6m0s"


def test_headers_report_the_tightest_limit_of_each_kind_and_retry_after_on_refusal():
    key_rpm = Check(key="k", kind=Kind.REQUESTS, limit=600)
    user_rpm = Check(key="u", kind=Kind.REQUESTS, limit=10)
    tpm = Check(key="k", kind=Kind.TOKENS, limit=90_000, cost=500)
    flight = Check(key="k", kind=Kind.IN_FLIGHT, limit=5)
    decision = Decision(
        admitted=False,
        standings=(
            Standing(key_rpm, remaining=550, reset_seconds=0.1),
            Standing(user_rpm, remaining=0, reset_seconds=12.5),
            Standing(tpm, remaining=89_000, reset_seconds=3),
            Standing(flight, remaining=4, reset_seconds=0),
        ),
        refused_by=user_rpm,
        retry_after_seconds=12.5,
    )
    assert headers(decision) == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "13s",
        "x-ratelimit-limit-tokens": "90000",
        "x-ratelimit-remaining-tokens": "89000",
        "x-ratelimit-reset-tokens": "3s",
        "retry-after-ms": "12500",
    }
    admitted = Decision(admitted=True, standings=decision.standings[2:])
    assert "retry-after-ms" not in headers(admitted)
    assert "x-ratelimit-limit-requests" not in headers(admitted)
