"""Model registry and scoring services: train, register, promote, load verified artifacts, score in chunks."""
from __future__ import annotations

import gc
import json
import logging
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connection, reset_queries, transaction
from django.db.models import DateTimeField, F, FloatField, OuterRef, Subquery
from django.db.models.functions import Cast
from django.utils import timezone

from crm_plugin.scoring import selectors as selectors_ml
from crm_plugin.scoring.messages import message_features_score, message_features_train, message_rows_for
from crm_plugin.errors import CrmError
from crm_plugin.lookups import pg_array
from crm_plugin.models import ChurnScore, Customer, EncoderCacheEntry, ModelVersion, ScoringRun
from mlcore import dataset, registry
from mlcore.compare import active_mask, choose_champion
from mlcore.errors import MlError
from mlcore.lifecycle import lifecycle_stages
from mlcore.messages import uses_messages
from mlcore.scoring import band_of, is_text_model, score_rows
from mlcore.event_tokens import event_tokens
from mlcore.snapshot import as_if_untreated, customer_snapshot, prepare_customers, prepare_events, rows_for_features
from mlcore.training import DEFAULT_FAMILIES, TrainedModel, reads_texts, train_family

logger = logging.getLogger(__name__)
_LOADED: dict[tuple[int, str], TrainedModel] = {}  # per process: a worker loads a version once, not once per chunk
_VERIFIED_FOR_RUN: dict[tuple[int, str], int] = {}  # per process: the scoring run whose chunks skip re-verification


def as_of_aware(value: datetime | None) -> datetime:
    value = value or timezone.now()
    return value if timezone.is_aware(value) else timezone.make_aware(value, timezone.utc)


def _storage():
    return storages["models"]


# --- artifacts ---------------------------------------------------------------------------

def _upload(folder: Path, prefix: str, manifest: dict) -> None:
    storage = _storage()
    for name in [*manifest["files"], registry.MANIFEST]:
        path = f"{prefix}/{name}"
        if storage.exists(path):
            storage.delete(path)
        with open(folder / name, "rb") as handle:
            saved = storage.save(path, ContentFile(handle.read()))
        if saved != path:  # the storage renamed it: the manifest would not match what loads
            raise CrmError(f"model storage stored {path} as {saved}")


def _download(version: ModelVersion) -> Path:
    """A local copy of the version's artifact files, fetched through the `models` storage."""
    manifest = version.manifest or {}
    # A fresh private folder per call: prefork workers on one machine never read each other's half-copies.
    local = Path(tempfile.mkdtemp(prefix=f"churn-model-{version.pk}-"))
    storage = _storage()
    for name in (manifest.get("files") or {}):
        target = local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with storage.open(f"{version.artifact_path}/{name}", "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except OSError as exc:
            shutil.rmtree(local, ignore_errors=True)
            raise CrmError(f"model {version.name}: artifact file {name!r} is missing or unreadable ({exc})") from exc
    return local


def model_version_load(*, version: ModelVersion, run_id: int | None = None) -> TrainedModel:
    """The version's trained model, after every file passed its sha256 check (CrmError otherwise).

    The stored files are re-read and re-verified on every call, so a file changed after a worker
    loaded the model is still refused; only parsing is cached. With `run_id` (a scoring chunk) the
    check is done once per scoring run in each process: the run's first chunk here verifies, its
    later chunks reuse that (copying and hashing the encoder's 90 MB took 0.1 s, a sixth of a
    daily re-run's chunk); the next run verifies again.
    """
    key = (version.pk, json.dumps(version.manifest, sort_keys=True))
    if run_id is not None and key in _LOADED and _VERIFIED_FOR_RUN.get(key) == run_id:
        return _LOADED[key]
    local = _download(version)
    try:
        registry.verify(local, version.manifest)
        if run_id is not None:
            _VERIFIED_FOR_RUN.clear()
            _VERIFIED_FOR_RUN[key] = run_id
        if key in _LOADED:
            return _LOADED[key]
        trained = registry.load_trained(local, version.manifest)  # families read everything into memory
    except MlError as exc:
        raise CrmError(f"model {version.name} refused: {exc}") from exc
    finally:
        shutil.rmtree(local, ignore_errors=True)
    gc.unfreeze()  # the previous model's objects (below) become collectable again
    _LOADED.clear()  # keep one model in memory per process
    _LOADED[key] = trained
    # The model and the libraries behind it are hundreds of thousands of long-lived objects, and every
    # full collection walked them all: 0.23 s of a 1.3 s daily re-run chunk. Frozen, collections skip them.
    gc.collect()
    gc.freeze()
    return trained


def _register(trained: TrainedModel, *, as_of: datetime, horizon_days: int) -> ModelVersion:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S-%f")
    name = f"{trained.family}-{stamp}"
    with tempfile.TemporaryDirectory(prefix="churn-artifact-") as tmp:
        folder = Path(tmp) / name
        manifest = registry.save_trained(trained, folder)
        _upload(folder, name, manifest)
    report = trained.fit_report
    params = json.loads(json.dumps(trained.params, default=str))
    params["fit_report"] = {"train_seconds": report.train_seconds, "n_train": report.n_train,
                            "n_valid": report.n_valid, "hit_time_budget": report.hit_time_budget,
                            "stopped_early": report.stopped_early, "epochs_run": report.epochs_run}
    return ModelVersion.objects.create(
        name=name, family=trained.family, artifact_path=name, manifest=manifest, trained_as_of=as_of,
        horizon_days=horizon_days, params=params, metrics=_json_safe(trained.valid_metrics),
    )


def _json_safe(data: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in data.items()}


def as_of_check(as_of: datetime) -> None:
    first, last = selectors_ml.event_time_range()
    if first is None:
        raise CrmError("no events yet: import events (manage.py import_events) or generate the demo shop first")
    if as_of <= first:
        raise CrmError(f"as_of {as_of:%Y-%m-%d} is outside the data: events run from {first:%Y-%m-%d} "
                       f"to {last:%Y-%m-%d}")


# --- champion ------------------------------------------------------------------------------

def champion_get() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_champion=True).first()


