import getpass
import sys
from decimal import Decimal, InvalidOperation
from typing import TextIO

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator
from django.utils.text import slugify

from aura_orchestrator.catalog.models import ProviderKind
from aura_orchestrator.catalog.services import provider_configure


def _price(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        price = Decimal(value)
    except InvalidOperation as exc:
        raise CommandError(f"Not a price: {value!r} (USD per million tokens).") from exc
    # is_finite first: comparing NaN raises InvalidOperation. The bound is the column's.
    if not price.is_finite() or price < 0 or price >= 1_000_000:
        raise CommandError(f"A price must be a non-negative number below 1000000, not {value!r}.")
    return price


def _key_from_stdin(stdin: TextIO) -> str:
    """The key piped in: its first line, spaces and newline trimmed; typed at a terminal,
    asked for without echo."""
    key = getpass.getpass("API key: ") if stdin.isatty() else stdin.readline()
    key = key.strip()
    if not key:
        raise CommandError("--api-key-stdin: standard input holds no key.")
    if any(not c.isprintable() or c.isspace() for c in key):
        raise CommandError("--api-key-stdin: the key must be one line without spaces.")
    return key


class Command(BaseCommand):
    help = (
        "Create or update a provider and its model (idempotent). Its key is either piped in "
        "with --api-key-stdin (stored encrypted) or read at call time from the allowed "
        "environment variable named by --api-key-env (AURA_PROVIDER_SECRET_ENV)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--kind", required=True, choices=ProviderKind.values)
        parser.add_argument("--base-url", required=True)
        parser.add_argument("--api-key-env", default="", help="e.g. OPENAI_API_KEY")
        parser.add_argument(
            "--api-key-stdin",
            action="store_true",
            help="Read the key from standard input (first line) and store it encrypted; "
            "without it a stored key is kept.",
        )
        parser.add_argument("--model", required=True)
        parser.add_argument("--input-price", help="USD per million input tokens")
        parser.add_argument("--output-price", help="USD per million output tokens")
        parser.add_argument(
            "--default", action="store_true", help="Make it first in the default chain."
        )

    stealth_options = ("stdin",)

    def execute(self, *args, **options):
        # call_command(stdin=...) in tests; the process's stdin otherwise.
        self.stdin = options.pop("stdin", sys.stdin)
        return super().execute(*args, **options)

    def handle(self, *args, **o):
        name = o["name"]
        if slugify(name) != name:
            raise CommandError(f"NAME must be a slug (letters, digits, - and _), not {name!r}.")
        try:
            URLValidator(schemes=["http", "https"])(o["base_url"])
        except ValidationError as exc:
            raise CommandError(f"--base-url is not an http(s) URL: {o['base_url']!r}") from exc
        input_price, output_price = _price(o["input_price"]), _price(o["output_price"])
        if (input_price is None) != (output_price is None):
            raise CommandError("Give both --input-price and --output-price, or neither.")
        api_key = _key_from_stdin(self.stdin) if o["api_key_stdin"] else None
        try:
            result = provider_configure(
                name=name,
                kind=o["kind"],
                base_url=o["base_url"].rstrip("/"),
                api_key_env=o["api_key_env"],
                model=o["model"],
                input_price=input_price,
                output_price=output_price,
                make_default=o["default"],
                api_key=api_key,
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"--{field.replace('_', '-')}: {' '.join(messages)}"
                for field, messages in exc.message_dict.items()
            )
            raise CommandError(problems) from None
        model = result.model
        price = (
            f"${model.input_price}/${model.output_price} per M tokens ({model.price_source})"
            if model.has_price
            else "no known price (set it in the admin; hard cost caps will refuse it)"
        )
        verb = "Created" if result.provider_created else "Updated"
        key = result.provider.api_key
        secret = f"key stored {key.hint}" if key else "no stored key"
        self.stdout.write(
            f"{verb} provider '{name}' ({o['kind']}, {o['base_url']}), "
            f"model '{model.name}': {price}; {secret}."
        )
