"""Benchmark: daily scoring with the default model (packaged MiniLM registered as a `bert` version) or another family.

Needs a PostgreSQL database of its own (it is wiped): the name must contain "bench".

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/churn_mlb_bench \\
        .venv/bin/python benchmarks/scoring.py --customers 25000 [--json PATH]

Steps, each timed: synthesise customers (--events, default 8-14 each: orders, visits, reviews, tickets) with
COPY; fit a `bert` head on 400 customers for a few seconds (the speed of scoring does not depend
on how well the head learned) and promote it; score everyone (chunks of SCORE_CHUNK_SIZE, every
text encoded); VACUUM ANALYZE, as autovacuum would overnight; give 5% of customers one new order
and score the next day (only their texts are built and encoded, the rest come from
EncoderCacheEntry). `--family stacked` (or bert_events, lightgbm, ...) fits that family instead on
1,000 customers within --fit-minutes (event tokens, message columns, the product's behaviour-BERT
size); the behaviour families encode every customer's event tokens every day (no cache: the
tokens' ages move with the date). Chunks run in-process, or with --workers N (and
CELERY_BROKER_URL) on a real `celery worker -c N`. Peak memory is this process's max RSS (and the pool processes' with
--workers); run several sizes to see whether it grows with the customer count. DEBUG is off
unless the environment sets it, as in production.

Machines differ (the packaged encoder alone ran 364 texts/s on one 2-core machine and 193 on
another), so the run measures its own yardstick: the packaged MiniLM (BERT_MODEL_PATH) encoding
the texts of the first --encoder-texts customers through `BertFamily.encode`, the call scoring
makes, with the champion's precision, batch size and threads (this process's: with --workers
each pool process has fewer); once right before the full scoring and once after the daily
re-run. Each scoring rate is also given as a ratio to the mean of the two, the in-process rates
also per CPU-second of this process, and the load average is printed at every step; a warning
says when the two encoder figures disagree, i.e. the machine's speed changed during the run.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# As production runs: with DEBUG on, Django keeps every query's SQL and parameters in memory (9,000
# of them; a chunk's score INSERT alone carries 2,000 customers' reasons) and formats each one.
os.environ.setdefault("DEBUG", "false")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from crm_plugin.scoring import selectors as selectors_ml
from crm_plugin.models import ChurnScore, Customer, EncoderCacheEntry, Event, ModelVersion, ScoringRun  # noqa: E402
from crm_plugin.scoring import services as ml
from crm_plugin.scoring import runs as scoring_runs
from mlcore.dataset import snapshot_rows  # noqa: E402
from mlcore.families.bert.config import BertConfig, load_encoder, load_tokenizer  # noqa: E402
from mlcore.families.bert.family import BertFamily  # noqa: E402
from mlcore.families.bert.model import FusionModel  # noqa: E402
from mlcore.snapshot import customer_snapshot  # noqa: E402
from mlcore.training import train_family  # noqa: E402

AS_OF = datetime(2026, 11, 1, tzinfo=timezone.utc)
# Two encoder measurements further apart than this mean the machine's speed changed during the run.
DRIFT_WARNING = 0.15
PRODUCTS = ["running shoes", "rain jacket", "wool socks", "yoga mat", "water bottle", "hiking boots", "backpack"]
REVIEWS = ["arrived broken, want a refund", "lovely quality, will buy again", "cheap material", "fast delivery"]
TICKETS = ["refund not processed after three weeks", "where is my parcel?", "wrong size delivered"]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_line() -> str:
    return "load %.2f / %.2f / %.2f (1 / 5 / 15 min)" % os.getloadavg()


def cpu_note(step: dict) -> str:
    """", N per CPU-second" where this process did the work: less sensitive to other load than the wall clock."""
    return f"; {step['customers_per_cpu_s']} per CPU-second" if "cpu_s" in step else ""


def report(out: dict, step: str, text: str) -> None:
    """Print one step's figures with the machine's load average now, and keep that load in `out`."""
    out.setdefault("load", {})[step.replace(" ", "_")] = [round(x, 2) for x in os.getloadavg()]
    print(f"[{step}] {text}; {load_line()}", flush=True)


def _gc_timer():
    """A gc callback that adds up the time spent in garbage collection (its .total, seconds)."""
    started = [0.0]

    def callback(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            callback.total += time.perf_counter() - started[0]

    callback.total = 0.0
    gc.callbacks.append(callback)
    return callback


def start_worker(concurrency: int) -> subprocess.Popen:
    """A real `celery worker -Q score -c N` (prefork) on this benchmark's database and broker, answering pings."""
    from config.celery import app

    log = open(Path(tempfile.gettempdir()) / "bench-scoring-worker.log", "w")  # noqa: SIM115 - lives with the worker
    celery_bin = Path(sys.executable).parent / "celery"
    proc = subprocess.Popen([str(celery_bin), "-A", "config", "worker", "-Q", "score", "-c", str(concurrency),
                             "--pool", "prefork", "-l", "warning", "--without-gossip", "--without-mingle",
                             "-n", f"bench-{os.getpid()}@%h"], cwd=ROOT, env=dict(os.environ), stdout=log, stderr=log)
    deadline = time.monotonic() + 90
    while not app.control.ping(timeout=1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"the celery worker did not start; see {log.name}")
    return proc