@transaction.atomic
def model_version_promote(*, version: ModelVersion | int, by=None) -> ModelVersion:
    """Make `version` the champion (its artifact must pass its checksum); the old champion steps down."""
    if not isinstance(version, ModelVersion):
        version = ModelVersion.objects.filter(pk=version).first()
        if version is None:
            raise CrmError("no such model version")
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if version.family == EVENTS_ENCODER_FAMILY:
        raise CrmError(f"{version.name} is a pretrained behaviour encoder, not a churn model: it cannot be champion")
    model_version_load(version=version)  # refuse a version whose files fail their checksum
    ModelVersion.objects.filter(is_champion=True).exclude(pk=version.pk).update(is_champion=False)
    version.is_champion = True
    version.promoted_at = timezone.now()
    version.promoted_by = by if getattr(by, "pk", None) else None
    version.save(update_fields=["is_champion", "promoted_at", "promoted_by"])
    return version


def _out(stdout, message: str) -> None:
    if stdout is not None:
        stdout.write(message + "\n")
    else:
        logger.info(message)


CHAMPION_KEY = "current champion"
# Families that start from the latest registered masked-event pretraining (events_encoder_pretrain).
PRETRAINED_EVENT_FAMILIES = ("bert_events_pretrained", "stacked")


def model_train_all(
    *,
    as_of: datetime | None = None,
    families: tuple[str, ...] | list[str] | None = None,
    horizon_days: int | None = None,
    max_train_minutes: float | None = None,
    progress_bar: bool = False,
    tiny_bert: bool = False,
    stdout=None,
) -> list[ModelVersion]:
    """Train every family on everything known at `as_of`, register each, promote one only if it is clearly better.

    The champion is re-evaluated on the same validation rows as the new versions (the
    calibration slice, active customers, evaluation weights), so the comparison is like for
    like; a challenger wins only when its paired bootstrap interval lies above the champion
    (mlcore.compare.choose_champion; a close call keeps the champion). Without a champion the
    reference is lightgbm. A champion whose files fail their checksum loses.
    """
    as_of = as_of_aware(as_of)
    horizon_days = horizon_days or settings.CHURN_HORIZON_DAYS
    families = tuple(families or DEFAULT_FAMILIES)
    as_of_check(as_of)
    # Customer texts only when a text family is trained or the champion that must defend reads them.
    champion = champion_get()
    texts = reads_texts(families + ((champion.family,) if champion is not None else ()))
    try:
        events = selectors_ml.events_frame(before=as_of)
        # Treatment is data: alerts and actions before each cutoff become columns; the validation
        # rows carry evaluation weights (untreated rows only, docs/closed-loop.md section 5).
        train, valid = dataset.training_rows(
            events, selectors_ml.customers_frame(), as_of=as_of, horizon_days=horizon_days,
            interventions=selectors_ml.interventions_frame(), alerts=selectors_ml.alerts_frame(), texts=texts)
    except MlError as exc:
        raise CrmError(str(exc)) from exc
    # The customers' own words as msg_* columns for every family (none when off or without text).
    train, valid, messages, message_events = message_features_train(events=events, train=train, valid=valid,
                                                                     log=lambda line: _out(stdout, line))
    del events
    _out(stdout, f"training rows: {len(train)} from {len(np.unique(train.as_of))} cutoffs; validation: {len(valid)} "
                 f"customers at {pd.Timestamp(valid.as_of[0]):%Y-%m-%d} ({valid.labels.mean():.1%} churned)")
    events_config = events_config_from_settings(tiny=tiny_bert)
    encoder_dir = None
    if any(f in PRETRAINED_EVENT_FAMILIES for f in families):
        encoder_version, encoder_dir = events_encoder_local(as_of=as_of)  # the registered pretraining, if any
        if encoder_dir is not None:
            events_config.update(pretrained_path=str(encoder_dir), pretrained_name=encoder_version.name)
            _out(stdout, f"behaviour BERT starts from the pretrained encoder {encoder_version.name}")
    created: list[ModelVersion] = []
    scored: dict[str, np.ndarray] = {}  # family -> calibrated scores on the calibration slice of validation
    calib = None
    for family in families:
        started = time.perf_counter()
        try:
            trained = train_family(family, train, valid, max_train_minutes=max_train_minutes,
                                   bert_model_path=settings.BERT_MODEL_PATH,
                                   bert_max_length=settings.ML_BERT_MAX_LENGTH, tiny=tiny_bert,
                                   progress=(lambda _: None) if progress_bar else None, horizon_days=horizon_days,
                                   events_config=events_config, messages=messages)
        except MlError as exc:
            raise CrmError(str(exc)) from exc
        version = _register(trained, as_of=as_of, horizon_days=horizon_days)
        created.append(version)
        calib, scored[family] = trained.valid_rows, trained.valid_predictions
        budget = f", budget {max_train_minutes} min" if family.startswith("bert") and max_train_minutes else ""
        active_pr = trained.valid_metrics.get("active_pr_auc")
        _out(stdout, f"{version.name}: validation PR-AUC {trained.valid_metrics['pr_auc']:.3f} (active customers "
                     f"{'-' if active_pr is None else f'{active_pr:.3f}'}), ROC-AUC "
                     f"{trained.valid_metrics['roc_auc']:.3f} ({time.perf_counter() - started:.0f}s{budget})")
    if encoder_dir is not None:
        shutil.rmtree(encoder_dir, ignore_errors=True)
    by_family = {v.family: v for v in created}
    incumbent = None
    if champion is not None:
        try:
            old = model_version_load(version=champion)
            # Judged like the new versions (training.calibrate_on_validation): as if untreated, on
            # the same calibration rows and evaluation weights; a champion saved with fewer
            # features reads just its own; one with message columns gets them from its own featurizer.
            old_calib = message_rows_for(featurizer=old.messages if uses_messages(old.feature_names) else None,
                                         rows=calib, table=message_events)
            old_rows = as_if_untreated(rows_for_features(old_calib, old.feature_names))
            scored[CHAMPION_KEY] = old.predict_proba(old_rows)
            incumbent = CHAMPION_KEY
        except (CrmError, MlError) as exc:
            _out(stdout, f"current champion {champion.name} cannot be evaluated ({exc}); it will be replaced")
    # The champion rule: active customers' validation PR-AUC; a challenger wins only when the
    # lower end of its 95% paired bootstrap interval against the incumbent is above 0.
    active = active_mask(calib, horizon_days)
    weight = None if calib.sample_weight is None else np.asarray(calib.sample_weight)[active]
    decision = choose_champion(calib.labels[active], {k: v[active] for k, v in scored.items()}, weight,
                               incumbent=incumbent)
    for name, d in decision.comparisons.items():
        if name in by_family:
            _out(stdout, f"  {name} vs {champion.name if decision.reference == CHAMPION_KEY else decision.reference}: "
                         f"active PR-AUC {d['diff']:+.4f} [{d['low']:+.4f} .. {d['high']:+.4f}]")
    if decision.winner == CHAMPION_KEY:
        _out(stdout, f"champion stays {champion.name}: no new version's active-customer PR-AUC interval lies above it "
                     f"on the same validation rows")
    else:
        best = by_family[decision.winner]
        model_version_promote(version=best, by=None)
        was = "" if champion is None else f" (replacing {champion.name})"
        _out(stdout, f"champion: {best.name}{was}: {decision.text.replace(CHAMPION_KEY, 'the champion')}")
    return created


