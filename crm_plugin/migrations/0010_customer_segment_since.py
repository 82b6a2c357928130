# When a customer's current segment was recorded. Existing customers get the time of this
# migration: nobody knows since when their segment holds, so past snapshots treat it as unknown.

import django.db.models.functions.datetime
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('crm_plugin', '0009_loop_snapshot'),
    ]

    operations = [
        migrations.AddField(
            model_name='customer',
            name='segment_since',
            field=models.DateTimeField(db_default=django.db.models.functions.datetime.Now(), default=django.utils.timezone.now, editable=False, help_text='When the current segment was recorded (by an import or in the admin); models see the segment only at dates after this.'),
        ),
    ]