def worker_peak_mb(proc: subprocess.Popen) -> dict:
    """Peak RSS (VmHWM) of the worker's pool processes: the largest, and their sum (an upper bound at any moment)."""
    import psutil

    peaks = []
    for child in psutil.Process(proc.pid).children():
        for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return {"worker_processes": len(peaks), "max_mb": round(max(peaks, default=0)), "sum_mb": round(sum(peaks))}


def vacuum(tables: list[str]) -> None:
    """VACUUM ANALYZE, as autovacuum would between daily runs (it is off on the reference machine's
    PostgreSQL; left off here, each run's updated rows stay behind as dead rows the next run reads past)."""
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {', '.join(tables)}")


def _copy(table: str, columns: list[str], rows) -> None:
    raw = connection.connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def synthesise(n: int, seed: int, per_customer: tuple[int, int] = (8, 14)) -> None:
    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    _copy(Customer._meta.db_table, ["external_id", "name", "email", "segment", "first_seen_at", "attributes",
                                    "value", "created_at", "updated_at"],
          ((f"b{i}", f"Customer {i}", f"c{i}@example.com", ["vip", "regular", "new"][i % 3], AS_OF - timedelta(days=400), "{}", 0, now, now)
           for i in range(n)))
    ids = [pk for (pk,) in Customer.objects.order_by("pk").values_list("pk")]

    def events():
        k = 0
        for cid in ids:
            m = int(rng.integers(per_customer[0], per_customer[1] + 1))
            days = np.sort(rng.uniform(1, 360, size=m))[::-1]
            for d in days:
                at = AS_OF - timedelta(days=float(d))
                r = rng.random()
                if r < 0.55:
                    row = ("order", float(round(rng.uniform(10, 200), 2)), 1, None, "",
                           json.dumps({"order_id": f"o{k}", "category": PRODUCTS[k % len(PRODUCTS)]}))
                elif r < 0.8:
                    row = ("visit", None, None, None, "", '{"pages": 3, "duration_s": 60}')
                elif r < 0.92:
                    row = ("review", None, None, int(rng.integers(1, 6)), REVIEWS[k % len(REVIEWS)],
                           json.dumps({"product": PRODUCTS[k % len(PRODUCTS)]}))
                else:
                    row = ("ticket", None, None, None, TICKETS[k % len(TICKETS)],
                           json.dumps({"ticket_id": f"t{k}", "status": "open", "closed_at": None}))
                yield (cid, row[0], at, row[1], row[2], row[3], row[4], row[5], f"bench-{k}", now)
                k += 1

    _copy(Event._meta.db_table, ["customer_id", "kind", "occurred_at", "amount", "quantity", "rating", "text",
                                 "attributes", "source_id", "imported_at"], events())


def register_bert(seed: int, max_length: int) -> tuple[ModelVersion, BertConfig]:
    """A bert head fitted briefly on 400 customers (labels: no order in the last 60 days), promoted;
    with the model's config (precision, batch size, threads), as scoring will load it."""
    ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True)[:400])
    events = selectors_ml.events_frame(customer_ids=ids, before=AS_OF)
    snap = customer_snapshot(events, selectors_ml.customers_frame(customer_ids=ids), AS_OF)
    labels = (snap.features["days_since_last_order"].to_numpy() > 60).astype(np.int8)
    rows = snapshot_rows(snap, labels)
    half = np.arange(len(rows)) % 2 == 0
    trained = train_family("bert", rows.take(half), rows.take(~half), max_train_minutes=0.5,
                           bert_model_path=settings.BERT_MODEL_PATH, bert_max_length=max_length)
    version = ml._register(trained, as_of=AS_OF, horizon_days=90)
    # BertFamily.load gives the loaded model device="auto" and use_lora=False (LoRA is merged on save).
    config = dataclasses.replace(trained.model.config, device="auto", use_lora=False)
    return ml.model_version_promote(version=version, by=None), config


