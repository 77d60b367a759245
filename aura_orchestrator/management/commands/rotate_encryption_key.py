"""Re-encrypt every stored secret with the first key of AURA_ENCRYPTION_KEYS."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from aura_orchestrator.caching import config_cache
from aura_orchestrator.crypto import (
    Sealed,
    SecretUnreadable,
    encrypted_fields,
    is_current,
    rotate,
)


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted value (provider API keys, webhook secrets) with the first "
        "key of AURA_ENCRYPTION_KEYS. Idempotent: values already under that key are left "
        "alone. Afterwards the older keys can be removed from the list."
    )

    def handle(self, *args, **options):
        total_rotated = total_current = 0
        unreadable: list[str] = []
        for model, field in encrypted_fields():
            rotated = current = 0
            # Each table in one transaction, its rows locked: a concurrent admin save
            # cannot be overwritten by an older value re-encrypted.
            with transaction.atomic():
                rows = model._default_manager.select_for_update().values_list("pk", field.attname)
                for pk, sealed in rows:
                    token = sealed.token
                    if not token:
                        continue
                    if is_current(token):
                        current += 1
                        continue
                    try:
                        new = rotate(token)
                    except SecretUnreadable:
                        unreadable.append(f"{model._meta.label} {pk}")
                        continue
                    # .update() writes the column as given: the new token, no re-encryption.
                    fresh = Sealed(token=new)
                    model._default_manager.filter(pk=pk).update(**{field.attname: fresh})
                    rotated += 1
            label = f"{model._meta.label}.{field.name}"
            self.stdout.write(f"{label}: {rotated} re-encrypted, {current} already current.")
            total_rotated += rotated
            total_current += current
        if total_rotated:
            config_cache.bump_version()  # memos holding the old tokens reload
        self.stdout.write(
            f"Re-encrypted {total_rotated} value(s); {total_current} already under the current key."
        )
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} value(s) cannot be decrypted with any configured key "
                f"({', '.join(unreadable[:10])}): add the key they were encrypted with."
            )
