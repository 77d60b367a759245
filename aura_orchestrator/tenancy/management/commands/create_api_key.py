from django.core.management.base import BaseCommand, CommandError

from aura_orchestrator.tenancy.services import api_key_create, project_get_or_create


class Command(BaseCommand):
    help = "Create a service API key. The key is printed once, alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="A name to recognise the key by (e.g. the service).")
        parser.add_argument(
            "--project", default=None, help="Project (tenant) slug; created if missing."
        )

    def handle(self, *args, name: str, project: str | None, **options):
        name = name.strip()
        if not name:
            raise CommandError("NAME must not be blank.")
        proj = project_get_or_create(name=project)
        created = api_key_create(name=name, project=proj)
        self.stderr.write(
            f"Created API key '{name}' for project '{proj.name}' "
            f"(prefix {created.api_key.prefix}). Store it now: only its hash is kept."
        )
        self.stdout.write(created.raw_key)
