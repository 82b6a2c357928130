"""Continued masked-LM pretraining of the BERT encoder on this shop's customer texts."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from crm_plugin.errors import CrmError
from crm_plugin.scoring.services import events_encoder_pretrain
from mlcore.families.bert import BertCheckpointError
from mlcore.pretrain import PretrainConfig, pretrain_mlm, read_texts


def _shop_texts(as_of: dt.datetime) -> list[str]:
    """Every customer's text as of `as_of` (the ml area's snapshot: only events before as_of)."""
    from crm_plugin.scoring import selectors as selectors_ml
    from mlcore.errors import MlError
    from mlcore.snapshot import snapshot

    events = selectors_ml.events_frame(before=as_of)
    if events.empty:
        raise CommandError(f"no customer events before {as_of:%Y-%m-%d}: nothing to pretrain on")
    try:
        rows = snapshot(events, selectors_ml.customers_frame(), as_of)
    except MlError as exc:
        raise CommandError(str(exc)) from exc
    return list(dict.fromkeys(rows.texts))  # identical texts teach nothing twice


class Command(BaseCommand):
    help = "Continue masked-LM pretraining of the encoder on unlabelled customer texts; writes a new checkpoint."

    def add_arguments(self, parser):
        parser.add_argument("--as-of", help="YYYY-MM-DD: texts from events before this day (default: now)")
        parser.add_argument("--texts", help="read texts from this file instead (JSONL strings/objects with 'text', or one per line)")
        parser.add_argument("--model-path", help="checkpoint to start from (default: settings.BERT_MODEL_PATH)")
        parser.add_argument("--out", help="output folder (default: MODEL_DIR/pretrained/mlm-<as-of>-<time>)")
        parser.add_argument("--max-train-minutes", type=float, help="wall-clock budget for training")
        parser.add_argument("--epochs", type=float, default=1.0)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        parser.add_argument("--events", action="store_true",
                            help="pretrain the behaviour BERT on event tokens instead (masked events, every customer "
                                 "before --as-of); registered as an events_encoder model version")

    def handle(self, *args, **opts):
        if opts["as_of"]:
            try:
                day = dt.date.fromisoformat(opts["as_of"])
            except ValueError:
                raise CommandError(f"--as-of must be YYYY-MM-DD, got {opts['as_of']!r}") from None
            as_of = dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc)
        else:
            as_of = None if opts["events"] else timezone.now()
        if opts["events"]:
            try:
                version = events_encoder_pretrain(as_of=as_of, max_train_minutes=opts["max_train_minutes"],
                                                  stdout=self.stdout)
            except CrmError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(self.style.SUCCESS(f"registered {version.name}; bert_events_pretrained and stacked "
                                                 f"start from it"))
            return
        try:
            texts = read_texts(opts["texts"]) if opts["texts"] else _shop_texts(as_of)
            config = PretrainConfig(
                epochs=opts["epochs"], seed=opts["seed"], max_train_minutes=opts["max_train_minutes"],
                progress_bar=not opts["no_progress"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        model_path = opts["model_path"] or settings.BERT_MODEL_PATH
        stamp = f"mlm-{as_of:%Y%m%d}-{timezone.now():%H%M%S}"
        out = Path(opts["out"]) if opts["out"] else Path(settings.MODEL_DIR) / "pretrained" / stamp
        self.stdout.write(f"Pretraining {model_path} on {len(texts)} texts -> {out}")
        try:
            report = pretrain_mlm(texts, model_path=model_path, out_dir=out, config=config)
        except (BertCheckpointError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if report.mlm_head_initialised_fresh:
            self.stdout.write("Note: the source checkpoint had no masked-LM head; a fresh one was trained.")
        budget = " (stopped at the time budget)" if report.hit_time_budget else ""
        self.stdout.write(
            f"Held-out masked-LM loss {report.eval_loss_before:.3f} -> {report.eval_loss_after:.3f} "
            f"after {report.steps} steps, {report.epochs_run:.2f} epochs, {report.train_seconds:.0f}s{budget}."
        )
        self.stdout.write(self.style.SUCCESS(f"Checkpoint written to {out}; fine-tune from it with BERT_MODEL_PATH={out}"))
