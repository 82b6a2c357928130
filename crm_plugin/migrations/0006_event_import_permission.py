# Importing events through the API needs its own permission (crm_plugin.import_events), which
# `manage.py integration_create` grants to integration users and account managers do not have.
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("crm_plugin", "0005_scoringrun_lease"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="event",
            options={
                "ordering": ["-occurred_at"],
                "permissions": [
                    ("import_events", "Can import events and set customer profiles and owners through the API"),
                ],
            },
        ),
    ]