def register_family(family: str, seed: int, minutes: float, customers: int = 1000) -> ModelVersion:
    """Any other family, fitted within `minutes` on the first `customers` customers at AS_OF (with event
    tokens, message columns when ML_MESSAGE_EMBEDDINGS is on, the product's behaviour-BERT size),
    registered and promoted. Labels: the fifth of customers longest without an order (the synthetic
    shop has too few churners for `train`'s out-of-time rows); scoring speed does not depend on them."""
    from crm_plugin.scoring.messages import message_features_train
    from mlcore.event_tokens import event_tokens
    from mlcore.snapshot import prepare_events

    ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True)[:customers])
    events = selectors_ml.events_frame(customer_ids=ids, before=AS_OF)
    snap = customer_snapshot(events, selectors_ml.customers_frame(customer_ids=ids), AS_OF)
    days = snap.features["days_since_last_order"].to_numpy()
    labels = (days > np.quantile(days, 0.8)).astype(np.int8)
    rows = dataclasses.replace(snapshot_rows(snap, labels),
                               events=event_tokens(prepare_events(events), snap.customer_ids, AS_OF))
    half = np.arange(len(rows)) % 2 == 0
    train, valid, messages, _ = message_features_train(events=events, train=rows.take(half), valid=rows.take(~half),
                                                       log=print)
    torch.manual_seed(seed)
    trained = train_family(family, train, valid, max_train_minutes=minutes, horizon_days=90,
                           events_config=ml.events_config_from_settings(), messages=messages)
    version = ml._register(trained, as_of=AS_OF, horizon_days=90)
    return ml.model_version_promote(version=version, by=None)


def benchmark_texts(n: int) -> list[str]:
    """The texts scoring builds for the first `n` customers at AS_OF (the same for every --customers, same seed)."""
    ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True)[:n])
    events = selectors_ml.events_frame(customer_ids=ids, before=AS_OF)
    return list(customer_snapshot(events, selectors_ml.customers_frame(customer_ids=ids), AS_OF).texts)