def model_train_scheduled(*, families: list[str], max_train_minutes: float, stdout=None) -> list[ModelVersion]:
    """The weekly retraining: a fresh masked-event pretraining first when a family starts from it
    (bert_events_pretrained, stacked), so they fine-tune on this week's behaviour; then every family."""
    if any(f in PRETRAINED_EVENT_FAMILIES for f in families):
        events_encoder_pretrain(stdout=stdout)
    return model_train_all(families=families, max_train_minutes=max_train_minutes, stdout=stdout)


# --- the behaviour BERT's pretrained encoder ------------------------------------------------

EVENTS_ENCODER_FAMILY = "events_encoder"


def events_config_from_settings(*, tiny: bool = False) -> dict:
    """BehaviourConfig overrides from settings (tiny: the test-sized model)."""
    if tiny:
        from mlcore.training import TINY_EVENTS
        return dict(TINY_EVENTS)
    return {"layers": settings.ML_EVENTS_LAYERS, "hidden": settings.ML_EVENTS_HIDDEN,
            "heads": settings.ML_EVENTS_HEADS, "max_events": settings.ML_EVENTS_MAX_EVENTS}


def events_encoder_pretrain(*, as_of: datetime | None = None, max_train_minutes: float | None = None,
                            tiny: bool = False, stdout=None) -> ModelVersion:
    """Masked-event pretraining on every customer's history before `as_of`; registered as a version.

    Unlabelled, so every customer with an event counts. The artifact (encoder weights + report,
    sha256 manifest) is stored like any model version, under family `events_encoder`; it never
    scores and is never champion. Training bert_events_pretrained and stacked starts from the
    latest one trained at or before their as_of.
    """
    # torch and transformers load only where pretraining runs (a train worker), not in every web process
    from mlcore.families.event_pretrain import EventPretrainConfig, pretrain_events

    as_of = as_of_aware(as_of or last_event_day())
    as_of_check(as_of)
    events = prepare_events(selectors_ml.events_frame(before=as_of))
    ids = np.unique(events["customer_id"].to_numpy())
    config = events_config_from_settings(tiny=tiny)
    arch = {k: config[k] for k in ("layers", "hidden", "heads", "max_events")}
    sequences = event_tokens(events, ids, as_of, max_events=arch["max_events"])
    del events
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S-%f")
    name = f"{EVENTS_ENCODER_FAMILY}-{stamp}"
    minutes = max_train_minutes or settings.ML_EVENTS_PRETRAIN_MAX_TRAIN_MINUTES
    with tempfile.TemporaryDirectory(prefix="churn-encoder-") as tmp:
        folder = Path(tmp) / name
        try:
            report, _ = pretrain_events(sequences, out_dir=folder,
                                        config=EventPretrainConfig(max_train_minutes=minutes, **arch))
        except ValueError as exc:
            raise CrmError(f"cannot pretrain the behaviour encoder: {exc}") from exc
        manifest = registry.write_manifest(folder)
        _upload(folder, name, manifest)
    _out(stdout, f"{name}: {report.n_sequences} customers, {report.steps} steps ({report.epochs} epochs) in "
                 f"{report.train_seconds:.0f}s; held-out masked-event loss {report.eval_loss_before:.3f} -> "
                 f"{report.eval_loss_after:.3f} (field frequencies alone: {report.eval_loss_unigram:.3f})")
    return ModelVersion.objects.create(
        name=name, family=EVENTS_ENCODER_FAMILY, artifact_path=name, manifest=manifest, trained_as_of=as_of,
        horizon_days=settings.CHURN_HORIZON_DAYS, params={"arch": arch, "max_train_minutes": minutes},
        metrics=_json_safe(report.to_dict()))


