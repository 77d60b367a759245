"""`manage.py demo`: fill an install with realistic sessions and telemetry, no provider key.

Two simulated OpenAI-compatible upstreams run on loopback inside this process (latency,
occasional 429s and 500s); they are configured as providers `demo` and `demo-backup`, and a
few hundred operations of all 13 types go through the real pipeline: presets, cache,
budget reservations, retries, fallback, schema validation and telemetry. Some retrievals go
through tools (the call, its results handed back, the answer: two operations) and scene
analyses and visual prompts send an image (a PNG inline, a reference by URL).

The run takes seconds, so afterwards the rows of this run are spread over the last
`--history-hours` (order kept: a cache hit still follows the answer it reuses) for the
charts to show a history. The demo providers are then disabled: their upstreams die with
this process, and real traffic must never be routed to them.
"""

import asyncio
import secrets
import sys
import time
from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from aura_orchestrator import tracing
from aura_orchestrator.catalog.models import Provider
from aura_orchestrator.management.demo.history import history_spread, roll_up
from aura_orchestrator.management.demo.run import Tally, demo_drive, demo_setup
from aura_orchestrator.management.demo.scenario import (
    BACKUP,
    DEMO_PROVIDERS,
    PROJECT,
    Work,
    demo_plan,
)
from aura_orchestrator.simulator import FakeUpstream
from aura_orchestrator.tenancy.models import ApiKey, Project


def served_url() -> str:
    """The address `serve` listens on by default (HOST, PORT); a wildcard address is
    reached on loopback."""
    host, port = settings.AURA["SERVE"]["HOST"], settings.AURA["SERVE"]["PORT"]
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address in a URL
    return f"http://{host}:{port}"


class Command(BaseCommand):
    help = (
        "Fill this install with realistic sessions and telemetry: simulated upstreams on "
        "loopback, providers `demo` and `demo-backup`, a project `demo`, operations of all "
        "13 types through the real pipeline."
    )

    def add_arguments(self, parser):
        parser.add_argument("--operations", type=int, default=300)
        parser.add_argument("--sessions", type=int, default=12)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help="Operations in flight at once (default 16; 6 on SQLite, a single writer).",
        )
        parser.add_argument(
            "--latency", type=float, default=0.25, help="Simulated upstream base latency (s)."
        )
        parser.add_argument(
            "--history-hours",
            type=float,
            default=48,
            help="Spread this run's operations over the last N hours (0: leave them now).",
        )
        parser.add_argument(
            "--base-url",
            default=None,
            help="Where the server is reached, for the dashboard link printed at the end "
            "(default: http://HOST:PORT, as `serve` reads them).",
        )

    def handle(self, *args, **options):
        operations, sessions = options["operations"], options["sessions"]
        latency, history = options["latency"], options["history_hours"]
        sqlite = connection.vendor == "sqlite"
        concurrency = options["concurrency"] or (6 if sqlite else 16)
        if not 1 <= operations <= 20000:
            raise CommandError("--operations must be between 1 and 20000.")
        if not 1 <= sessions <= 1000:
            raise CommandError("--sessions must be between 1 and 1000.")
        if not 1 <= concurrency <= 128:
            raise CommandError("--concurrency must be between 1 and 128.")
        if not 0 <= latency <= 10:
            raise CommandError("--latency must be between 0 and 10 seconds.")
        if not 0 <= history <= 24 * 90:
            raise CommandError("--history-hours must be between 0 and 2160.")
        sessions = min(sessions, operations)
        base_url = (options["base_url"] or served_url()).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise CommandError("--base-url must start with http:// or https://.")
        tracing.start()  # spans of the run to the OTLP endpoint, if one is set; sent at exit

        primary = FakeUpstream(
            latency=latency,
            latency_jitter=latency * 2.5,
            error_rate=0.05,
            seed=options["seed"],
        ).start()
        backup = FakeUpstream(
            latency=latency * 0.6,
            latency_jitter=latency * 1.5,
            error_rate=0.02,
            seed=options["seed"] + 1,
        ).start()
        try:
            project, raw_key = demo_setup(primary, backup)
            run_tag = secrets.token_hex(2)
            plan = demo_plan(
                operations=operations, sessions=sessions, seed=options["seed"], run_tag=run_tag
            )
            self.stdout.write(
                f"Running {len(plan)} operations in {sessions} sessions through the pipeline "
                f"({concurrency} at a time) against simulated upstreams on "
                f"127.0.0.1:{primary.port} and 127.0.0.1:{backup.port}…"
            )
            started = timezone.now()
            t0 = time.perf_counter()
            key_id = (
                ApiKey.objects.filter(project=project, revoked_at__isnull=True)
                .order_by("created_at")
                .values_list("pk", flat=True)
                .first()
            )
            tally = asyncio.run(
                demo_drive(
                    plan,
                    project=project,
                    concurrency=concurrency,
                    progress=self._progress,
                    api_key_id=key_id,
                )
            )
            self.stdout.write("")
            elapsed = time.perf_counter() - t0
        finally:
            primary.stop()
            backup.stop()
            # Their upstreams are gone: keep the configuration, route no traffic to it.
            Provider.objects.filter(name__in=DEMO_PROVIDERS).update(enabled=False)
        if history > 0:
            history_spread(project=project, since=started, hours=history)
        rolled = roll_up(hours=history)
        self._summary(
            tally,
            project=project,
            raw_key=raw_key,
            elapsed=elapsed,
            rolled=rolled,
            plan=plan,
            base_url=base_url,
        )

    def _progress(self, tally: Tally, total: int) -> None:
        width = 30
        filled = round(width * tally.done / total)
        bar = "█" * filled + "·" * (width - filled)
        line = (
            f"\r  [{bar}] {tally.done}/{total}  ok {tally.ok}  cached {tally.cached}  "
            f"failed {tally.failed}"
        )
        # A terminal gets a live bar; a log or a pipe gets a line every 10%.
        if self.stdout.isatty() or tally.done == total or tally.done % max(1, total // 10) == 0:
            self.stdout.write(line, ending="" if self.stdout.isatty() else "\n")
            self.stdout.flush()

    def _summary(
        self,
        tally: Tally,
        *,
        project: Project,
        raw_key: str | None,
        elapsed: float,
        rolled: str,
        plan: list[Work],
        base_url: str,
    ) -> None:
        w = self.stdout.write
        types = len({work.operation_type for work in plan})
        w(self.style.SUCCESS(f"Done in {elapsed:.1f}s: {tally.done} operations, {types} types."))
        rate = tally.cached / tally.done if tally.done else 0
        w(
            f"  succeeded {tally.ok}, failed {tally.failed} "
            f"({', '.join(f'{c} {n}' for c, n in tally.errors.most_common()) or 'none'})"
        )
        w(f"  cache hits {tally.cached} ({rate:.0%}), retries {tally.retries}")
        w(f"  fallbacks to {BACKUP} {tally.fallbacks}, budget refusals {tally.refused}")
        w(f"  estimated cost ${tally.cost.quantize(Decimal('0.000001'))}")
        w(f"  telemetry: {rolled}")
        w(
            f"Providers {', '.join(repr(p) for p in DEMO_PROVIDERS)} stay configured but "
            "disabled (their simulated upstreams stopped with this command)."
        )
        if raw_key:
            w(f"API key of project '{PROJECT}' (shown once): {raw_key}")
        w(f"Dashboards: {base_url}/dashboard/?project={project.pk}")
        w("  (staff only: `python manage.py createsuperuser` if you have no admin user yet)")
        sys.stdout.flush()
