"""Fit a named family on train/valid rows, calibrate it on validation, and report metrics."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlcore.calibration import PlattCalibration
from mlcore.errors import MlError
from mlcore.families.base import ChurnModel, FitReport, Rows
from mlcore import metrics
from mlcore.compare import CHAMPION_METRIC, active_mask
from mlcore.messages import MessageFeaturizer
from mlcore.snapshot import as_if_untreated

FAMILIES = ("logreg", "lightgbm", "bert", "bert_pretrained", "bert_events", "bert_events_pretrained", "stacked")
# The families that read the customers' texts (the others read features, event tokens and messages).
TEXT_FAMILIES = ("bert", "bert_pretrained")


def reads_texts(families) -> bool:
    """Whether training any of these families needs the rows' texts (building them is most of a snapshot)."""
    return any(f in TEXT_FAMILIES for f in families)


# The behaviour BERT's architecture when nothing else is said (BehaviourConfig defaults) and the
# tiny one tests and `tiny` runs use.
TINY_EVENTS = dict(layers=1, hidden=32, heads=2, max_events=32, batch_size=32, eval_batch_size=256)
DEFAULT_FAMILIES = ("logreg", "lightgbm", "bert")


@dataclass
class TrainOptions:
    seed: int = 0
    bert_model_path: str = ""
    max_train_minutes: float | None = None  # per BERT family (pretraining included)
    bert_max_length: int = 128
    bert_epochs: float = 3.0
    progress_bar: bool = True
    work_dir: Path | None = None  # where bert_pretrained writes its MLM checkpoint
    horizon_days: int = 90  # what "active" means in the validation metrics
    events_config: dict = field(default_factory=dict)  # BehaviourConfig overrides for bert_events*


@dataclass
class Trained:
    family: str  # the name asked for (bert_pretrained is a bert model on an adapted encoder)
    model: ChurnModel
    calibration: PlattCalibration
    report: FitReport
    valid_metrics: dict
    params: dict
    valid_rows: Rows | None = None  # the calibration slice the metrics were measured on
    valid_predictions: np.ndarray | None = None  # calibrated, as if untreated, on valid_rows


def family_class(name: str):
    if name == "logreg":
        from mlcore.families.logreg import LogregFamily
        return LogregFamily
    if name == "lightgbm":
        from mlcore.families.gbm import LightgbmFamily
        return LightgbmFamily
    if name in TEXT_FAMILIES:
        from mlcore.families.bert import BertFamily
        return BertFamily
    if name in ("bert_events", "bert_events_pretrained"):
        from mlcore.families.behaviour import BehaviourBertFamily
        return BehaviourBertFamily
    if name == "stacked":
        from mlcore.families.stacked import StackedFamily
        return StackedFamily
    raise MlError(f"unknown model family {name!r}; choose from {', '.join(FAMILIES)}")


def _bert(model_path: str, options: TrainOptions, minutes: float | None):
    from mlcore.families.bert import BertCheckpointError, BertConfig, BertFamily

    if not model_path:
        raise MlError("no BERT checkpoint configured: set BERT_MODEL_PATH to a local Hugging Face BERT folder")
    try:
        config = BertConfig(model_path=model_path, max_length=options.bert_max_length, epochs=options.bert_epochs,
                            max_train_minutes=minutes, seed=options.seed, progress_bar=options.progress_bar)
        return BertFamily(config)
    except (BertCheckpointError, OSError, ValueError) as exc:
        raise MlError(f"cannot load the BERT checkpoint at BERT_MODEL_PATH={model_path!r}: {exc}") from exc


def _pretrained_path(train: Rows, options: TrainOptions, minutes: float | None) -> str:
    from mlcore.pretrain import PretrainConfig, pretrain_mlm

    texts = list(dict.fromkeys(train.texts))  # unlabelled customer texts of the training period only
    out = Path(tempfile.mkdtemp(prefix="mlm-", dir=options.work_dir))
    config = PretrainConfig(seed=options.seed, max_train_minutes=minutes, progress_bar=options.progress_bar)
    pretrain_mlm(texts, model_path=options.bert_model_path, out_dir=out / "checkpoint", config=config)
    return str(out / "checkpoint")


# Each slice needs this many of each class, or the two roles share all validation rows (tiny shops).
MIN_SLICE_CLASS = 10