def events_encoder_local(*, as_of: datetime) -> tuple[ModelVersion | None, Path | None]:
    """The latest pretrained encoder trained at or before `as_of` and a verified local copy (None, None if none)."""
    version = (ModelVersion.objects.filter(family=EVENTS_ENCODER_FAMILY, trained_as_of__lte=as_of)
               .order_by("-trained_as_of", "-created_at").first())
    if version is None:
        return None, None
    local = _download(version)
    try:
        registry.verify(local, version.manifest)
    except MlError as exc:
        shutil.rmtree(local, ignore_errors=True)
        raise CrmError(f"pretrained encoder {version.name} refused: {exc}") from exc
    return version, local


# --- scoring (runs are opened and enqueued by services/scoring_runs.py) ----------------------

def _cached_embeddings(version: ModelVersion, customer_ids: list[int]) -> dict[int, tuple[str, np.ndarray]]:
    rows = EncoderCacheEntry.objects.filter(model_version=version, customer_id__any_of=customer_ids).values_list(
        "customer_id", "text_key", "embedding")
    return {cid: (key, np.frombuffer(bytes(blob), dtype=np.float32)) for cid, key, blob in rows}


def _carry_text_reasons(version: ModelVersion, as_of: datetime, ids: list[int], scored) -> None:
    """Customers whose text was not re-encoded keep the text reasons of their latest score (same version).

    Call before this run's scores become the customers' latest. Reads one score per customer (the
    latest, up to as_of), not their whole history: that grew by a row per customer every day.
    """
    if not scored.text_keys:
        return
    reused = [cid for cid in ids if cid not in scored.new_embeddings]
    if not reused:
        return
    previous = dict(Customer.objects.filter(pk__any_of=reused, latest_score__model_version=version,
                                            latest_score__as_of__lte=as_of)
                    .values_list("pk", "latest_score__reasons"))
    position = {cid: i for i, cid in enumerate(ids)}
    for cid, reasons in previous.items():
        text_reasons = [r for r in reasons or [] if "segment" in (r.get("evidence") or {})]
        if not text_reasons:
            continue
        mine = scored.reasons[position[cid]]
        codes = {r["code"] for r in mine}
        merged = mine + [r for r in text_reasons if r["code"] not in codes]
        scored.reasons[position[cid]] = sorted(merged, key=lambda r: -r["weight"])[:5]


