"""Benchmark: BERT fine-tuning samples/s and inference customers/s (fp32 vs int8, sorted vs not).

Uses the default packaged all-MiniLM-L6-v2 (or --model-path) on synthetic customer texts in
the product's layout (profile, aggregates, events newest first). No database needed.

    .venv/bin/python benchmarks/bert_finetune.py [--train-rows 160] [--infer-rows 512] [--json PATH]

Reports:
- fine-tuning samples/s at max length 128 (every text fills 128 tokens; validation excluded)
  for the default config (fp32, token table frozen), full fine-tuning, and CPU bf16 autocast;
- encoder customers/s on mixed-length texts: fp32/int8 x batches sorted by length or not,
  plus int8 at full length 128;
- drift vs fp32 on the fine-tuned model (probabilities and embeddings) for int8 (default, and
  with the FFN output projections quantised too) and CPU bf16 autocast, and how much an
  embedding depends on its batch mates (per-tensor int8 activation scales);
- head-only customers/s (the cached-embedding path).
The machine's load average is printed before and after: other processes skew the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mlcore.families.base import Rows  # noqa: E402
from mlcore.families.bert import BertConfig, BertFamily, packaged_minilm_path  # noqa: E402

PRODUCTS = ["running shoes", "rain jacket", "wool socks", "yoga mat", "water bottle", "hiking boots", "backpack"]
BAD = [
    "review 1 stars: arrived broken, the sole came off after two days, want a refund",
    "ticket open: refund not processed after three weeks, nobody answers my emails",
    "return 59.90 EUR: wrong size again, the size chart is useless",
    "review 2 stars: cheap material, not worth the money",
]
GOOD = [
    "review 5 stars: lovely quality, fits perfectly, will buy again",
    "ticket closed: exchange handled quickly, thanks for the friendly help",
    "review 4 stars: fast delivery and good value",
    "coupon WELCOME10 redeemed: 10.00 EUR off",
]


def customer_text(rng: np.random.Generator, churner: bool, n_events: int) -> str:
    """One text in the product's layout: profile, aggregates, events newest first."""
    day = 300
    events = []
    for k in range(n_events):
        day -= int(rng.integers(3, 40))
        date = f"2026-{1 + (day // 28) % 12:02d}-{1 + day % 28:02d}"
        if k == 0:
            events.append(f"{date} {rng.choice(BAD if churner else GOOD)}")
        elif rng.random() < 0.2:
            events.append(f"{date} {rng.choice(BAD + GOOD)}")
        else:
            events.append(f"{date} order {rng.integers(15, 200)}.{rng.integers(0, 99):02d} EUR {rng.choice(PRODUCTS)} x{rng.integers(1, 4)}")
    profile = f"customer since 20{rng.integers(19, 26)}-0{rng.integers(1, 9)}-1{rng.integers(0, 9)}, country DE, segment retail"
    aggregates = f"{n_events} orders, {rng.integers(50, 3000)}.00 EUR in the last 365 days, usual gap {rng.integers(7, 90)} days"
    return "\n".join([profile, aggregates, *events])


