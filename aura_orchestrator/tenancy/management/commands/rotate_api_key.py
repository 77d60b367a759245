import re
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from aura_orchestrator.tenancy.selectors import KeyNotFound, api_key_named
from aura_orchestrator.tenancy.services import api_key_rotate

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)([smhd])")


def parse_duration(text: str) -> timedelta:
    """`24h`, `90m`, `7d`, `1h30m`, `0`: a grace period."""
    text = text.strip().lower()
    if text == "0":
        return timedelta(0)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise CommandError(f"--grace: {text!r} is not a duration like 24h, 90m, 7d or 0.")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


class Command(BaseCommand):
    help = (
        "Give an API key a new secret; the old one keeps working for the grace period. "
        "The new key is printed once, alone on the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The key's name (as given to create_api_key).")
        parser.add_argument("--project", default=None, help="Project slug (default project).")
        parser.add_argument(
            "--grace",
            default="24h",
            help="How long the old key keeps working: 24h (default), 90m, 7d, 0 (not at all).",
        )

    def handle(self, *args, name: str, project: str | None, grace: str, **options):
        period = parse_duration(grace)
        project_name = project or settings.AURA["DEFAULT_PROJECT"]
        try:
            key = api_key_named(project_name=project_name, name=name)
        except KeyNotFound as exc:
            raise CommandError(str(exc)) from exc
        old_prefix = key.prefix
        try:
            rotated = api_key_rotate(api_key=key, grace=period)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        until = rotated.api_key.previous_valid_until
        self.stderr.write(
            f"Rotated API key '{name}' of project '{project_name}': new prefix "
            f"{rotated.api_key.prefix}; the old key ({old_prefix}…) "
            + (f"works until {until.isoformat()}." if until else "no longer works.")
            + " Store the new key now: only its hash is kept."
        )
        self.stdout.write(rotated.raw_key)
