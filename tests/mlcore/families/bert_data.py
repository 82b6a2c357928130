"""Synthetic rows for the bert family tests: the churn signal lives in one text segment."""
from __future__ import annotations

import numpy as np

from mlcore.families.base import Rows

BAD = [
    "review 1 stars: arrived broken, want a refund",
    "ticket open: refund not processed, very angry",
    "review 2 stars: terrible quality, never again",
]
GOOD = [
    "review 5 stars: lovely shoes, great fit",
    "review 4 stars: fast delivery, happy with it",
    "ticket closed: thanks for the quick help",
]
SIGNAL_SEGMENT = 2  # profile, aggregates, then the newest event: the one that carries the label


def make_rows(n: int, seed: int, *, label_noise: float = 0.0, n_orders: int | None = None) -> Rows:
    """Churners wrote a bad review/ticket most recently; features are noise except `signal`."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    texts = []
    for i, y in enumerate(labels):
        orders = n_orders if n_orders is not None else int(rng.integers(1, 6))
        events = [f"2026-0{1 + k % 9}-1{k % 10} order {20 + 7 * k}.00 EUR shoes" for k in range(orders)]
        texts.append(
            "\n".join(
                [
                    f"customer since 2024-0{1 + i % 9}-01, segment retail",
                    f"{orders} orders, spent {100 + 13 * i % 400} EUR in the last 365 days",
                    str(rng.choice(BAD if y else GOOD)),
                    *events,
                ]
            )
        )
    flipped = rng.random(n) < label_noise
    labels = np.where(flipped, 1 - labels, labels)
    features = np.column_stack(
        [rng.normal(size=n), rng.normal(size=n) * 50 + 200, labels + rng.normal(scale=2.0, size=n)]
    ).astype(np.float32)
    return Rows(
        customer_ids=np.arange(n, dtype=np.int64) + 1000 * seed,
        as_of=np.full(n, np.datetime64("2026-11-01"), dtype="datetime64[ns]"),
        texts=texts,
        features=features,
        feature_names=("noise", "noise_large_scale", "signal"),
        labels=labels.astype(np.int8),
    )