def make_rows(n: int, seed: int, *, min_events: int, max_events: int) -> Rows:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int8)
    texts = [customer_text(rng, bool(y), int(rng.integers(min_events, max_events + 1))) for y in labels]
    features = np.column_stack([rng.normal(size=(n, 20)), labels + rng.normal(scale=1.5, size=n)]).astype(np.float32)
    return Rows(
        customer_ids=np.arange(n, dtype=np.int64),
        as_of=np.full(n, np.datetime64("2026-11-01"), dtype="datetime64[ns]"),
        texts=texts,
        features=features,
        feature_names=tuple(f"f{i}" for i in range(21)),
        labels=labels,
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", default=str(packaged_minilm_path() or ""))
    parser.add_argument("--train-rows", type=int, default=160, help="rows per fine-tuning run (10 steps of 16)")
    parser.add_argument("--infer-rows", type=int, default=512)
    parser.add_argument("--head-rows", type=int, default=100_000)
    parser.add_argument("--skip-variants", action="store_true", help="only the default fine-tuning config")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    results: dict = {"model_path": args.model_path, "cores": cores, "torch": torch.__version__, "load_before": load_average()}
    print(f"model {args.model_path}\ncores {cores}, torch {torch.__version__}, load average {results['load_before']}")

    # 1. Fine-tuning throughput at max length 128: enough events that every text is cut at 128 tokens.
    train = make_rows(args.train_rows, seed=1, min_events=14, max_events=16)
    valid = make_rows(32, seed=2, min_events=14, max_events=16)
    variants = {"default (fp32, token table frozen)": {}}
    if not args.skip_variants:
        variants["full fine-tune (fp32, token table trained)"] = {"freeze_word_embeddings": False}
        variants["cpu bf16 autocast (token table frozen)"] = {"cpu_bf16": True}
    results["finetune"] = {}
    family = None
    for name, overrides in variants.items():
        config = BertConfig(model_path=args.model_path, epochs=1, max_length=128, progress_bar=False, **overrides)
        candidate = BertFamily(config)
        report = candidate.fit(train, valid)
        tokens = candidate._tokenize(train.texts)
        results["finetune"][name] = {
            "samples_per_s": round(report.extra["samples_per_s"], 2),
            "batch_size": config.train_batch_size(),
            "mean_tokens": round(float(np.mean([len(t) for t in tokens])), 1),
            "steps": report.extra["steps"],
        }
        print(f"fine-tune  {name:45s} {report.extra['samples_per_s']:6.2f} samples/s")
        if family is None:
            family = candidate  # the default-config model is the one the inference figures use

    # 2. Inference throughput on mixed lengths (1-15 events: ~30-128 tokens) and at full length.
    mixed = make_rows(args.infer_rows, seed=3, min_events=1, max_events=15)
    full = make_rows(args.infer_rows, seed=4, min_events=14, max_events=16)
    family.encode(mixed.texts[:64])  # build the int8 copy and warm up
    family.encode(mixed.texts[:64], quantized=False)
    results["encode"] = {}
    embeddings = {}
    for label, quantized, sort in [
        ("fp32 unsorted", False, False),
        ("fp32 length-sorted", False, True),
        ("int8 unsorted", True, False),
        ("int8 length-sorted", True, True),
    ]:
        emb, seconds = timed(family.encode, mixed.texts, quantized=quantized, sort_by_length=sort)
        embeddings[label] = emb
        results["encode"][label] = round(len(mixed) / seconds, 1)
        print(f"encode     {label:45s} {len(mixed) / seconds:7.1f} customers/s (mixed lengths)")
    _, seconds = timed(family.encode, full.texts, quantized=True)
    results["encode"]["int8 full length 128"] = round(len(full) / seconds, 1)
    print(f"encode     {'int8 full length 128':45s} {len(full) / seconds:7.1f} customers/s")
    _, seconds = timed(family.encode, full.texts, quantized=False)
    results["encode"]["fp32 full length 128"] = round(len(full) / seconds, 1)
    print(f"encode     {'fp32 full length 128':45s} {len(full) / seconds:7.1f} customers/s")
    base = results["encode"]["fp32 unsorted"]
    results["encode_speedup_vs_fp32_unsorted"] = {k: round(v / base, 2) for k, v in results["encode"].items()}

    # 3. int8 drift vs fp32, on the fine-tuned model.
    def drift(emb_a: np.ndarray, emb_b: np.ndarray) -> dict:
        p_a = family.predict_proba_from_embeddings(emb_a, mixed.features)
        p_b = family.predict_proba_from_embeddings(emb_b, mixed.features)
        cos = np.sum(emb_a * emb_b, axis=1) / (np.linalg.norm(emb_a, axis=1) * np.linalg.norm(emb_b, axis=1))
        return {
            "prob_max_abs": float(np.abs(p_a - p_b).max()),
            "prob_mean_abs": float(np.abs(p_a - p_b).mean()),
            "embedding_cos_min": float(cos.min()),
            "embedding_cos_mean": float(cos.mean()),
        }

    def variant(**changes) -> BertFamily:
        """The same fine-tuned weights under other inference settings."""
        other = BertFamily.__new__(BertFamily)
        other.__dict__.update(family.__dict__)
        other.config = BertConfig(**{**family.config.__dict__, **changes})
        other._quantized_encoder = None
        other.encode(mixed.texts[:64])  # warm up (and quantise) outside the timing
        return other

    fp32 = embeddings["fp32 length-sorted"]
    results["drift_vs_fp32"] = {"int8, FFN output kept fp32 (default)": drift(fp32, embeddings["int8 length-sorted"])}
    others = {
        "int8 all Linear": variant(quantize_ffn_output=True),
        "cpu bf16 autocast": variant(quantize_inference=False, cpu_bf16=True),
    }
    for name, other in others.items():
        emb, seconds = timed(other.encode, mixed.texts)
        results["encode"][f"{name}, length-sorted"] = round(len(mixed) / seconds, 1)
        print(f"encode     {name + ', length-sorted':45s} {len(mixed) / seconds:7.1f} customers/s (mixed lengths)")
        results["drift_vs_fp32"][name] = drift(fp32, emb)
    for name, figures in results["drift_vs_fp32"].items():
        print(f"drift      {name:45s} " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))

    # Per-tensor activation scales make an int8 embedding depend on its batch mates.
    results["alone_vs_in_batch_max_abs"] = {}
    for name, other, batched in [
        ("fp32", variant(quantize_inference=False), fp32),
        ("int8 (default)", family, embeddings["int8 length-sorted"]),
        ("cpu bf16", others["cpu bf16 autocast"], others["cpu bf16 autocast"].encode(mixed.texts)),
    ]:
        alone = np.vstack([other.encode([t]) for t in mixed.texts[:32]])
        results["alone_vs_in_batch_max_abs"][name] = float(np.abs(alone - batched[:32]).max())
    print("embedding alone vs in a batch, max abs diff: "
          + ", ".join(f"{k} {v:.1e}" for k, v in results["alone_vs_in_batch_max_abs"].items()))

    # 4. The cached-embedding path: the head only.
    reps = -(-args.head_rows // len(mixed))
    emb = np.tile(fp32, (reps, 1))[: args.head_rows]
    feats = np.tile(mixed.features, (reps, 1))[: args.head_rows]
    _, seconds = timed(family.predict_proba_from_embeddings, emb, feats)
    results["head_only_customers_per_s"] = round(args.head_rows / seconds)
    print(f"head only (cached embeddings)                          {args.head_rows / seconds:9.0f} customers/s")

    results["load_after"] = load_average()
    print(f"load average after: {results['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
