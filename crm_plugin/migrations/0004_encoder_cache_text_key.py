# The encoder cache is keyed by a fingerprint of what the text is built from, not the text's sha256:
# a daily re-run compares keys without building every text. Old entries (sha256 values) never match
# a key, so their customers are encoded once more on the next run.
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("crm_plugin", "0003_customer_risk_change_7d"),
    ]

    operations = [
        migrations.RenameField(model_name="encodercacheentry", old_name="text_sha", new_name="text_key"),
        migrations.AlterField(
            model_name="encodercacheentry",
            name="text_key",
            field=models.CharField(
                help_text="Fingerprint of what the text was built from (mlcore.snapshot.text_keys): same key, same text.",
                max_length=64,
            ),
        ),
    ]
