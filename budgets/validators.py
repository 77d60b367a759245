"""The one rule for session ids and for end users' names, wherever they arrive (body,
URL, query, gateway header)."""

SESSION_ID_MAX_LENGTH = 200  # LlmSession.session_id's column
SESSION_ID_RULE = "1 to 200 characters of text without control characters"


def is_valid_session_id(value: str) -> bool:
    # Control characters never name a session; PostgreSQL refuses NUL in text outright.
    return (
        bool(value.strip())
        and len(value) <= SESSION_ID_MAX_LENGTH
        and not any(ord(c) < 32 for c in value)
    )


END_USER_MAX_LENGTH = 256  # SpendBudget.end_user's and telemetry's column; OpenAI's `user`
END_USER_RULE = "1 to 256 characters of text without control characters"


def is_valid_end_user(value: str) -> bool:
    # As session ids: PostgreSQL refuses NUL in text, and no header could carry one.
    return (
        bool(value.strip())
        and len(value) <= END_USER_MAX_LENGTH
        and not any(ord(c) < 32 or ord(c) == 127 for c in value)
    )
