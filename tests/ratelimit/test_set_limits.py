"""`manage.py set_limits`: the limit set of one scope, created or updated, validated as
the admin validates it; flags not given keep their value, 0 lifts a limit."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from budgets.limit_models import RateLimit


def _run(*args: str) -> str:
    out = StringIO()
    call_command("set_limits", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_it_creates_then_updates_the_same_scope(api_key):
    out = _run("--api-key", "test-service", "--project", "studio", "--requests-per-minute", "60")
    assert out.startswith("Created rate limit") and "requests-per-minute 60" in out
    out = _run(
        "--api-key", "test-service", "--project", "studio",
        "--tokens-per-minute", "90000", "--allowed-models", " gpt-4o-mini , claude-* ",
    )  # fmt: skip
    assert out.startswith("Updated rate limit")
    limit = RateLimit.objects.get()
    assert (limit.requests_per_minute, limit.tokens_per_minute) == (60, 90000)
    assert limit.allowed_models == "gpt-4o-mini, claude-*"
    assert limit.api_key == api_key.api_key and limit.scope == "api_key"
    _run("--api-key", "test-service", "--project", "studio", "--requests-per-minute", "0",
         "--allowed-models", "")  # fmt: skip
    limit.refresh_from_db()
    assert (limit.requests_per_minute, limit.allowed_models) == (None, "")
    assert RateLimit.objects.count() == 1


def test_the_allow_lists_of_providers_and_operation_types(api_key):
    out = _run("--project", "studio", "--allowed-providers", "backup,azure-*",
               "--allowed-operation-types", "planning, scripting")  # fmt: skip
    assert "allowed providers backup, azure-*" in out
    assert "allowed operation types planning, scripting" in out
    with pytest.raises(CommandError, match="'poetry' is not an operation type"):
        _run("--project", "studio", "--allowed-operation-types", "poetry")
    limit = RateLimit.objects.get()
    assert limit.allowed_operation_types == "planning, scripting"


def test_scopes_and_model_narrowing_are_separate_limit_sets(api_key):
    _run("--project", "studio", "--max-in-flight", "20")
    _run("--default-end-user", "--project", "studio", "--requests-per-minute", "10")
    _run("--end-user", "u-42", "--project", "studio", "--model", "sim-gpt",
         "--requests-per-minute", "5")  # fmt: skip
    labels = sorted(r.scope_label for r in RateLimit.objects.select_related("project"))
    assert labels == ["end_user:*", "end_user:u-42+model:sim-gpt", "project:studio"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", "studio"], "Give a limit"),
        (["--project", "studio", "--requests-per-minute", "ten"], "--requests-per-minute must"),
        (["--project", "studio", "--max-in-flight", "-3"], "--max-in-flight must"),
        (["--project", "studio", "--requests-per-minute", "1e3"], "--requests-per-minute must"),
        (["--project", "nowhere", "--requests-per-minute", "5"], "No project 'nowhere'"),
        (["--api-key", "ghost", "--project", "studio", "--requests-per-minute", "5"],
         "No unrevoked API key named 'ghost'"),
        (["--end-user", "a\nb", "--project", "studio", "--requests-per-minute", "5"],
         "--end-user must be"),
        (["--project", "studio", "--model", "m", "--allowed-models", "x"],
         "narrowed to one model"),
    ],
)  # fmt: skip
def test_bad_flags_are_refused_by_name(api_key, args, message):
    with pytest.raises(CommandError, match=message):
        _run(*args)
    assert not RateLimit.objects.exists()
