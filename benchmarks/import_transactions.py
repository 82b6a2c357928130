"""Benchmark: import a generated `transactions` CSV into PostgreSQL; report rows/s and peak memory.

    .venv/bin/python benchmarks/import_transactions.py [--rows 1000000] [--customers 50000]

Uses its own database (`churn_bench_import` on the server of DATABASE_URL, default the local
PostgreSQL), created fresh and dropped afterwards, so it never touches real data. Peak memory is
the process's resident high-water mark (getrusage ru_maxrss), measured around the import only
after Django and the file are ready; the generated file is streamed, never held in memory.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_DB = "churn_bench_import"


def write_csv(path: Path, rows: int, customers: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w") as out:
        out.write("customer_id,timestamp,amount,quantity\n")
        for _ in range(rows):
            day = rng.randrange(0, 730)
            year, rest = divmod(day, 365)
            month, dom = divmod(rest, 31)
            out.write(f"C{rng.randrange(customers):07d},{2024 + year}{min(month, 11) + 1:02d}{min(dom, 27) + 1:02d},"
                      f"{rng.randrange(100, 50000) / 100:.2f},{rng.randrange(1, 5)}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    parsed = urlparse(base)
    if parsed.scheme not in ("postgres", "postgresql"):
        sys.exit("This benchmark measures PostgreSQL: set DATABASE_URL=postgres://... (a server, not a database to use).")
    import psycopg

    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    os.environ["DATABASE_URL"] = parsed._replace(path=f"/{BENCH_DB}").geturl()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from crm_plugin.events.importing import events_import_file

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "transactions.csv"
            t0 = time.perf_counter()
            write_csv(path, args.rows, args.customers, args.seed)
            print(f"generated {args.rows:,} rows ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
            load_before = os.getloadavg()[0]
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            t0 = time.perf_counter()
            summary = events_import_file(path=path, fmt="transactions")
            first = time.perf_counter() - t0
            rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            t0 = time.perf_counter()
            again = events_import_file(path=path, fmt="transactions")
            second = time.perf_counter() - t0
        print(summary)
        print(f"first import : {args.rows / first:,.0f} rows/s ({first:.1f} s)")
        print(f"re-import    : {args.rows / second:,.0f} rows/s ({second:.1f} s), {again.added} added")
        print(f"peak RSS     : {rss_peak:,.0f} MB (getrusage ru_maxrss of this process; before the import: "
              f"{rss_before:,.0f} MB)")
        # The machine may be shared: a busy one slows PostgreSQL more than the parsing.
        print(f"load average : {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")


if __name__ == "__main__":
    main()
