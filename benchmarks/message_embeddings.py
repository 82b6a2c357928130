"""Backtest each family with and without the message-embedding columns, paired on the same customers.

`manage.py backtest` compares families within one run; this runs `mlcore.backtest.run_backtest`
twice per date (message columns on, then off) and prints, per family, the mean PR-AUC with and
without them and the difference with its 95% paired bootstrap interval (`compare.paired_bootstrap`),
on active customers and on the whole book. Reads the shop in DATABASE_URL; writes only the
message-vector cache (MessageEmbedding), never a model or a BacktestRun.

    DATABASE_URL=sqlite:////tmp/shop.sqlite3 .venv/bin/python benchmarks/message_embeddings.py \\
        [--dates 3] [--step-days 30] [--horizon-days 90] [--families logreg,lightgbm] [--bootstrap 1000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dates", type=int, default=3)
    parser.add_argument("--step-days", type=int, default=30)
    parser.add_argument("--horizon-days", type=int, default=90)
    parser.add_argument("--families", default="logreg,lightgbm")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()

    import django

    django.setup()
    import numpy as np

    from crm_plugin.scoring import selectors
    from crm_plugin.scoring.messages import message_embedder
    from mlcore.backtest import backtest_dates, check_families, latest_as_of, run_backtest
    from mlcore.compare import paired_bootstrap

    families = check_families(args.families.split(","))
    events, customers = selectors.events_frame(), selectors.customers_frame()
    interventions, alerts = selectors.interventions_frame(), selectors.alerts_frame()
    embedder = message_embedder()
    samples: dict[str, dict[str, list]] = {f: {"active": [], "all": []} for f in families}
    seconds = {"with": 0.0, "without": 0.0}
    for date in backtest_dates(latest_as_of(events, args.horizon_days), args.dates, args.step_days):
        scores = {}
        for side, chosen in (("with", embedder), ("without", None)):
            started = time.perf_counter()
            run = run_backtest(events, customers, as_of=date, horizon_days=args.horizon_days, families=families,
                               interventions=interventions, alerts=alerts, keep_scores=True, message_embedder=chosen)
            seconds[side] += time.perf_counter() - started
            scores[side] = run["_scores"]
        on, off = scores["with"], scores["without"]
        assert np.array_equal(on["y"], off["y"]), "the two runs scored different customers"
        for name in families:
            for side in ("active", "all"):
                mask = on["active"] if side == "active" else np.ones(len(on["y"]), bool)
                samples[name][side].append((on["y"][mask], on["p"][name][mask], off["p"][name][mask], on["w"][mask]))
        print(f"{date:%Y-%m-%d}: {len(on['y'])} customers, {int(on['active'].sum())} active", flush=True)
    print(f"{args.dates} dates, horizon {args.horizon_days} days; PR-AUC with - without message columns, 95% paired "
          f"bootstrap interval ({args.bootstrap} resamples); {embedder.n_encoded} texts encoded in this run; "
          f"backtests {seconds['with']:.0f} s with, {seconds['without']:.0f} s without")
    for name in families:
        for side in ("active", "all"):
            r = paired_bootstrap(samples[name][side], n_boot=args.bootstrap, seed=0)
            print(f"  {name:<24}{side:<8}with {r.mean_a:.4f}  without {r.mean_b:.4f}  "
                  f"difference {r.diff:+.4f} [{r.low:+.4f} .. {r.high:+.4f}]")


if __name__ == "__main__":
    main()
