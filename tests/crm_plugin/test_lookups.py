"""`__any_of` returns exactly what `__in` returns, on PostgreSQL (as = ANY(array)) and elsewhere."""
import pytest
from django.db import connection

from crm_plugin.models import Customer, Event
from tests.crm_plugin.factories import CustomerFactory, EventFactory

pytestmark = pytest.mark.django_db


def test_any_of_matches_in_for_values_instances_and_subqueries():
    customers = [CustomerFactory() for _ in range(4)]
    for c in customers[:3]:
        EventFactory(customer=c)
    ids = [c.pk for c in customers[:2]] + [None]
    cases = [
        (Customer.objects.filter(pk__any_of=ids), Customer.objects.filter(pk__in=ids)),
        (Event.objects.filter(customer_id__any_of=ids), Event.objects.filter(customer_id__in=ids)),
        (Event.objects.filter(customer__any_of=customers[1:3]), Event.objects.filter(customer__in=customers[1:3])),
        (Customer.objects.filter(pk__any_of=Event.objects.values("customer_id")),
         Customer.objects.filter(pk__in=Event.objects.values("customer_id"))),
        (Customer.objects.filter(pk__any_of=[]), Customer.objects.none()),
    ]
    for any_of, plain_in in cases:
        assert sorted(any_of.values_list("pk", flat=True)) == sorted(plain_in.values_list("pk", flat=True))
    sql = str(Customer.objects.filter(pk__any_of=ids).query)
    assert ("= ANY(" in sql) == (connection.vendor == "postgresql")
