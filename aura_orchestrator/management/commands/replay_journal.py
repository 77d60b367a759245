from django.core.management.base import BaseCommand

from aura_orchestrator.store.journal import FAILED_NAME, journal_dir, replay_orphans


class Command(BaseCommand):
    help = (
        "Write the finishes (charge + telemetry row) that stopped workers journaled while the "
        "database was unavailable. Running workers replay their own; this takes the rest."
    )

    def handle(self, *args, **options):
        count = replay_orphans()
        self.stdout.write(f"{count} journaled finish(es) replayed from {journal_dir()}")
        failed = journal_dir() / FAILED_NAME
        if failed.exists():
            self.stderr.write(f"entries the database refused are kept in {failed}")
