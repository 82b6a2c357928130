"""Benchmark: one day's scoring spread by Celery over 1, then 2 separate `score` worker processes.

Each worker is started as another machine would start it: its own process and environment
(nothing inherited from this one but PATH; its own HOME and TMPDIR), sharing only PostgreSQL,
the Redis broker and the model storage (MODEL_DIR). This process only opens the run and waits
for the chord, as `run_daily` does. Uses the shop template of `benchmarks/daily_cycle.py` (build it
first with the same --customers and --family), cloned afresh for every measurement.

    CELERY_BROKER_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python benchmarks/score_workers.py --customers 10000 --family lightgbm --chunk-size 500

Prints the seconds per worker count and the speed-up against one worker. On a shared 2-core
machine two workers compete for the same cores: the ratio then measures the machine, not the
design. Run it where each worker has cores of its own, or give each worker its own core here with
`--pin`: worker i runs on core i only (as if each were a one-core machine), so one worker has one
core and two workers have two; this process, PostgreSQL and Redis still share them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.daily_cycle import DEFAULT_URL, _template_state, clone  # noqa: E402


def start_worker(index: int, *, database_url: str, broker_url: str, model_dir: str, pin: bool = False) -> subprocess.Popen:
    home = tempfile.mkdtemp(prefix=f"score-worker-{index}-")
    env = {"PATH": os.environ["PATH"], "HOME": home, "TMPDIR": home, "DJANGO_SETTINGS_MODULE": "config.settings",
           "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url, "MODEL_DIR": model_dir, "DEBUG": "false"}
    log = open(Path(home) / "worker.log", "w")  # noqa: SIM115 - lives with the worker
    return subprocess.Popen([str(Path(sys.executable).parent / "celery"), "-A", "config", "worker", "-Q", "score",
                             "-c", "1", "--pool", "prefork", "-l", "warning", "--without-gossip", "--without-mingle",
                             "-n", f"score{index}-{os.getpid()}@%h"], cwd=ROOT, env=env, stdout=log, stderr=log,
                            preexec_fn=(lambda: os.sched_setaffinity(0, {index % os.cpu_count()})) if pin else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--family", default="lightgbm")
    parser.add_argument("--chunk-size", type=int, default=500, help="small enough that every worker gets many chunks")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--pin", action="store_true", help="worker i on core i only (one core per worker)")
    args = parser.parse_args()
    broker = os.environ.get("CELERY_BROKER_URL")
    if not broker:
        sys.exit("needs CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/13)")
    template = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    state = _template_state(template)
    if not state or state.get("customers") != args.customers or state.get("family") != args.family:
        sys.exit(f"build the template first: benchmarks/daily_cycle.py --customers {args.customers} --family {args.family}")
    day_url = urlparse(template)._replace(path=urlparse(template).path + "_day").geturl()
    clone(template, day_url)
    os.environ.update({"DATABASE_URL": day_url, "DEBUG": "false", "DJANGO_SETTINGS_MODULE": "config.settings"})
    import django

    django.setup()
    from datetime import datetime, timedelta

    from django.conf import settings
    from django.db import connection

    from config.celery import app
    from crm_plugin.scoring import runs as scoring_runs

    today = datetime.fromisoformat(state["as_of"]) + timedelta(days=1)
    results = {}
    for n in [int(x) for x in args.workers.split(",")]:
        connection.close()
        clone(template, day_url)  # the same starting point for every worker count
        workers = [start_worker(i, database_url=day_url, broker_url=broker, model_dir=str(settings.MODEL_DIR),
                                pin=args.pin) for i in range(n)]
        try:
            deadline = time.monotonic() + 120
            while len(app.control.ping(timeout=1.0) or []) < n:
                if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    sys.exit("the workers did not start; see their worker.log under $TMPDIR/score-worker-*")
            load = os.getloadavg()[0]
            started = time.perf_counter()
            run = scoring_runs.churn_scores_compute(as_of=today, chunk_size=args.chunk_size)
            seconds = time.perf_counter() - started
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(timeout=60)
        results[n] = {"seconds": round(seconds, 2), "customers_per_s": round(run.n_customers / seconds, 1),
                      "status": run.status, "load_1m": round(load, 2)}
        print(f"{n} worker(s): {seconds:.2f} s, {run.n_customers / seconds:,.0f} customers/s, run {run.status}, "
              f"load {load:.1f}", flush=True)
    if 1 in results:
        for n, r in results.items():
            r["speed_up"] = round(results[1]["seconds"] / r["seconds"], 2)
    print(json.dumps({"customers": args.customers, "family": args.family, "chunk_size": args.chunk_size,
                      "cpus": os.cpu_count(), "pinned": args.pin, "results": results}, indent=1))


if __name__ == "__main__":
    main()
