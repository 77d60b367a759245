"""`manage.py set_budget`: create or update one spend budget (docs: DESIGN.md, Governance)."""

from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import URLValidator

from aura_orchestrator.catalog.models import Provider
from budgets.management.scope_args import add_scope_arguments, scope_of
from budgets.spend_models import Period, SpendBudget, parse_thresholds
from budgets.spend_services import alert_endpoint_set, spend_budget_set
from budgets.spending import usd

MAX_COST = Decimal(10) ** 8  # SpendBudget.max_cost: 14 digits, 6 after the point
MAX_TOKENS = 2**63 - 1


def _max_cost(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value.strip())
    except InvalidOperation as exc:
        raise CommandError(f"--max-cost is not a number of USD: {value!r}.") from exc
    # is_finite first: comparing NaN raises InvalidOperation.
    if not amount.is_finite() or amount < 0 or amount >= MAX_COST:
        raise CommandError(f"--max-cost must be at least 0 and below {MAX_COST}, not {value!r}.")
    if amount.as_tuple().exponent < -6:  # type: ignore[operator]  # finite: an int
        raise CommandError(f"--max-cost has at most 6 decimal places (micro-dollars): {value!r}.")
    return amount


def _max_tokens(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or int(text) > MAX_TOKENS:
        raise CommandError(f"--max-tokens must be a whole number of tokens, not {value!r}.")
    return int(text)


def _thresholds(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = parse_thresholds(value)
    except ValidationError as exc:
        raise CommandError(f"--thresholds: {exc.messages[0]}") from exc
    if not parsed:
        raise CommandError("--thresholds names no percent (e.g. 50,80,100).")
    return ",".join(str(p) for p in parsed)


def describe(budget: SpendBudget) -> str:
    """One line: scope, narrowing, period, caps, hard or soft, thresholds."""
    caps = []
    if budget.max_cost is not None:
        caps.append(f"max_cost ${usd(budget.max_cost_micros)}")
    if budget.max_tokens is not None:
        caps.append(f"max_tokens {budget.max_tokens}")
    kind = "hard" if budget.enforce_hard_limits else "soft"
    return (
        f"budget {budget.pk} {budget.scope_label} period {budget.period}: "
        f"{', '.join(caps)}, {kind}, alerts at {budget.thresholds} %"
    )


class Command(BaseCommand):
    help = (
        "Create or update the spend budget of a scope (idempotent for the same scope and "
        "provider/model narrowing). SCOPE: --project P | --api-key NAME --project P | "
        "--end-user U --project P | --default-end-user --project P."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_scope_arguments(
            parser, default_end_user_help="The budget every end user without one of their own gets."
        )
        parser.add_argument(
            "--provider", metavar="X", help="Count only calls this provider serves."
        )
        parser.add_argument("--model", metavar="M", help="Count only calls this model serves.")
        parser.add_argument("--period", required=True, choices=Period.values)
        parser.add_argument("--max-cost", metavar="USD", help="Cost cap in USD (≤ 6 decimals).")
        parser.add_argument("--max-tokens", metavar="N", help="Token cap.")
        strictness = parser.add_mutually_exclusive_group()
        strictness.add_argument(
            "--hard", dest="hard", action="store_true", default=None, help="Refuse (default)."
        )
        strictness.add_argument(
            "--soft", dest="hard", action="store_false", help="Let through and warn."
        )
        parser.add_argument("--thresholds", help="Alert percents, e.g. 50,80,100 (the default).")
        parser.add_argument("--webhook-url", metavar="URL", help="The project's alert webhook.")
        parser.add_argument("--webhook-secret", metavar="S", help="Signs its deliveries.")

    def handle(self, *args: Any, **o: Any) -> None:
        who = scope_of(o)
        project = who.project
        max_cost, max_tokens = _max_cost(o["max_cost"]), _max_tokens(o["max_tokens"])
        if max_cost is None and max_tokens is None:
            raise CommandError("Give a cap: --max-cost, --max-tokens, or both.")
        thresholds = _thresholds(o["thresholds"])
        url, secret = o["webhook_url"], o["webhook_secret"]
        if secret is not None and url is None:
            raise CommandError("--webhook-secret goes with --webhook-url.")
        if url is not None:
            try:
                URLValidator(schemes=["http", "https"])(url)
            except ValidationError as exc:
                raise CommandError(f"--webhook-url is not an http(s) URL: {url!r}.") from exc
            if len(url) > 500:
                raise CommandError("--webhook-url is longer than 500 characters.")
            if secret is not None and not secret.strip():
                raise CommandError("--webhook-secret must not be blank.")
            if secret is not None and len(secret) > 200:
                raise CommandError("--webhook-secret is longer than 200 characters.")
            if not secret and not project.alert_endpoints.filter(url=url).exists():
                raise CommandError("A new --webhook-url needs --webhook-secret.")

        provider = None
        if o["provider"] is not None:
            provider = Provider.objects.filter(name=o["provider"]).first()
            if provider is None:
                raise CommandError(f"No provider {o['provider']!r} (see configure_provider).")
        model = o["model"]
        if model is not None and (not model.strip() or len(model) > 200):
            raise CommandError("--model must be 1 to 200 characters.")

        try:
            budget, created = spend_budget_set(
                project=project,
                scope=who.scope,
                api_key=who.api_key,
                end_user=who.end_user,
                provider=provider,
                model_name=model or "",
                period=o["period"],
                max_tokens=max_tokens,
                max_cost=max_cost,
                hard=o["hard"],
                thresholds=thresholds,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(f"{'Created' if created else 'Updated'} {describe(budget)}")
        if url is not None:
            endpoint, made = alert_endpoint_set(project=project, url=url, secret=secret or "")
            where = urlsplit(endpoint.url)
            self.stdout.write(
                f"{'Created' if made else 'Updated'} the alert endpoint of project "
                f"{project.name!r} at {where.scheme}://{where.netloc.rpartition('@')[2]}"
            )
