"""The customer table's indexes: the search by shop id or email is an index lookup, and no index is
kept that nothing reads (the daily scoring UPDATE writes an entry in every index for every customer)."""
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from crm_plugin.customers.selectors import customer_identifier_match
from crm_plugin.models import Customer
from tests.crm_plugin.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_a_search_by_shop_id_or_email_uses_indexes(require_postgres):
    CustomerFactory(external_id="C000123", email="Ana@Example.com")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small would be scanned otherwise
        for text in ("c000123", "ana@example.COM"):
            plan = Customer.objects.filter(customer_identifier_match(text)).explain()
            assert "Seq Scan" not in plan and "customer_external_id_upper" in plan, plan
        assert "customer_email_upper" in Customer.objects.filter(customer_identifier_match("ana@example.com")).explain()
    assert [c.external_id for c in Customer.objects.filter(customer_identifier_match("ANA@EXAMPLE.COM"))] == ["C000123"]


def test_no_pattern_ops_twins_on_the_customer_table(require_postgres):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [Customer._meta.db_table])
        names = [row[0] for row in cursor.fetchall()]
    assert not [n for n in names if n.endswith("_like")], names


def test_shop_ids_stay_unique():
    CustomerFactory(external_id="C1")
    with pytest.raises(ValidationError, match="External id already exists"):
        Customer(external_id="C1").validate_constraints()
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.create(external_id="C1")
