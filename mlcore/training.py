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

FAMILIES = ("logreg", "lightgbm", "bert", "bert_pretrained")
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
    extra: dict = field(default_factory=dict)


@dataclass
class Trained:
    family: str  # the name asked for (bert_pretrained is a bert model on an adapted encoder)
    model: ChurnModel
    calibration: PlattCalibration
    report: FitReport
    valid_metrics: dict
    params: dict


def family_class(name: str):
    if name == "logreg":
        from mlcore.families.logreg import LogregFamily
        return LogregFamily
    if name == "lightgbm":
        from mlcore.families.gbm import LightgbmFamily
        return LightgbmFamily
    if name in ("bert", "bert_pretrained"):
        from mlcore.families.bert import BertFamily
        return BertFamily
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


def build_and_fit(name: str, train: Rows, valid: Rows, options: TrainOptions) -> Trained:
    """Train one family, then fit Platt calibration on the validation rows."""
    started = time.perf_counter()
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
    else:
        family_class(name)
        raise AssertionError(name)
    report = model.fit(train, valid)
    raw = model.predict_proba(valid)
    calibration = PlattCalibration.fit(raw, valid.labels)
    valid_metrics = metrics.summary(valid.labels, calibration(raw))
    valid_metrics["train_seconds"] = round(time.perf_counter() - started, 2)
    return Trained(family=name, model=model, calibration=calibration, report=report,
                   valid_metrics=valid_metrics, params=params)


def calibrated_proba(model: ChurnModel, calibration: PlattCalibration, rows: Rows) -> np.ndarray:
    return calibration(model.predict_proba(rows))