def encoder_rate(config: BertConfig, texts: list[str]) -> dict:
    """Texts/s of the packaged MiniLM through `BertFamily.encode` (scoring's call) with the champion's settings.

    The family is built around the checkpoint at BERT_MODEL_PATH rather than the champion's
    fine-tuned copy, so the figure does not depend on the model under test; the head is not used.
    A first batch runs untimed (one-time kernel set-up), and the family is dropped afterwards.
    """
    family = BertFamily(dataclasses.replace(config, model_path=settings.BERT_MODEL_PATH))
    family.tokenizer = load_tokenizer(family.config.model_path)
    family.model = FusionModel(load_encoder(family.config.model_path), 1, family.config.head_hidden,
                               family.config.dropout).to(family.device).eval()
    family.encode(texts[: family.config.inference_batch_size()])
    t, cpu = time.perf_counter(), time.process_time()
    family.encode(texts)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    tokens = family.tokenizer(texts, truncation=True, max_length=family.config.max_length)["input_ids"]
    result = {"texts": len(texts), "seconds": round(seconds, 2), "texts_per_s": round(len(texts) / seconds, 1),
              "cpu_s": round(cpu, 2), "texts_per_cpu_s": round(len(texts) / cpu, 1),
              "mean_tokens": round(float(np.mean([len(t) for t in tokens])), 1),
              "precision": family.config.resolved_cpu_inference() if family.device.type == "cpu" else "bf16",
              "threads": torch.get_num_threads()}
    del family
    gc.collect()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--changed-share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-length", type=int, default=None,
                        help="token budget of the model (default settings.ML_BERT_MAX_LENGTH, as `train` uses)")
    parser.add_argument("--encoder-texts", type=int, default=1000,
                        help="customers' texts the packaged encoder's own rate is measured on (default 1000)")
    parser.add_argument("--family", default="bert",
                        help="the family scoring runs: bert (default: the packaged MiniLM with a head), or any other "
                             "(e.g. stacked, bert_events, lightgbm), trained briefly on 1,000 customers first")
    parser.add_argument("--fit-minutes", type=float, default=2.0,
                        help="training budget of a --family other than bert (default 2)")
    parser.add_argument("--events", default="8-14", metavar="MIN-MAX",
                        help="events per customer over the year before scoring (default 8-14; the demo shop has "
                             "~39 on average): what the behaviour families' cost follows")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the daily re-run here (pstats format)")
    parser.add_argument("--profile-full", type=Path, help="write a cProfile of the full scoring here (pstats format)")
    parser.add_argument("--workers", type=int, default=0,
                        help="score through a real `celery worker -c N` (needs CELERY_BROKER_URL) instead of in-process")
    args = parser.parse_args()
    if args.workers and settings.CELERY_TASK_ALWAYS_EAGER:
        sys.exit("--workers needs a broker: set CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/14)")
    try:
        low, high = (int(x) for x in args.events.split("-"))
        if not 1 <= low <= high:
            raise ValueError
    except ValueError:
        sys.exit(f"--events must look like 8-14 (at least one event, MIN <= MAX), not {args.events!r}")
    if args.encoder_texts < 100:
        sys.exit("--encoder-texts must be at least 100: fewer give the encoder's rate no better than a guess")
    name = connection.settings_dict["NAME"]
    if connection.vendor != "postgresql" or "bench" not in name:
        sys.exit(f"refusing to wipe {connection.vendor} database {name!r}: point DATABASE_URL at a *bench* PostgreSQL DB")
    import logging

    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    out: dict = {"customers": args.customers, "chunk_size": settings.SCORE_CHUNK_SIZE, "debug": settings.DEBUG,
                 "load_before": [round(x, 2) for x in os.getloadavg()]}
    print(f"[start] {args.customers:,} customers, {os.cpu_count()} cores; {load_line()}", flush=True)
    call_command("migrate", verbosity=0)
    tables = [m._meta.db_table for m in (ChurnScore, EncoderCacheEntry, ScoringRun, ModelVersion, Event, Customer)]
    with connection.cursor() as cursor:  # TRUNCATE, not DELETE: no dead rows left from earlier runs
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")

    t = time.perf_counter()
    synthesise(args.customers, args.seed, (low, high))
    out["events_per_customer"] = [low, high]
    out["synthesise_s"] = round(time.perf_counter() - t, 1)
    vacuum(tables)
    out["events"] = Event.objects.count()
    report(out, "synthesise", f"{args.customers:,} customers, {out['events']:,} events in {out['synthesise_s']} s")
    t = time.perf_counter()
    out["max_length"] = args.max_length or settings.ML_BERT_MAX_LENGTH
    out["family"] = args.family
    if args.family == "bert":
        version, config = register_bert(args.seed, out["max_length"])
    else:  # the yardstick is still the packaged MiniLM, with the precision and threads it would get
        version = register_family(args.family, args.seed, args.fit_minutes)
        config = BertConfig(model_path=settings.BERT_MODEL_PATH, max_length=out["max_length"])
    out["cpu_inference"] = config.resolved_cpu_inference()
    out["fit_and_register_s"] = round(time.perf_counter() - t, 1)
    out["peak_mb_before_scoring"] = round(peak_mb())
    report(out, "fit", f"{args.family} fitted and promoted in {out['fit_and_register_s']} s")
    texts = benchmark_texts(min(args.encoder_texts, args.customers))
    before = encoder_rate(config, texts)
    out["encoder_before"] = before
    out["peak_mb_after_encoder"] = round(peak_mb())
    report(out, "encoder before", f"packaged MiniLM {before['texts_per_s']} texts/s ({before['texts']} texts, "
                                  f"{before['mean_tokens']} tokens on average, {before['precision']}, "
                                  f"{before['threads']} threads; {before['texts_per_cpu_s']} per CPU-second)")
    worker = None
    if args.workers:
        out["workers"] = args.workers
        worker = start_worker(args.workers)

    profiler = None
    if args.profile_full:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t, cpu = time.perf_counter(), time.process_time()
    run = scoring_runs.churn_scores_compute(as_of=AS_OF)
    full, cpu = time.perf_counter() - t, time.process_time() - cpu
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(args.profile_full))
    out["full"] = {"seconds": round(full, 2), "customers_per_s": round(run.n_customers / full, 1),
                   "n_customers": run.n_customers, "n_encoded": run.n_encoded}
    if not args.workers:  # with workers the scoring CPU is theirs, not this process's
        out["full"].update(cpu_s=round(cpu, 1), customers_per_cpu_s=round(run.n_customers / cpu, 1))
    out["peak_mb_after_full"] = round(peak_mb())
    report(out, "full", f"{out['full']['customers_per_s']} customers/s ({run.n_customers:,} in {out['full']['seconds']} s"
                        f"{cpu_note(out['full'])})")
    vacuum(tables)  # a day passes between the runs: autovacuum would have cleaned up after this one

    rng = np.random.default_rng(args.seed + 1)
    ids = np.array(Customer.objects.order_by("pk").values_list("pk", flat=True))
    changed = rng.choice(ids, size=max(1, int(len(ids) * args.changed_share)), replace=False)
    now = datetime.now(timezone.utc)
    _copy(Event._meta.db_table, ["customer_id", "kind", "occurred_at", "amount", "quantity", "rating", "text",
                                 "attributes", "source_id", "imported_at"],
          ((int(c), "order", AS_OF + timedelta(hours=10), 42.0, 1, None, "", '{"category": "backpack"}',
            f"bench-new-{c}", now) for c in changed))
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    gc_seconds = _gc_timer()
    t, cpu = time.perf_counter(), time.process_time()
    run2 = scoring_runs.churn_scores_compute(as_of=AS_OF + timedelta(days=1))
    daily, cpu = time.perf_counter() - t, time.process_time() - cpu
    gc.callbacks.remove(gc_seconds)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(args.profile))
    out["daily_rerun"] = {"seconds": round(daily, 2), "customers_per_s": round(run2.n_customers / daily, 1),
                          "n_customers": run2.n_customers, "n_encoded": run2.n_encoded, "n_changed": len(changed),
                          "gc_seconds": round(gc_seconds.total, 3)}
    if not args.workers:
        out["daily_rerun"].update(cpu_s=round(cpu, 1), customers_per_cpu_s=round(run2.n_customers / cpu, 1))
    out["peak_mb"] = round(peak_mb())
    report(out, "daily re-run", f"{out['daily_rerun']['customers_per_s']} customers/s ({run2.n_customers:,} in "
                                f"{out['daily_rerun']['seconds']} s, {run2.n_encoded:,} encoded"
                                f"{cpu_note(out['daily_rerun'])})")
    if worker is not None:
        out["worker_peak"] = worker_peak_mb(worker)
        worker.terminate()
        worker.wait(timeout=30)

    after = encoder_rate(config, texts)
    out["encoder_after"] = after
    report(out, "encoder after", f"packaged MiniLM {after['texts_per_s']} texts/s ({after['texts_per_cpu_s']} per CPU-second)")
    # The yardstick: scoring rates divided by what the bare encoder managed on this machine in this run.
    yardstick = (before["texts_per_s"] + after["texts_per_s"]) / 2
    out["encoder_texts_per_s"] = round(yardstick, 1)
    for key in ("full", "daily_rerun"):
        out[key]["ratio_to_encoder"] = round(out[key]["customers_per_s"] / yardstick, 3)
    drift = max(before["texts_per_s"], after["texts_per_s"]) / min(before["texts_per_s"], after["texts_per_s"]) - 1
    out["encoder_drift"] = round(drift, 3)
    out["peak_mb_end"] = round(peak_mb())
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out["model"] = version.name
    print(json.dumps(out, indent=1))
    print(f"encoder {before['texts_per_s']} -> {after['texts_per_s']} texts/s (mean {out['encoder_texts_per_s']}); "
          f"full {out['full']['customers_per_s']}/s = {out['full']['ratio_to_encoder']}x the encoder; "
          f"daily re-run {out['daily_rerun']['customers_per_s']}/s = {out['daily_rerun']['ratio_to_encoder']}x; "
          f"peak RSS {out['peak_mb']} MB (scoring), {out['peak_mb_end']} MB (end)", flush=True)
    if drift > DRIFT_WARNING:
        print(f"warning: the encoder ran {drift:.0%} faster at one end of the run than at the other: the machine's "
              "load changed while it ran, so the ratios are only rough; run again when the load is steady", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