def validation_slices(valid: Rows) -> tuple[Rows, Rows, bool]:
    """(early-stopping rows, calibration rows, split?) from the out-of-time validation rows.

    Early stopping picks the checkpoint that looks best on its rows, so those rows flatter the
    chosen model; calibration and the validation metrics (which decide the champion) use the
    other half. Split by a hash of the customer id: the same customer lands in the same slice for
    every family and every run, so families are compared on the same customers. When a half
    would hold fewer than MIN_SLICE_CLASS churners or stayers, both roles use every row.
    """
    ids = np.asarray(valid.customer_ids, dtype=np.uint64)
    bucket = ((ids * np.uint64(2654435761)) % np.uint64(2 ** 32)) >> np.uint64(31)  # Knuth's multiplicative hash, top bit
    calib = bucket == 1
    for part in (calib, ~calib):
        y = valid.labels[part]
        if y.sum() < MIN_SLICE_CLASS or (1 - y).sum() < MIN_SLICE_CLASS:
            return valid, valid, False
    return valid.take(~calib), valid.take(calib), True


def _behaviour(name: str, train: Rows, valid: Rows, options: TrainOptions):
    """The behaviour BERT; bert_events_pretrained first spends half the budget on masked-event pretraining."""
    from mlcore.families.behaviour import BehaviourBertFamily, BehaviourConfig

    minutes = options.max_train_minutes
    overrides = dict(options.events_config)
    given = overrides.pop("pretrained_path", None)  # a registered pretraining (the train-queue task's)
    given_name = overrides.pop("pretrained_name", None)
    extra: dict = {"max_train_minutes": minutes, "events_config": overrides}
    if name == "bert_events":
        return BehaviourBertFamily(BehaviourConfig(max_train_minutes=minutes, seed=options.seed, **overrides)), extra
    if given:
        extra["pretrained_from"] = given_name or Path(given).name
        return BehaviourBertFamily(BehaviourConfig(max_train_minutes=minutes, seed=options.seed, pretrained_path=given,
                                                   **overrides)), extra
    from mlcore.event_tokens import unlabelled_sequences
    from mlcore.families.event_pretrain import EventPretrainConfig, pretrain_events

    started = time.perf_counter()
    half = minutes / 2 if minutes else None
    arch = {k: overrides[k] for k in ("layers", "hidden", "heads", "max_events", "batch_size") if k in overrides}
    out = Path(tempfile.mkdtemp(prefix="events-mlm-", dir=options.work_dir)) / "encoder"
    # Unlabelled: every customer's history at every training cutoff and at the validation cutoff
    # (all before as_of); labels are never read.
    report, _ = pretrain_events(unlabelled_sequences(train.events, valid.events), out_dir=out,
                                config=EventPretrainConfig(max_train_minutes=half, seed=options.seed, **arch))
    extra["pretraining"] = report.to_dict()
    # Fine-tuning gets what is left of the whole budget (pretraining's own overheads included).
    left = max(0.1 * minutes, minutes - (time.perf_counter() - started) / 60) if minutes else None
    model = BehaviourBertFamily(BehaviourConfig(max_train_minutes=left, seed=options.seed, pretrained_path=str(out),
                                                **overrides))
    import shutil

    shutil.rmtree(out.parent, ignore_errors=True)  # the family holds the encoder weights in memory now
    return model, extra


def build_and_fit(name: str, train: Rows, valid: Rows, options: TrainOptions) -> Trained:
    """Train one family (early stopping on one validation slice), then Platt-calibrate on the other."""
    started = time.perf_counter()
    stop_rows, calib_rows, split = validation_slices(valid)
    params: dict = {"seed": options.seed}
    if name == "logreg":
        model = family_class(name)(seed=options.seed)
    elif name == "lightgbm":
        model = family_class(name)(seed=options.seed)
    elif name == "bert":
        model = _bert(options.bert_model_path, options, options.max_train_minutes)
        params.update(model_path=options.bert_model_path, max_train_minutes=options.max_train_minutes)
    elif name == "bert_pretrained":
        # Half the budget adapts the encoder to shop texts, half fine-tunes it.
        half = options.max_train_minutes / 2 if options.max_train_minutes else None
        path = _pretrained_path(train, options, half)
        model = _bert(path, options, half)
        params.update(model_path=options.bert_model_path, pretrained=True, max_train_minutes=options.max_train_minutes)
    elif name in ("bert_events", "bert_events_pretrained"):
        model, extra = _behaviour(name, train, valid, options)
        params.update(extra)
    elif name == "stacked":
        from mlcore.families.stacked import StackedConfig, StackedFamily

        model = StackedFamily(StackedConfig(max_train_minutes=options.max_train_minutes, seed=options.seed,
                                            events=dict(options.events_config)))
        params.update(max_train_minutes=options.max_train_minutes,
                      pretrained_from=options.events_config.get("pretrained_name"))
    else:
        family_class(name)
        raise AssertionError(name)
    report = model.fit(train, stop_rows)
    calibration, valid_metrics, predicted = calibrate_on_validation(model, calib_rows, options.horizon_days)
    valid_metrics["train_seconds"] = round(time.perf_counter() - started, 2)
    valid_metrics["calibration_rows"] = len(calib_rows) if split else "shared with early stopping"
    return Trained(family=name, model=model, calibration=calibration, report=report,
                   valid_metrics=valid_metrics, params=params, valid_rows=calib_rows, valid_predictions=predicted)


