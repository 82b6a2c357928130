# The lifecycle stage is stored with the scores (empty until the next scoring run writes it; a
# database default too, because the importer inserts customers with its own SQL);
# the owner assignment fields record who moved a customer between books, and when; a new outbox
# kind tells the new owner.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('crm_plugin', '0007_intervention_idempotency_key'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='customer',
            name='lifecycle_stage',
            field=models.CharField(blank=True, choices=[('at_risk', 'At risk'), ('new', 'New'), ('active', 'Active'), ('won_back', 'Won back'), ('lapsed', 'Lapsed')], db_default='', default='', editable=False, help_text='New, active, at risk, lapsed (no order within the horizon) or won back; empty until scored.', max_length=16),
        ),
        migrations.AddField(
            model_name='customer',
            name='owner_assigned_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='customer',
            name='owner_assigned_by',
            field=models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='alert',
            name='kind',
            field=models.CharField(choices=[('high_risk', 'Crossed into high risk'), ('sharp_rise', 'Sharp rise'), ('digest', 'Daily digest'), ('follow_up', 'Follow-up question'), ('escalation', 'Escalation to manager'), ('assigned', 'Customers assigned to you')], max_length=16),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=models.Index(fields=['lifecycle_stage', 'owner'], name='customer_stage_owner'),
        ),
    ]