def churn_scores_compute_chunk(*, run_id: int, customer_ids: list[int]) -> dict:
    """Score one chunk of customers for a ScoringRun; idempotent (a retry overwrites the same rows)."""
    # With DEBUG on (the local default) Django keeps every query with its parameters; a chunk's
    # writes carry 2,000 customers' reasons, so a long run in one process would pile them up.
    reset_queries()
    run = ScoringRun.objects.select_related("model_version").get(pk=run_id)
    if run.status != ScoringRun.Status.RUNNING:  # marked failed (stale) meanwhile: its day starts afresh
        return {"n_customers": 0, "n_encoded": 0}
    version = run.model_version
    trained = model_version_load(version=version, run_id=run.pk)
    as_of = run.as_of
    events = selectors_ml.events_frame(customer_ids=customer_ids, before=as_of)
    customers = selectors_ml.customers_frame(customer_ids=customer_ids)
    interventions = selectors_ml.interventions_frame(customer_ids=customer_ids)
    alerts = selectors_ml.alerts_frame(customer_ids=customer_ids)
    # Text families: texts are built only for customers whose text key differs from the cached one;
    # other families read no text, so none is built.
    cached = _cached_embeddings(version, customer_ids) if is_text_model(trained.model) else None
    # Prepared once: the snapshot and the event tokens read the same frame.
    prepared = prepare_events(events)
    snap = customer_snapshot(prepared, prepare_customers(customers), as_of, interventions=interventions,
                             alerts=alerts, prepared=True,
                             known_text_keys=None if cached is None else {cid: key for cid, (key, _) in cached.items()},
                             texts=cached is not None)
    # Families over event tokens (the behaviour BERT, the stacked family) read the sequences too.
    tokens = (event_tokens(prepared, snap.customer_ids, as_of)
              if getattr(trained.model, "needs_events", False) else None)
    del prepared
    order_events = events.loc[events["kind"] == "order", ["customer_id", "kind", "occurred_at"]]
    # The score answers "churn if we do nothing": treatment columns set to no action (the snapshot's
    # evidence keeps the real latest action for the reasons). A champion trained before columns
    # were added reads its own feature list; one needing a column we no longer compute is refused.
    rows, evidence = as_if_untreated(replace(dataset.snapshot_rows(snap), events=tokens)), snap.evidence
    if trained.messages is not None and uses_messages(trained.feature_names):
        # Its message columns, from vectors cached by content: only messages new to this encoder are encoded.
        rows, evidence, _ = message_features_score(featurizer=trained.messages, events=events, rows=rows,
                                                   as_of=as_of, evidence=evidence)
    del events
    try:
        rows = rows_for_features(rows, trained.feature_names)
    except MlError as exc:
        raise CrmError(f"model {version.name} cannot score: {exc}") from exc
    ids = [int(c) for c in snap.customer_ids]
    scored = score_rows(trained, rows, evidence=evidence, as_of=snap.as_of, cached=cached,
                        text_keys=snap.text_keys if cached is not None else None,
                        occlusion_threshold=settings.CHURN_BAND_HIGH)
    _carry_text_reasons(version, as_of, ids, scored)
    stages = lifecycle_stages(
        events=order_events, customer_ids=ids, as_of=as_of, lapse_days=_lapse_days(),
        first_seen=dict(zip(customers["customer_id"], customers["first_seen_at"])),
        probabilities=scored.probabilities, medium=settings.CHURN_BAND_MEDIUM,
    )
    del order_events
    now = timezone.now()
    spend = snap.features["spend_365"].to_numpy(dtype=np.float64)
    with transaction.atomic():
        _jit_off_for_this_transaction()
        score_ids = _churn_scores_upsert(ids, scored.probabilities, scored.reasons, version=version, as_of=as_of,
                                         now=now)
        if scored.new_embeddings:
            EncoderCacheEntry.objects.bulk_create(
                [EncoderCacheEntry(model_version=version, customer_id=cid, text_key=key,
                                   embedding=np.asarray(vec, dtype=np.float32).tobytes(), updated_at=now)
                 for cid, (key, vec) in scored.new_embeddings.items()],
                update_conflicts=True, unique_fields=["model_version", "customer"],
                update_fields=["text_key", "embedding", "updated_at"], batch_size=1000,
            )
        _customers_point_at_scores(ids, spend, scored.probabilities, score_ids, stages, as_of=as_of)
        scoring_run_lease_renew(run_id=run.pk)
    return {"n_customers": len(ids), "n_encoded": scored.n_encoded}