def calibrate_on_validation(model: ChurnModel, valid: Rows, horizon_days: int = 90
                            ) -> tuple[PlattCalibration, dict, np.ndarray]:
    """Platt calibration and calibrated validation metrics, judged the way the model is used.

    Scores are computed as if untreated (scoring asks "churn if we do nothing"), and rows are
    weighted by valid.sample_weight, the evaluation weights of mlcore.dataset.untreated_weights:
    alerted or treated customers are left out, held-out ones stand for them. Without any alert
    or action the weights are all 1 (or None) and this is plain calibration on every row.
    """
    raw = model.predict_proba(as_if_untreated(valid))
    weight = None if valid.sample_weight is None else np.asarray(valid.sample_weight, dtype=np.float64)
    if weight is not None and (weight == 1).all():
        weight = None  # exactly the unweighted fit
    calibration = PlattCalibration.fit(raw, valid.labels, sample_weight=weight)
    p = calibration(raw)
    out = metrics.summary(valid.labels, p, weight)
    # The champion rule reads the active customers' PR-AUC (mlcore.compare): the ones alerts go to.
    active = active_mask(valid, horizon_days)
    out[CHAMPION_METRIC] = metrics.pr_auc(valid.labels[active], p[active], None if weight is None else weight[active])
    out["active_rows"] = int(active.sum())
    return calibration, out, p


# --- the mlcore contract: TrainedModel + train_family ------------------------------------

BACKTEST_FAMILIES = FAMILIES
# A random tiny encoder learns only with a higher learning rate and trainable word embeddings.
TINY_BERT = dict(lr=2e-3, head_lr=3e-3, epochs=4, freeze_word_embeddings=False)


def _fit_report_json(report: FitReport) -> dict:
    import json

    return json.loads(json.dumps({
        "train_seconds": report.train_seconds, "n_train": report.n_train, "n_valid": report.n_valid,
        "best_valid_pr_auc": report.best_valid_pr_auc, "epochs_run": report.epochs_run,
        "stopped_early": report.stopped_early, "hit_time_budget": report.hit_time_budget, "extra": report.extra,
    }, default=str))


@dataclass
class TrainedModel:
    """A fitted family plus its calibration (JSON), feature schema and validation metrics."""

    family: str
    model: ChurnModel
    calibrator: PlattCalibration
    feature_names: tuple
    valid_metrics: dict
    fit_report: FitReport
    params: dict = field(default_factory=dict)
    # In memory only (not saved): the calibration slice and this model's calibrated scores on it,
    # so the champion rule compares families on the same rows without scoring them again.
    valid_rows: Rows | None = None
    valid_predictions: np.ndarray | None = None
    # How messages become the msg_* columns (saved as messages.json); None: trained without them.
    messages: MessageFeaturizer | None = None

    def predict_proba(self, rows: Rows) -> np.ndarray:
        """Calibrated P(churn) per row."""
        if tuple(rows.feature_names) != tuple(self.feature_names):
            raise MlError(f"the {self.family} model expects features {list(self.feature_names)}, "
                          f"got {list(rows.feature_names)}")
        return self.calibrate(self.model.predict_proba(rows))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        return self.calibrator(np.asarray(raw, dtype=np.float64))

    def save(self, folder: Path) -> None:
        """Family files + calibration.json + schema.json + metrics.json (the registry adds the manifest)."""
        import json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder)
        (folder / "calibration.json").write_text(json.dumps(self.calibrator.to_dict(), indent=1))
        (folder / "schema.json").write_text(json.dumps({
            "family": self.family, "model_class": type(self.model).family,
            "feature_names": list(self.feature_names), "params": self.params,
        }, indent=1, default=str))
        (folder / "metrics.json").write_text(json.dumps(
            {"valid": self.valid_metrics, "fit_report": _fit_report_json(self.fit_report)}, indent=1, default=str))
        if self.messages is not None:
            self.messages.save(folder)

    @classmethod
    def load(cls, folder: Path) -> "TrainedModel":
        import json

        from mlcore.errors import ArtifactError

        folder = Path(folder)
        try:
            schema = json.loads((folder / "schema.json").read_text())
            calibration = PlattCalibration.from_dict(json.loads((folder / "calibration.json").read_text()))
            saved = json.loads((folder / "metrics.json").read_text())
            model = family_class(schema["model_class"]).load(folder)
            messages = MessageFeaturizer.load(folder)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"the model in {folder} cannot be loaded: {exc}") from exc
        fr = saved.get("fit_report") or {}
        report = FitReport(**{k: fr[k] for k in ("train_seconds", "n_train", "n_valid") if k in fr} | {
            k: fr.get(k) for k in ("best_valid_pr_auc", "epochs_run")} | {
            "stopped_early": bool(fr.get("stopped_early")), "hit_time_budget": bool(fr.get("hit_time_budget")),
            "extra": fr.get("extra") or {}}) if fr else FitReport(train_seconds=0.0, n_train=0, n_valid=0)
        return cls(family=schema["family"], model=model, calibrator=calibration,
                   feature_names=tuple(schema["feature_names"]), valid_metrics=saved.get("valid") or {},
                   fit_report=report, params=schema.get("params") or {}, messages=messages)


