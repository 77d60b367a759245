# Webhook secrets encrypted at rest (issue 17): the column becomes a Fernet token.

import aura_orchestrator.crypto
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("budgets", "0002_spend_budgets"),
    ]

    operations = [
        migrations.AlterField(
            model_name="alertendpoint",
            name="secret",
            field=aura_orchestrator.crypto.EncryptedTextField(
                editable=False, help_text="Signs every delivery; never shown again after saving."
            ),
        ),
        aura_orchestrator.crypto.encrypt_existing("budgets", "AlertEndpoint", "secret"),
    ]
