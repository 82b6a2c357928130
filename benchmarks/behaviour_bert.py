"""Benchmark: behaviour-BERT pretraining and fine-tuning samples/s, and scoring customers/s (no Django, no database).

Synthetic event sequences (uint8 tokens, mlcore.event_tokens) and features of the product's
shape; the model at the product's size (2 layers, hidden 128, 256 events) unless told otherwise.
Runs on CUDA under bf16 when present, else CPU. Scoring is streamed in chunks, so memory stays
flat for any customer count; each chunk is generated on the fly (nothing but the model is held).

    python benchmarks/behaviour_bert.py [--customers 100000] [--train-seconds 30] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mlcore.families.event_pretrain import EventPretrainConfig, pretrain_events  # noqa: E402
from mlcore.event_tokens import FIELD_SIZES, FIELDS, MAX_EVENTS, OFFSETS  # noqa: E402
from mlcore.families.base import Rows  # noqa: E402
from mlcore.families.behaviour import BehaviourBertFamily, BehaviourConfig  # noqa: E402

N_FEATURES = 45


def sequences(n: int, max_events: int, rng: np.random.Generator) -> np.ndarray:
    """Right-aligned random histories, lengths log-uniform in 1..max_events (like a shop's)."""
    out = np.zeros((n, max_events, len(FIELDS)), np.uint8)
    lengths = np.exp(rng.uniform(0, np.log(max_events), n)).astype(int).clip(1, max_events)
    for j, name in enumerate(FIELDS):
        out[:, :, j] = OFFSETS[name] + rng.integers(0, FIELD_SIZES[name], (n, max_events))
    out[np.arange(max_events)[None, :] < (max_events - lengths)[:, None]] = 0
    return out


def rows(n: int, max_events: int, rng: np.random.Generator, labels: bool = True) -> Rows:
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=n) > 0.8).astype(np.int8) if labels else None
    return Rows(customer_ids=np.arange(n), as_of=np.zeros(n, "datetime64[ns]"), texts=[""] * n, features=x,
                feature_names=tuple(f"f{i}" for i in range(N_FEATURES)), labels=y,
                events=sequences(n, max_events, rng))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--train-rows", type=int, default=20_000)
    ap.add_argument("--train-seconds", type=float, default=30.0)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--max-events", type=int, default=MAX_EVENTS)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--chunk", type=int, default=20_000)
    ap.add_argument("--json")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    batch = args.batch_size or (256 if cuda else 64)
    rng = np.random.default_rng(0)
    out: dict = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "threads": torch.get_num_threads(),
                 "load_before": os.getloadavg(), "layers": args.layers, "hidden": args.hidden,
                 "max_events": args.max_events}
    arch = dict(layers=args.layers, hidden=args.hidden, heads=max(1, args.hidden // 32), max_events=args.max_events)
    # Pretraining: samples/s over a fixed time budget.
    report, _ = pretrain_events(sequences(args.train_rows, args.max_events, rng),
                                config=EventPretrainConfig(max_train_minutes=args.train_seconds / 60, batch_size=batch,
                                                           **arch))
    out["pretrain_samples_per_s"] = report.samples_per_s
    # Fine-tuning: samples/s (validation excluded) over the same budget.
    train, valid = rows(args.train_rows, args.max_events, rng), rows(2_000, args.max_events, rng)
    family = BehaviourBertFamily(BehaviourConfig(max_train_minutes=args.train_seconds / 60, batch_size=batch,
                                                 eval_batch_size=4 * batch, **arch))
    fit = family.fit(train, valid)
    out["finetune_samples_per_s"] = fit.extra["train_samples_per_s"]
    out["finetune_validations"] = fit.extra["validations"]
    # Scoring: customers/s, streamed in chunks (generation time excluded), peak memory.
    scored, seconds = 0, 0.0
    while scored < args.customers:
        n = min(args.chunk, args.customers - scored)
        chunk = rows(n, args.max_events, rng, labels=False)
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        family.predict_proba(chunk)
        if cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t
        scored += n
    out["score_customers"] = scored
    out["score_customers_per_s"] = round(scored / seconds, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
