# The worklist's ranking columns stored on Customer (the latest probability, value at risk, last
# order, last action), filled in from the rows they summarise in one UPDATE, then the indexes the
# worklist and `/churn top` read pages from (built once, after the rows are written).

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import FloatField, OuterRef, Subquery
from django.db.models.functions import Cast

import crm_plugin.models


def backfill(apps, schema_editor):
    """Frozen copies of what scoring, the import and logging an action now store, as one set-based UPDATE.

    Scored customers without a stage (scored before stages were stored) were shown on the at-risk tab
    when their band was medium or high; they are staged so until the next scoring run stages them,
    so the tab is one indexed range instead of a condition on every customer's score.
    """
    Customer = apps.get_model("crm_plugin", "Customer")
    ChurnScore = apps.get_model("crm_plugin", "ChurnScore")
    Event = apps.get_model("crm_plugin", "Event")
    Intervention = apps.get_model("crm_plugin", "Intervention")
    probability = Subquery(ChurnScore.objects.filter(pk=OuterRef("latest_score_id")).values("probability")[:1],
                           output_field=FloatField())
    last_order = Subquery(Event.objects.filter(customer_id=OuterRef("pk"), kind="order")
                          .order_by("-occurred_at").values("occurred_at")[:1])
    last_action = Subquery(Intervention.objects.filter(customer_id=OuterRef("pk"))
                           .order_by("-created_at").values("created_at")[:1])
    Customer.objects.update(latest_probability=probability, value_at_risk=probability * Cast("value", FloatField()),
                            last_order_at=last_order, last_action_at=last_action)
    Customer.objects.filter(lifecycle_stage="", latest_score__band__in=["high", "medium"]).update(lifecycle_stage="at_risk")
    if schema_editor.connection.vendor == "postgresql":
        # The updates queued deferred foreign-key checks; PostgreSQL builds no index on the table until they ran.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        schema_editor.execute("SET CONSTRAINTS ALL DEFERRED")


class Migration(migrations.Migration):

    dependencies = [
        ('crm_plugin', '0012_message_embedding'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='customer',
            name='customer_stage_owner',
        ),
        migrations.AddField(
            model_name='customer',
            name='last_action_at',
            field=models.DateTimeField(blank=True, editable=False, help_text='When the latest retention action was logged.', null=True),
        ),
        migrations.AddField(
            model_name='customer',
            name='last_order_at',
            field=models.DateTimeField(blank=True, editable=False, help_text='When the latest order was placed.', null=True),
        ),
        migrations.AddField(
            model_name='customer',
            name='latest_probability',
            field=models.FloatField(blank=True, editable=False, help_text="The latest score's churn probability; empty until scored.", null=True),
        ),
        migrations.AddField(
            model_name='customer',
            name='value_at_risk',
            field=models.FloatField(blank=True, editable=False, help_text='Latest churn probability x yearly value: what the worklist ranks by; empty until scored.', null=True),
        ),
        migrations.AlterField(
            model_name='customer',
            name='owner',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='customers', to='crm_plugin.accountowner'),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='customer',
            index=models.Index(fields=['owner', 'segment', 'lifecycle_stage'], name='customer_owner_segment_stage'),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=crm_plugin.models.SortIndex(expressions=(models.F('lifecycle_stage'), models.OrderBy(models.F('value_at_risk'), descending=True, nulls_last=True), models.OrderBy(models.F('latest_probability'), descending=True, nulls_last=True), models.F('id'), models.F('owner')), name='customer_stage_value_at_risk'),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=crm_plugin.models.SortIndex(expressions=(models.F('lifecycle_stage'), models.OrderBy(models.F('latest_probability'), descending=True, nulls_last=True), models.F('id'), models.F('owner')), name='customer_stage_risk'),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=crm_plugin.models.SortIndex(expressions=(models.F('lifecycle_stage'), models.OrderBy(models.F('risk_change_7d'), descending=True, nulls_last=True), models.OrderBy(models.F('latest_probability'), descending=True, nulls_last=True), models.F('id'), models.F('owner')), name='customer_stage_change'),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=crm_plugin.models.SortIndex(expressions=(models.F('lifecycle_stage'), models.OrderBy(models.F('value'), descending=True, nulls_last=True), models.OrderBy(models.F('latest_probability'), descending=True, nulls_last=True), models.F('id'), models.F('owner')), name='customer_stage_yearly'),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=crm_plugin.models.SortIndex(expressions=(models.F('lifecycle_stage'), models.OrderBy(models.F('last_order_at'), descending=True, nulls_last=True), models.OrderBy(models.F('latest_probability'), descending=True, nulls_last=True), models.F('id'), models.F('owner')), name='customer_stage_last_order'),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=crm_plugin.models.SortIndex(expressions=(models.F('lifecycle_stage'), models.OrderBy(models.F('last_action_at'), descending=True, nulls_last=True), models.OrderBy(models.F('latest_probability'), descending=True, nulls_last=True), models.F('id'), models.F('owner')), name='customer_stage_last_action'),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=crm_plugin.models.SortIndex(expressions=(models.OrderBy(models.F('value_at_risk'), descending=True, nulls_last=True), models.OrderBy(models.F('latest_probability'), descending=True, nulls_last=True), models.F('id'), models.F('owner')), name='customer_value_at_risk'),
        ),
    ]
