import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from aura_orchestrator.tenancy.models import ApiKey
from aura_orchestrator.tenancy.services import api_key_create, project_get_or_create


class Command(BaseCommand):
    help = (
        "First-run setup, safe to repeat: an admin user and a first API key when none exist. "
        "Credentials are printed once."
    )

    def handle(self, *args, **options):
        users = get_user_model()
        if not users.objects.filter(is_superuser=True).exists():
            wanted = settings.AURA["BOOTSTRAP"]  # AURA_ADMIN_USER, AURA_ADMIN_PASSWORD
            username = wanted["ADMIN_USER"]
            password = wanted["ADMIN_PASSWORD"] or secrets.token_urlsafe(12)
            users.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(
                f"Admin user created: {username} / {password}  (change it in /admin/)"
            )
        else:
            self.stdout.write("Admin user: already present.")
        if not ApiKey.objects.exists():
            created = api_key_create(name="first-service", project=project_get_or_create())
            self.stdout.write(
                f"First API key (shown once, only its hash is kept): {created.raw_key}"
            )
        else:
            self.stdout.write("API keys: already present (create more with create_api_key).")
