"""The one rule for session ids, wherever they arrive (body, URL, gateway header)."""

SESSION_ID_MAX_LENGTH = 200  # LlmSession.session_id's column
SESSION_ID_RULE = "1 to 200 characters of text without control characters"


def is_valid_session_id(value: str) -> bool:
    # Control characters never name a session; PostgreSQL refuses NUL in text outright.
    return (
        bool(value.strip())
        and len(value) <= SESSION_ID_MAX_LENGTH
        and not any(ord(c) < 32 for c in value)
    )
