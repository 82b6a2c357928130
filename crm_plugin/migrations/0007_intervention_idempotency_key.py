# A caller that may send the same action twice (Slack re-sends a form it got no answer to; a double
# click submits twice) names it with a key; the unique constraint keeps one row per key, also under
# a race. NULL for everything else, so existing rows need no value.
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("crm_plugin", "0006_event_import_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="intervention",
            name="idempotency_key",
            field=models.CharField(
                blank=True, default=None, null=True, unique=True, max_length=200,
                help_text="Set by callers that may send the same action twice (a re-sent Slack form): one row per key.",
            ),
        ),
    ]
