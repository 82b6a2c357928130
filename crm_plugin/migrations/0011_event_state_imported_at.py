# When a re-sent ticket closed (or a coupon was redeemed) after its first import. Null for every
# existing event: their states are the ones first imported, known since imported_at.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('crm_plugin', '0010_customer_segment_since'),
    ]

    operations = [
        migrations.AddField(
            model_name='event',
            name='state_imported_at',
            field=models.DateTimeField(blank=True, help_text='When an import moved this ticket to closed (coupon to redeemed); empty while the state is the one first imported.', null=True),
        ),
    ]