def _jit_off_for_this_transaction() -> None:
    """PostgreSQL: no JIT compilation for the rest of this transaction (SET LOCAL, so a pooled connection
    is left as it was). The chunk's UPDATE of 2,000 customers costs more than `jit_above_cost`, and
    compiling it took ~80 ms of its ~400 ms on every chunk, for a plan that runs once."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")


def scoring_run_lease_renew(*, run_id: int) -> None:
    """Push a running run's lease SCORING_LEASE_SECONDS ahead: it is making progress."""
    ScoringRun.objects.filter(pk=run_id, status=ScoringRun.Status.RUNNING).update(
        lease_expires_at=timezone.now() + timedelta(seconds=settings.SCORING_LEASE_SECONDS))


def _churn_scores_upsert(ids: list[int], probabilities: np.ndarray, reasons: list[list[dict]], *,
                         version: ModelVersion, as_of: datetime, now: datetime) -> list[int]:
    """Insert or overwrite the ChurnScore of each customer for (version, as_of); returns their ids in `ids` order.

    A retry rewrites, never duplicates.

    PostgreSQL: one INSERT ... ON CONFLICT over arrays, the reasons as one JSON document (bulk_create
    sent them as a jsonb[] whose per-element quoting took 0.12 s of the 0.14 s per 2,000 rows).
    """
    high, medium = settings.CHURN_BAND_HIGH, settings.CHURN_BAND_MEDIUM
    bands = [band_of(float(p), high=high, medium=medium) for p in probabilities]
    if connection.vendor != "postgresql":
        ChurnScore.objects.bulk_create(
            [ChurnScore(customer_id=cid, model_version=version, as_of=as_of, probability=float(p), band=band,
                        reasons=r, created_at=now) for cid, p, band, r in zip(ids, probabilities, bands, reasons)],
            update_conflicts=True, unique_fields=["customer", "model_version", "as_of"],
            update_fields=["probability", "band", "reasons"], batch_size=1000,
        )
        written = dict(ChurnScore.objects.filter(model_version=version, as_of=as_of, customer_id__any_of=ids)
                       .values_list("customer_id", "pk"))
        return [written[cid] for cid in ids]
    meta = ChurnScore._meta
    column = {name: meta.get_field(name).column for name in
              ("customer", "model_version", "as_of", "probability", "band", "reasons", "created_at")}
    ops = connection.ops
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {meta.db_table} ({column['customer']}, {column['model_version']}, {column['as_of']},"
            f" {column['probability']}, {column['band']}, {column['reasons']}, {column['created_at']})"
            " SELECT u.customer_id, %s, %s, u.probability, u.band, r.reasons, %s"
            " FROM unnest(%s::bigint[], %s::float8[], %s::text[]) WITH ORDINALITY AS u(customer_id, probability, band, i)"
            " JOIN jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS r(reasons, i) ON r.i = u.i"
            f" ON CONFLICT ({column['customer']}, {column['model_version']}, {column['as_of']}) DO UPDATE SET"
            f" {column['probability']} = EXCLUDED.{column['probability']}, {column['band']} = EXCLUDED.{column['band']},"
            f" {column['reasons']} = EXCLUDED.{column['reasons']}"
            f" RETURNING {column['customer']}, id",
            [version.pk, ops.adapt_datetimefield_value(as_of), ops.adapt_datetimefield_value(now),
             pg_array(int(c) for c in ids), pg_array(float(p) for p in probabilities), pg_array(bands),
             json.dumps(reasons)],
        )
        written = dict(cursor.fetchall())
    return [written[cid] for cid in ids]


