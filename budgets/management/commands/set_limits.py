"""`manage.py set_limits`: create or update the rate limits and model allow-list of one
scope (docs/CONTRACT.md, Governance)."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from budgets.limit_models import ALLOW_LISTS, RateLimit, model_patterns
from budgets.limit_services import rate_limit_set
from budgets.management.scope_args import add_scope_arguments, scope_of

# flag → field; `0` lifts a limit, `--allowed-models ""` the list.
_NUMBERS = {
    "requests_per_minute": "--requests-per-minute",
    "tokens_per_minute": "--tokens-per-minute",
    "max_in_flight": "--max-in-flight",
}
_MAX = {"tokens_per_minute": 2**63 - 1}


def _number(flag: str, value: str, top: int) -> int | None:
    text = value.strip()
    if not text.isascii() or not text.isdigit() or int(text) > top:
        raise CommandError(f"{flag} must be a whole number (0 lifts the limit), not {value!r}.")
    return int(text) or None


def describe(limit: RateLimit) -> str:
    parts = [
        f"{flag.lstrip('-')} {getattr(limit, name)}"
        for name, flag in _NUMBERS.items()
        if getattr(limit, name) is not None
    ]
    for name, what in ALLOW_LISTS.items():
        if getattr(limit, name):
            parts.append(f"allowed {what} {getattr(limit, name)}")
    return f"rate limit {limit.pk} {limit.scope_label}: {', '.join(parts) or 'none'}"


class Command(BaseCommand):
    help = (
        "Create or update the rate limits of a scope (idempotent for the same scope and "
        "model): requests and tokens per minute, calls in flight, allowed models. "
        "SCOPE: --project P | --api-key NAME --project P | --end-user U --project P | "
        "--default-end-user --project P. Flags not given keep their value; 0 lifts a limit."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_scope_arguments(
            parser, default_end_user_help="The limits every end user without their own gets."
        )
        parser.add_argument("--model", metavar="M", help="Only calls whose chain has this model.")
        parser.add_argument("--requests-per-minute", metavar="N")
        parser.add_argument("--tokens-per-minute", metavar="N", help="Worst case, then actual.")
        parser.add_argument("--max-in-flight", metavar="N", help="Calls at once, all workers.")
        for name, what in ALLOW_LISTS.items():
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                metavar="a,b",
                help=f"The only {what} its calls may use (patterns such as gpt-4o* allowed); "
                f'"" allows every one again.',
            )

    def handle(self, *args: Any, **o: Any) -> None:
        who = scope_of(o)
        changes: dict[str, object] = {}
        for name, flag in _NUMBERS.items():
            if o[name] is not None:
                changes[name] = _number(flag, o[name], _MAX.get(name, 2**31 - 1))
        for name in ALLOW_LISTS:
            if o[name] is not None:
                changes[name] = ", ".join(model_patterns(o[name]))
        if not changes:
            raise CommandError(
                "Give a limit: --requests-per-minute, --tokens-per-minute, --max-in-flight "
                "or an allow-list (--allowed-models, --allowed-providers, "
                "--allowed-operation-types)."
            )
        model = o["model"]
        if model is not None and (not model.strip() or len(model) > 200):
            raise CommandError("--model must be 1 to 200 characters.")
        try:
            limit, created = rate_limit_set(
                project=who.project,
                scope=who.scope,
                api_key=who.api_key,
                end_user=who.end_user,
                model_name=model or "",
                changes=changes,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(f"{'Created' if created else 'Updated'} {describe(limit)}")
