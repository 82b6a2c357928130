"""`__any_of` returns exactly what `__in` returns, on PostgreSQL (as = ANY(array)) and elsewhere."""
import pytest
from django.db import connection

from crm_plugin.lookups import pg_array
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
        # Plain ints (sent as one array literal), repeated; ids as text still go through the field.
        (Event.objects.filter(customer_id__any_of=[customers[0].pk] * 2 + [customers[2].pk]),
         Event.objects.filter(customer_id__in=[customers[0].pk, customers[2].pk])),
        (Customer.objects.filter(pk__any_of=[str(customers[3].pk)]), Customer.objects.filter(pk=customers[3].pk)),
        (Customer.objects.filter(segment__any_of=["vip", 'a "b", {c}\\']), Customer.objects.filter(segment="vip")),
    ]
    for any_of, plain_in in cases:
        assert sorted(any_of.values_list("pk", flat=True)) == sorted(plain_in.values_list("pk", flat=True))
    sql = str(Customer.objects.filter(pk__any_of=ids).query)
    assert ("= ANY(" in sql) == (connection.vendor == "postgresql")


def test_array_literals_round_trip_through_postgresql(require_postgres):
    texts = ["plain", 'quote " and \\ backslash', "{braces}, commas", "", "NULL", None, "é ✓"]
    floats = [0.1, 1 / 3, -2.5e-300, 1e300, float("nan"), float("inf")]
    with connection.cursor() as cursor:
        cursor.execute("SELECT array_agg(t), (SELECT array_agg(f) FROM unnest(%s::float8[]) AS f) "
                       "FROM unnest(%s::text[]) AS t", [pg_array(floats), pg_array(texts)])
        got_texts, got_floats = cursor.fetchone()
    assert got_texts == texts
    assert got_floats[:4] == floats[:4] and got_floats[4] != got_floats[4] and got_floats[5] == float("inf")
