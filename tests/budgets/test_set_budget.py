"""`manage.py set_budget`: creates or updates the budget of a scope and narrowing, validates
strictly, sets the project's alert endpoint, and re-balances existing periods."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from aura_orchestrator.tenancy.services import api_key_create, api_key_revoke
from budgets import periods
from budgets.spend_models import AlertEndpoint, Scope, SpendBudget, SpendPeriod, SpendShard

DAY = ["--project", "studio", "--period", "day", "--max-tokens", "1"]


def run(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command("set_budget", *args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def test_creates_a_project_budget_then_updates_the_same_one(project):
    printed = run("--project", "studio", "--period", "month", "--max-cost", "25.5")

    budget = SpendBudget.objects.get()
    assert (budget.scope, budget.period, budget.max_cost, budget.max_tokens) == (
        Scope.PROJECT,
        "month",
        Decimal("25.5"),
        None,
    )
    assert budget.enforce_hard_limits is True
    assert budget.thresholds == "50,80,100"
    assert printed.strip() == (
        f"Created budget {budget.pk} project:studio period month: max_cost $25.500000, "
        "hard, alerts at 50,80,100 %"
    )

    printed = run(
        "--project",
        "studio",
        "--period",
        "day",
        "--max-tokens",
        "5000",
        "--soft",
        "--thresholds",
        "90, 75",
    )

    budget = SpendBudget.objects.get()  # still one
    assert (budget.period, budget.max_cost, budget.max_tokens) == ("day", None, 5000)
    assert budget.enforce_hard_limits is False
    assert budget.thresholds == "75,90"
    assert printed.startswith(f"Updated budget {budget.pk} project:studio period day:")
    assert "max_tokens 5000, soft" in printed

    # Neither --hard nor --soft, nor --thresholds: kept.
    run("--project", "studio", "--period", "day", "--max-tokens", "6000")
    budget.refresh_from_db()
    assert (budget.max_tokens, budget.enforce_hard_limits, budget.thresholds) == (
        6000,
        False,
        "75,90",
    )
    run("--project", "studio", "--period", "day", "--max-tokens", "6000", "--hard")
    budget.refresh_from_db()
    assert budget.enforce_hard_limits is True


def test_each_scope_and_narrowing_is_its_own_budget(project, api_key, provider):
    base = ("--project", "studio", "--period", "week", "--max-tokens", "100")
    run(*base)
    run(*base, "--api-key", "test-service")
    run(*base, "--end-user", "u-42")
    run(*base, "--default-end-user")
    run(*base, "--provider", "primary")
    run(*base, "--model", "sim-gpt")
    printed = run(*base, "--end-user", "u-42", "--provider", "primary", "--model", "sim-gpt")
    assert "end_user:u-42+provider:primary+model:sim-gpt period week" in printed
    # Again, each of them: nothing new.
    for extra in ([], ["--api-key", "test-service"], ["--default-end-user"]):
        assert run(*base, *extra).startswith("Updated")

    rows = {
        (b.scope, b.api_key_id, b.end_user, b.provider_id, b.model_name)
        for b in SpendBudget.objects.all()
    }
    key, primary = api_key.api_key.pk, provider.provider.pk
    assert rows == {
        (Scope.PROJECT, None, "", None, ""),
        (Scope.API_KEY, key, "", None, ""),
        (Scope.END_USER, None, "u-42", None, ""),
        (Scope.DEFAULT_END_USER, None, "", None, ""),
        (Scope.PROJECT, None, "", primary, ""),
        (Scope.PROJECT, None, "", None, "sim-gpt"),
        (Scope.END_USER, None, "u-42", primary, "sim-gpt"),
    }
    assert SpendBudget.objects.count() == 7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", "nope", "--period", "day", "--max-tokens", "1"], "No project 'nope'"),
        (["--project", "studio", "--period", "day"], "Give a cap"),
        (["--project", "studio", "--period", "year", "--max-tokens", "1"], "invalid choice"),
        (["--project", "studio", "--max-tokens", "1"], "--period"),
        (["--period", "day", "--max-tokens", "1"], "--project"),
        (["--project", "studio", "--period", "day", "--max-cost", "-1"], "at least 0"),
        (["--project", "studio", "--period", "day", "--max-cost", "0.0000001"], "6 decimal"),
        (["--project", "studio", "--period", "day", "--max-cost", "abc"], "not a number"),
        (["--project", "studio", "--period", "day", "--max-cost", "NaN"], "at least 0"),
        (["--project", "studio", "--period", "day", "--max-cost", "1e9"], "below"),
        (["--project", "studio", "--period", "day", "--max-tokens", "1.5"], "whole number"),
        (["--project", "studio", "--period", "day", "--max-tokens", "-3"], "whole number"),
        (
            [*DAY, "--hard", "--soft"],
            "not allowed with",
        ),
        (
            [*DAY, "--thresholds", "0"],
            "1 to 1000",
        ),
        (
            [*DAY, "--thresholds", ","],
            "names no percent",
        ),
        (
            [*DAY, "--api-key", "ghost"],
            "No unrevoked API key named 'ghost'",
        ),
        (
            [*DAY, "--provider", "zz"],
            "No provider 'zz'",
        ),
        (
            [*DAY, "--end-user", " "],
            "--end-user must be",
        ),
        (
            [*DAY, "--end-user", "u", "--default-end-user"],
            "not allowed with",
        ),
        (
            [*DAY, "--webhook-url", "https://hooks.example/a"],
            "needs --webhook-secret",
        ),
        (
            [*DAY, "--webhook-secret", "s3cret"],
            "goes with --webhook-url",
        ),
        (
            [*DAY, "--webhook-url", "ftp://x", "--webhook-secret", "s"],
            "not an http(s) URL",
        ),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(project, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(*args)
    assert not SpendBudget.objects.exists()
    assert not AlertEndpoint.objects.exists()


def test_a_revoked_key_is_not_found_and_a_name_two_keys_share_is_refused(project, api_key):
    args = ("--project", "studio", "--period", "day", "--max-tokens", "1", "--api-key")
    other = api_key_create(name="twin", project=project)
    api_key_revoke(api_key=other.api_key)
    with pytest.raises(CommandError, match="No unrevoked API key named 'twin'"):
        run(*args, "twin")
    api_key_create(name="test-service", project=project)
    with pytest.raises(CommandError, match="2 unrevoked keys are named 'test-service'"):
        run(*args, "test-service")


def test_a_key_of_another_project_is_not_found(project, other_api_key):
    with pytest.raises(CommandError, match="No unrevoked API key named 'other-service'"):
        run(
            *("--project", "studio", "--period", "day", "--max-tokens", "1"),
            *("--api-key", "other-service"),
        )


def test_the_webhook_endpoint_is_set_and_its_secret_never_printed(project):
    base = ("--project", "studio", "--period", "month", "--max-cost", "10")
    url = "https://hooks.example/aura?token=abc"
    printed = run(*base, "--webhook-url", url, "--webhook-secret", "very-secret-1")

    endpoint = AlertEndpoint.objects.get()
    assert (endpoint.project, endpoint.url, endpoint.secret.reveal()) == (
        project,
        url,
        "very-secret-1",
    )
    assert "very-secret-1" not in printed
    assert "token=abc" not in printed
    assert "alert endpoint of project 'studio' at https://hooks.example" in printed

    # The same URL again: its secret is kept without --webhook-secret, replaced with one.
    run(*base, "--webhook-url", url)
    endpoint.refresh_from_db()
    assert endpoint.secret.reveal() == "very-secret-1"
    printed = run(*base, "--webhook-url", url, "--webhook-secret", "very-secret-2")
    endpoint.refresh_from_db()
    assert endpoint.secret.reveal() == "very-secret-2"
    assert "very-secret-2" not in printed
    assert AlertEndpoint.objects.count() == 1
    assert SpendBudget.objects.count() == 1


def test_a_cap_change_rebalances_the_periods_pool(project):
    run("--project", "studio", "--period", "month", "--max-tokens", "1000")
    budget = SpendBudget.objects.get()
    start, _ = periods.window("month", time_zone="UTC", now=periods.now())
    period = SpendPeriod.objects.create(
        budget=budget, period_start=start, max_tokens=1000, pool_tokens=600
    )
    for shard, (allot, used, reserved) in enumerate([(250, 100, 20), (150, 80, 0)]):
        SpendShard.objects.create(
            budget=budget,
            period_start=start,
            shard=shard,
            allot_tokens=allot,
            tokens_used=used,
            tokens_reserved=reserved,
        )

    run("--project", "studio", "--period", "month", "--max-tokens", "400")

    period.refresh_from_db()
    assert period.max_tokens == 400
    assert period.pool_tokens == 400 - 200  # the new cap less what is used and reserved
    allots = list(SpendShard.objects.order_by("shard").values_list("allot_tokens", flat=True))
    assert allots == [120, 80]  # each shard keeps only what it has in use

    # Soft: nothing is allotted any more.
    run("--project", "studio", "--period", "month", "--max-tokens", "400", "--soft")
    period.refresh_from_db()
    assert period.pool_tokens == 0
    assert list(SpendShard.objects.values_list("allot_tokens", flat=True)) == [None, None]


def test_an_unchanged_budget_leaves_its_periods_alone(project):
    run("--project", "studio", "--period", "month", "--max-tokens", "1000")
    budget = SpendBudget.objects.get()
    start, _ = periods.window("month", time_zone="UTC", now=periods.now())
    period = SpendPeriod.objects.create(
        budget=budget, period_start=start, max_tokens=1000, pool_tokens=600
    )
    SpendShard.objects.create(budget=budget, period_start=start, shard=0, allot_tokens=400)

    run("--project", "studio", "--period", "month", "--max-tokens", "1000", "--thresholds", "90")

    period.refresh_from_db()
    assert period.pool_tokens == 600
    assert SpendShard.objects.get().allot_tokens == 400