def _lapse_days() -> int:
    """Days without an order after which a customer has lapsed: the alert policy's own limit, so the
    stages and the policy agree on who still gets early warnings."""
    return settings.ALERT_MAX_DAYS_SINCE_ORDER


def _customers_point_at_scores(ids: list[int], spend: np.ndarray, probabilities: np.ndarray, score_ids: list[int],
                               stages: list[str], *, as_of: datetime) -> None:
    """Set Customer.value, point latest_score at this run's score, store its probability, the value at
    risk (probability x value), risk_change_7d and the lifecycle stage, in one pass.

    One UPDATE ... FROM the rows (arrays on PostgreSQL, VALUES per 1,000 elsewhere; bulk_update's CASE
    per row cost 1.3 s per 2,000 customers, and a second UPDATE for the 7-day change wrote every row twice).
    A re-run of an older day must not replace a newer latest score: those customers keep latest_score,
    and their change is recomputed by `customer_risk_change_refresh`, since this run's score may now be
    its baseline. Otherwise the change is this score's probability minus the baseline refresh would pick.

    Scores are looked up by primary key or by customer only: a lookup by this run's as_of made the
    planner use the (as_of, band) index on statistics from before the run's rows existed, scanning
    every new row once per customer (6 s per 2,000 customers after an ANALYZE).
    """
    customer = Customer._meta.db_table
    score = ChurnScore._meta.db_table
    ops = connection.ops
    field = Customer._meta.get_field("value")
    as_of_param = ops.adapt_datetimefield_value(as_of)
    window_param = ops.adapt_datetimefield_value(as_of - timedelta(days=RISK_CHANGE_DAYS))
    # Whether the customer already has a newer latest score, decided once per row (not once per column).
    newer = (f"EXISTS (SELECT 1 FROM {customer} c JOIN {score} ls ON ls.id = c.latest_score_id"
             f" WHERE c.id = v.column1 AND ls.as_of > %s)")
    values = [ops.adapt_decimalfield_value(Decimal(f"{s:.2f}"), field.max_digits, field.decimal_places) for s in spend]
    if connection.vendor == "postgresql":  # the rows as five arrays: one statement, five parameters
        batches = [("unnest(%s::bigint[], %s::numeric[], %s::float8[], %s::bigint[], %s::text[]) AS v(column1, column2,"
                    " column3, column4, column5)",
                    [pg_array(int(c) for c in ids), pg_array(values), pg_array(float(p) for p in probabilities),
                     pg_array(int(i) for i in score_ids), pg_array(stages)])]
    else:  # SQLite (>= 3.33) names unaliased VALUES columns column1, column2, ... as PostgreSQL does
        batches = []
        for start in range(0, len(ids), 1000):  # within SQLite's limit on parameters
            rows = zip(ids[start:start + 1000], values[start:start + 1000], probabilities[start:start + 1000],
                       score_ids[start:start + 1000], stages[start:start + 1000])
            params = [x for cid, v, p, sid, st in rows for x in (int(cid), v, float(p), int(sid), st)]
            batches.append((f"(VALUES {', '.join(['(%s, %s, %s, %s, %s)'] * (len(params) // 5))}) AS v", params))
    value = f"CAST(v.column2 AS {'double precision' if connection.vendor == 'postgresql' else 'REAL'})"
    with connection.cursor() as cursor:
        for source, params in batches:
            # SET expressions read the row as it was: a customer with a newer score keeps its probability,
            # and its value at risk follows the new value.
            cursor.execute(
                f"UPDATE {customer} SET value = v.column2,"
                f" latest_score_id = CASE WHEN v.newer THEN {customer}.latest_score_id ELSE v.column4 END,"
                f" latest_probability = CASE WHEN v.newer THEN {customer}.latest_probability ELSE v.column3 END,"
                f" value_at_risk = CASE WHEN v.newer THEN {customer}.latest_probability ELSE v.column3 END * {value},"
                f" lifecycle_stage = CASE WHEN v.newer THEN {customer}.lifecycle_stage ELSE v.column5 END,"
                f" risk_change_7d = CASE WHEN v.newer THEN {customer}.risk_change_7d ELSE v.column3 - ("
                f"  SELECT b.probability FROM {score} b WHERE b.customer_id = {customer}.id AND b.as_of < %s"
                f"  AND b.as_of >= %s ORDER BY b.as_of, b.id DESC LIMIT 1) END"
                f" FROM (SELECT v.*, {newer} AS newer FROM {source}) AS v WHERE {customer}.id = v.column1",
                [as_of_param, window_param, as_of_param, *params],
            )
    later = list(Customer.objects.filter(pk__any_of=ids, latest_score__as_of__gt=as_of).values_list("pk", flat=True))
    if later:
        customer_risk_change_refresh(customer_ids=later)