def _tiny_bert(train: Rows, valid: Rows, minutes: float | None, progress, horizon_days: int = 90) -> Trained:
    from mlcore.families.bert import BertConfig, BertFamily, write_tiny_checkpoint

    started = time.perf_counter()
    valid, calib_rows, _ = validation_slices(valid)
    work = Path(tempfile.mkdtemp(prefix="tiny-bert-"))
    try:
        model = BertFamily(BertConfig(model_path=str(write_tiny_checkpoint(work / "tiny")), max_train_minutes=minutes,
                                      progress_bar=False, seed=0, **TINY_BERT))
        report = model.fit(train, valid, progress=progress)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)  # save() writes the in-memory encoder, not this folder
    calibration, valid_metrics, predicted = calibrate_on_validation(model, calib_rows, horizon_days)
    valid_metrics["train_seconds"] = round(time.perf_counter() - started, 2)
    return Trained(family="bert", model=model, calibration=calibration, report=report,
                   valid_metrics=valid_metrics, params={"tiny": True, "max_train_minutes": minutes},
                   valid_rows=calib_rows, valid_predictions=predicted)


def train_family(name: str, train: Rows, valid: Rows, *, max_train_minutes: float | None = None,
                 bert_model_path: str | None = None, bert_max_length: int | None = None, tiny: bool = False,
                 progress=None, horizon_days: int = 90, events_config: dict | None = None,
                 messages: MessageFeaturizer | None = None) -> TrainedModel:
    """The mlcore contract: fit `name`, Platt-calibrate on the (out-of-time) validation rows.

    valid.sample_weight, when set, holds evaluation weights (`calibrate_on_validation`);
    train.sample_weight, when set, weights training (the families read it). Early stopping
    uses one half of the validation customers, calibration and valid_metrics the other
    (`validation_slices`); valid_metrics["active_pr_auc"] counts customers who ordered
    within `horizon_days` before the validation cutoff.

    `max_train_minutes` budgets the bert families (bert_pretrained and bert_events_pretrained
    split it between pretraining and fine-tuning); `tiny` trains bert on a random tiny checkpoint
    and the behaviour BERT at TINY_EVENTS size (tests); `events_config` overrides BehaviourConfig.
    valid_metrics are calibrated validation metrics plus train_seconds (everything included).
    `messages`: the featurizer that made the rows' msg_* columns (`mlcore.messages`), saved with
    the model so scoring builds the same columns.
    """
    family_class(name)  # unknown names fail here with the list of families
    if tiny and name in TEXT_FAMILIES:
        trained = _tiny_bert(train, valid, max_train_minutes, progress, horizon_days)
    else:
        events = dict(TINY_EVENTS if tiny else {}, **(events_config or {}))
        options = TrainOptions(bert_model_path=bert_model_path or "", max_train_minutes=max_train_minutes,
                               progress_bar=progress is not None, horizon_days=horizon_days, events_config=events)
        if bert_max_length is not None:
            options.bert_max_length = bert_max_length
        try:
            trained = build_and_fit(name, train, valid, options)
        except ValueError as exc:  # e.g. a family refusing one-class training data
            raise MlError(f"{name} could not be trained: {exc}") from exc
    valid_metrics = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in trained.valid_metrics.items()}
    params = dict(trained.params, calibration="platt")
    return TrainedModel(family=name, model=trained.model, calibrator=trained.calibration,
                        feature_names=tuple(train.feature_names), valid_metrics=valid_metrics,
                        fit_report=trained.report, params=params, valid_rows=trained.valid_rows,
                        valid_predictions=trained.valid_predictions, messages=messages)
