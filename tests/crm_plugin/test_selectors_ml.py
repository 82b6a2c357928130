"""selectors_ml.events_frame: the rows the models read, typed the same on PostgreSQL and SQLite."""
from datetime import timedelta
from decimal import Decimal

import pandas as pd
import pytest
from django.utils import timezone

from crm_plugin.scoring import selectors as selectors_ml
from tests.crm_plugin.factories import CustomerFactory, EventFactory

pytestmark = pytest.mark.django_db


def test_events_frame_types_order_and_filters():
    at = timezone.now().replace(microsecond=0) - timedelta(days=3)
    a, b = CustomerFactory(), CustomerFactory()
    tie_first = EventFactory(customer=a, occurred_at=at, amount=Decimal("19.99"),
                             attributes={"category": "shoes", "sizes": [41, 42], "note": 'say "hi"'})
    tie_second = EventFactory(customer=a, occurred_at=at, kind="review", amount=None, rating=2, text="meh",
                              attributes={})
    EventFactory(customer=a, occurred_at=at - timedelta(days=1), kind="ticket", amount=None,
                 attributes={"status": "closed", "closed_at": None})
    EventFactory(customer=b, occurred_at=at + timedelta(days=2))  # after `before`
    EventFactory(customer=CustomerFactory(), occurred_at=at)  # not asked for

    frame = selectors_ml.events_frame(customer_ids=[a.pk, b.pk], before=at + timedelta(days=1))

    assert list(frame.columns) == list(selectors_ml.EVENT_FIELDS)
    assert frame["customer_id"].tolist() == [a.pk] * 3
    assert frame["kind"].tolist() == ["ticket", "order", "review"]  # by time, then id for ties
    assert tie_first.pk < tie_second.pk
    assert str(frame["occurred_at"].dt.tz) == "UTC" and frame["occurred_at"].iloc[1] == pd.Timestamp(at)
    assert frame["amount"].dtype == "float64" and frame["amount"].iloc[1] == 19.99 and pd.isna(frame["amount"].iloc[2])
    assert frame["attributes"].tolist() == [{"status": "closed", "closed_at": None},
                                            {"category": "shoes", "sizes": [41, 42], "note": 'say "hi"'}, {}]
    assert frame["rating"].iloc[2] == 2 and frame["text"].iloc[2] == "meh"


def test_events_frame_of_nobody_is_empty_with_the_columns():
    frame = selectors_ml.events_frame(customer_ids=[])
    assert frame.empty and list(frame.columns) == list(selectors_ml.EVENT_FIELDS)