RISK_CHANGE_DAYS = 7


def customer_latest_score_refresh(*, customer_ids: list[int] | None = None) -> int:
    """Store `Customer.latest_probability` and `value_at_risk` from each customer's latest score and value
    for these customers (all when None) in one UPDATE; empty for customers without a score.

    Scoring writes both with latest_score; this is for rows whose latest_score or value were written
    some other way. Returns the number of customers updated.
    """
    probability = Subquery(ChurnScore.objects.filter(pk=OuterRef("latest_score_id")).values("probability")[:1],
                           output_field=FloatField())
    qs = Customer.objects.all() if customer_ids is None else Customer.objects.filter(pk__any_of=customer_ids)
    return qs.update(latest_probability=probability, value_at_risk=probability * Cast("value", FloatField()))


def customer_risk_change_refresh(*, customer_ids: list[int] | None = None) -> int:
    """Store `Customer.risk_change_7d` for these customers (all when None) in one UPDATE.

    The change is the latest score's probability minus that of the earliest score in the
    RISK_CHANGE_DAYS before it (ties on the day: the newest row), NULL when there is none or no
    latest score. Call after `latest_score` is written; returns the number of customers updated.
    """
    latest = ChurnScore.objects.filter(pk=OuterRef(OuterRef("latest_score_id")))
    latest_as_of = Subquery(latest.values("as_of")[:1], output_field=DateTimeField())
    baseline = (
        ChurnScore.objects.filter(customer_id=OuterRef("pk"), as_of__lt=latest_as_of,
                                  as_of__gte=latest_as_of - timedelta(days=RISK_CHANGE_DAYS))
        .order_by("as_of", "-pk").values("probability")[:1]
    )
    latest_probability = ChurnScore.objects.filter(pk=OuterRef("latest_score_id")).values("probability")[:1]
    qs = Customer.objects.all() if customer_ids is None else Customer.objects.filter(pk__any_of=customer_ids)
    return qs.update(risk_change_7d=Subquery(latest_probability, output_field=FloatField())
                     - Subquery(baseline, output_field=FloatField()))


def scoring_run_fail(*, run_id: int, error: str) -> None:
    """Mark a running run failed with why (no-op for a run already closed)."""
    ScoringRun.objects.filter(pk=run_id, status=ScoringRun.Status.RUNNING).update(
        status=ScoringRun.Status.FAILED, error=error[:2000], finished_at=timezone.now(), lease_expires_at=None)


def scoring_run_finish(*, run_id: int, results: list[dict]) -> ScoringRun:
    """Close a running run with its counts; a run already marked failed (stale) stays failed."""
    ScoringRun.objects.filter(pk=run_id, status=ScoringRun.Status.RUNNING).update(
        n_customers=sum(r["n_customers"] for r in results), n_encoded=sum(r["n_encoded"] for r in results),
        status=ScoringRun.Status.DONE, finished_at=timezone.now(), lease_expires_at=None)
    return ScoringRun.objects.get(pk=run_id)


def churn_scores_riskiest(*, run: ScoringRun, limit: int = 10) -> list[ChurnScore]:
    """The run's scores of the customers the worklist opens on: at risk (active, medium or high),
    most value at risk first, as the worklist and `/churn top` rank them. Lapsed customers, however
    high their score, are a win-back list, not an early warning."""
    return list(ChurnScore.objects.filter(model_version=run.model_version, as_of=run.as_of,
                                          customer__lifecycle_stage=Customer.Stage.AT_RISK)
                .select_related("customer")
                .order_by(F("customer__value_at_risk").desc(nulls_last=True), "-probability", "customer_id")[:limit])


def last_event_day() -> datetime | None:
    span = selectors_ml.event_time_range()
    if span[1] is None:
        return None
    # Score "as of the day after the last event": every event known is before it.
    return (span[1] + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


__all__ = ["model_train_all", "model_train_scheduled", "model_version_promote", "model_version_load",
           "churn_scores_compute_chunk", "scoring_run_fail", "scoring_run_finish", "champion_get", "churn_scores_riskiest", "customer_risk_change_refresh"]
