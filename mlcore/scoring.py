"""Score snapshot rows with a trained model: cached encoder outputs, calibrated probabilities, reasons.

Django-free. The caller passes the cached embeddings it has (customer id -> (text key, vector));
only customers whose text key changed (or who have no entry) go through the encoder, and the
fresh vectors come back so the caller can store them. A text key is the snapshot's fingerprint of
what the text is built from (`mlcore.snapshot.text_keys`) or, without one, the text's sha256. High-risk customers also get text-segment
occlusion so a review or ticket sentence can become a reason.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlcore.families.base import Rows, predict_with_contributions
from mlcore.reasons import build_reasons, logit_delta
from mlcore.training import TrainedModel

# Per chunk: occlusion costs up to OCCLUSION_MAX_SEGMENTS extra encodes per row (measured: 50 rows x 6
# segments took as long as encoding 340 customers), so only the 50 riskiest customers of a chunk whose
# text changed since the last run get it (an unchanged text has unchanged effects; the service carries
# their text reasons forward), over their 4 newest events: <= 10% extra encoder work per 2,000.
OCCLUSION_MAX_ROWS = 50
OCCLUSION_MAX_SEGMENTS = 4
PROFILE_SEGMENTS = 2  # profile + aggregates: their numbers are already reasons through the features


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_text_model(model) -> bool:
    return hasattr(model, "encode") and hasattr(model, "predict_proba_from_embeddings")


@dataclass
class Scored:
    probabilities: np.ndarray  # calibrated, float64 [n]
    reasons: list[list[dict]]
    text_keys: list[str] = field(default_factory=list)
    new_embeddings: dict[int, tuple[str, np.ndarray]] = field(default_factory=dict)  # customer id -> (key, vector)
    n_encoded: int = 0


def score_rows(
    trained: TrainedModel,
    rows: Rows,
    *,
    evidence: pd.DataFrame,
    as_of,
    cached: dict[int, tuple[str, np.ndarray]] | None = None,
    text_keys: list[str] | None = None,
    occlusion_threshold: float | None = None,
    occlusion_max_rows: int = OCCLUSION_MAX_ROWS,
) -> Scored:
    """Calibrated P(churn) and reasons for every row (one row per customer).

    `text_keys` (one per row; default: each text's sha256) decide which cached vectors still
    apply; rows whose key matches may have text None (not built), the others need their text.
    """
    model = trained.model
    n = len(rows)
    if n == 0:
        return Scored(probabilities=np.zeros(0), reasons=[])
    keys: list[str] = []
    new: dict[int, tuple[str, np.ndarray]] = {}
    n_encoded = 0
    if is_text_model(model):
        cached = cached or {}
        keys = list(text_keys) if text_keys is not None else [text_sha(t) for t in rows.texts]
        if len(keys) != n:
            raise ValueError(f"text_keys has {len(keys)} entries for {n} rows")
        embeddings: np.ndarray | None = None
        missing = []
        for i, (cid, key) in enumerate(zip(rows.customer_ids.tolist(), keys)):
            hit = cached.get(cid)
            if hit is None or hit[0] != key:
                missing.append(i)
        unbuilt = [int(rows.customer_ids[i]) for i in missing if rows.texts[i] is None]
        if unbuilt:
            raise ValueError(f"no text for customers whose cached vector does not apply: {unbuilt[:5]}")
        if missing:
            fresh = model.encode([rows.texts[i] for i in missing])
            n_encoded = len(missing)
            embeddings = np.empty((n, fresh.shape[1]), dtype=np.float32)
            embeddings[missing] = fresh
            for k, i in enumerate(missing):
                new[int(rows.customer_ids[i])] = (keys[i], fresh[k])
        missing_set = set(missing)
        for i, cid in enumerate(rows.customer_ids.tolist()):
            if i in missing_set:
                continue
            vector = np.asarray(cached[cid][1], dtype=np.float32)
            if embeddings is None:
                embeddings = np.empty((n, vector.shape[0]), dtype=np.float32)
            embeddings[i] = vector
        raw = model.predict_proba_from_embeddings(embeddings, rows.features)
        contributions = model.feature_contributions_from_embeddings(embeddings, rows.features)
    else:
        raw, contributions = predict_with_contributions(model, rows)
    probabilities = trained.calibrate(raw)
    # Contributions are in the family's raw log-odds; Platt rescales log-odds by its slope.
    contributions = np.asarray(contributions, dtype=np.float64) * trained.calibrator.slope

    segment_effects = None
    if hasattr(model, "text_segment_effects") and occlusion_threshold is not None:
        eligible = probabilities >= occlusion_threshold
        if is_text_model(model) and cached:
            changed = np.zeros(n, dtype=bool)
            changed[missing] = True
            eligible &= changed
        risky = np.flatnonzero(eligible)
        risky = risky[np.argsort(-probabilities[risky], kind="stable")][:occlusion_max_rows]
        if len(risky):
            effects = model.text_segment_effects(rows.take(risky), max_segments=OCCLUSION_MAX_SEGMENTS,
                                                 skip_segments=PROFILE_SEGMENTS)
            raw_risky = raw[risky]
            per_row = logit_delta(raw_risky, effects)
            segment_effects = {int(risky[k]): [(s, d * trained.calibrator.slope) for s, d in per_row[k]]
                               for k in range(len(risky))}
    reasons = build_reasons(
        feature_names=rows.feature_names, features=rows.features, contributions=contributions,
        evidence=evidence, as_of=as_of, texts=rows.texts, segment_effects=segment_effects,
    )
    return Scored(probabilities=probabilities, reasons=reasons, text_keys=keys, new_embeddings=new,
                  n_encoded=n_encoded)


def band_of(p: float, *, high: float, medium: float) -> str:
    return "high" if p >= high else "medium" if p >= medium else "low"
