"""How many threads torch runs in this process: its share of the cores, one rule for every model.

A Celery worker with N pool processes gives each cores / N (config/celery.py sets
$ML_TORCH_THREADS before the pool starts). Every place that runs torch (the text BERT, the
message encoder, the behaviour BERT and the stacked family's encoders, pretraining) calls
`use_torch_threads` first: two processes scoring chunks side by side with a thread per core each
were slower together than one process alone.
"""
from __future__ import annotations

import os

THREADS_ENV = "ML_TORCH_THREADS"


def process_threads() -> int:
    """Threads torch may use in this process: $ML_TORCH_THREADS when set above 0, else every core it may use."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        try:
            wanted = int(value)
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be a whole number, got {value!r}") from None
        if wanted > 0:
            return wanted
    return len(os.sched_getaffinity(0))


def use_torch_threads(num_threads: int | None = None) -> None:
    """Run torch with `num_threads` (a model config's explicit count), else the process's share."""
    import torch

    wanted = num_threads or process_threads()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
