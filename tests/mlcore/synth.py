"""A small synthetic shop as DataFrames (and optionally DB rows) with a learnable churn signal."""
from __future__ import annotations

import numpy as np
import pandas as pd

START = pd.Timestamp("2025-01-01")


def synth_frames(n_customers: int = 300, days: int = 420, seed: int = 0, *, transactions_only: bool = False):
    """Customers order every `gap` days until a churn day; churners get bad reviews and open tickets first."""
    rng = np.random.default_rng(seed)
    rows, customers = [], []
    for cid in range(1, n_customers + 1):
        gap = rng.uniform(8, 40)
        start = rng.uniform(0, 60)
        churn_day = rng.uniform(120, days * 1.6)
        customers.append({"customer_id": cid, "segment": rng.choice(["vip", "regular"]),
                          "first_seen_at": START + pd.Timedelta(days=start)})
        t = start
        while t < min(days, churn_day):
            # Drift: the gap widens over the 60 days before churning.
            slow = 1.0 + max(0.0, 1 - (churn_day - t) / 60.0) * 1.5
            rows.append({"customer_id": cid, "kind": "order", "occurred_at": START + pd.Timedelta(days=t),
                         "amount": round(rng.uniform(20, 120), 2), "quantity": 1,
                         "attributes": {"order_id": f"o{cid}-{t:.0f}", "category": rng.choice(["shoes", "bags"])}})
            t += rng.exponential(gap * slow) + 1
        if transactions_only:
            continue
        if churn_day < days and rng.random() < 0.7:
            d = max(start, churn_day - rng.uniform(5, 40))
            rows.append({"customer_id": cid, "kind": "review", "occurred_at": START + pd.Timedelta(days=d),
                         "rating": 1, "text": "arrived broken", "attributes": {"product": "shoes"}})
            rows.append({"customer_id": cid, "kind": "ticket", "occurred_at": START + pd.Timedelta(days=d + 1),
                         "text": "refund not processed", "attributes": {"ticket_id": f"t{cid}", "status": "open", "closed_at": None}})
        for v in rng.uniform(start, min(days, churn_day), size=rng.integers(0, 8)):
            rows.append({"customer_id": cid, "kind": "visit", "occurred_at": START + pd.Timedelta(days=v),
                         "attributes": {"pages": 3, "duration_s": 60}})
    events = pd.DataFrame(rows)
    for c in ("amount", "quantity", "rating"):
        if c not in events:
            events[c] = np.nan
    events["text"] = events.get("text", pd.Series(index=events.index, dtype=object)).fillna("")
    events["occurred_at"] = pd.to_datetime(events["occurred_at"]).dt.tz_localize("UTC")
    return events, pd.DataFrame(customers)


def synth_into_db(n_customers: int = 120, days: int = 420, seed: int = 0, *, transactions_only: bool = False):
    """Write the synthetic shop as Customer/Event rows; returns the last event time."""
    from decimal import Decimal

    from crm_plugin.models import Customer, Event

    events, customers = synth_frames(n_customers, days, seed, transactions_only=transactions_only)
    objs = Customer.objects.bulk_create([
        Customer(external_id=f"S{seed}-{c.customer_id}", segment=c.segment,
                 first_seen_at=c.first_seen_at.tz_localize("UTC").to_pydatetime())
        for c in customers.itertuples()
    ])
    by_synth = {i + 1: obj.pk for i, obj in enumerate(objs)}
    batch = []
    for i, e in enumerate(events.itertuples()):
        batch.append(Event(
            customer_id=by_synth[e.customer_id], kind=e.kind, occurred_at=e.occurred_at.to_pydatetime(),
            amount=None if pd.isna(e.amount) else Decimal(str(e.amount)),
            quantity=None if pd.isna(e.quantity) else int(e.quantity),
            rating=None if pd.isna(e.rating) else int(e.rating),
            text=e.text or "", attributes=e.attributes if isinstance(e.attributes, dict) else {},
            source_id=f"synth-{seed}-{i}",
        ))
    Event.objects.bulk_create(batch, batch_size=2000)
    return events["occurred_at"].max().to_pydatetime()
