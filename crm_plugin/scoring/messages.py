"""Message embeddings for training and scoring: the MessageEmbedding cache behind mlcore.messages, one encoder per process."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction

from crm_plugin.errors import CrmError
from crm_plugin.models import MessageEmbedding
from mlcore.errors import MlError
from mlcore.families.base import Rows
from mlcore.messages import (
    MESSAGE_FEATURE_NAMES, MessageEmbedder, MessageEmbeddings, MessageEncoder, MessageFeaturizer, message_embeddings,
    message_features_fit, message_table, with_columns,
)

VECTOR_DTYPE = np.dtype("<f2")  # float16: half the bytes; mlcore.messages.canonical rounds fresh vectors the same way
_LOOKUP_BATCH = 5000  # keys per query (SQLite's limit on parameters is 32,766)
_ENCODERS: dict[str, MessageEncoder] = {}  # per process: the weights load once, on the first message not cached


class MessageEmbeddingStore:
    """mlcore.messages.VectorStore over the MessageEmbedding table."""

    def vectors_get(self, *, model_id: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        keys = list(keys)
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), _LOOKUP_BATCH):
            rows = MessageEmbedding.objects.filter(model_id=model_id, sha256__any_of=keys[start:start + _LOOKUP_BATCH])
            for sha, blob in rows.values_list("sha256", "vector"):
                out[sha] = np.frombuffer(bytes(blob), dtype=VECTOR_DTYPE).astype(np.float32)
        return out

    @transaction.atomic
    def vectors_put(self, *, model_id: str, vectors: Mapping[str, np.ndarray]) -> None:
        # Chunks scored side by side may meet the same new message: the first insert wins, the vectors are equal.
        MessageEmbedding.objects.bulk_create(
            [MessageEmbedding(model_id=model_id, sha256=key, vector=np.asarray(v).astype(VECTOR_DTYPE).tobytes())
             for key, v in vectors.items()], ignore_conflicts=True, batch_size=1000)


def message_encoder() -> MessageEncoder:
    """The process's encoder for BERT_MODEL_PATH (weights not loaded until a message needs encoding)."""
    path = settings.BERT_MODEL_PATH
    if path not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[path] = MessageEncoder(path)
    return _ENCODERS[path]


def message_embedder(*, model_id: str | None = None) -> MessageEmbedder:
    """Vectors through the MessageEmbedding cache; `model_id`: a saved model's encoder (default: BERT_MODEL_PATH's)."""
    encoder = message_encoder() if settings.BERT_MODEL_PATH else None
    if encoder is None and model_id is None:
        raise CrmError("message embeddings need an encoder: set BERT_MODEL_PATH, or ML_MESSAGE_EMBEDDINGS=0")
    return MessageEmbedder(store=MessageEmbeddingStore(), encoder=encoder, model_id=model_id)


def message_features_train(*, events: pd.DataFrame, train: Rows, valid: Rows,
                           log: Callable[[str], None]) -> tuple[Rows, Rows, MessageFeaturizer | None, pd.DataFrame]:
    """Training and validation rows with the message columns, their featurizer, and the messages table.

    Nothing happens (rows unchanged, featurizer None) when ML_MESSAGE_EMBEDDINGS is off or the
    events hold no message; an unusable BERT_MODEL_PATH skips them with a line saying why, so the
    baselines still train. Only texts the cache lacks are encoded.
    """
    table = message_table(events)
    if not settings.ML_MESSAGE_EMBEDDINGS or not len(table):
        return train, valid, None, table
    try:
        embedder = message_embedder()
        messages = message_embeddings(table, embedder)
    except (CrmError, MlError) as exc:
        log(f"message embeddings skipped: {exc}")
        return train, valid, None, table
    train, valid, featurizer = message_features_fit(train, valid, messages, embedder)
    log(f"message embeddings: {len(messages)} messages ({embedder.n_encoded} newly encoded), "
        f"{len(MESSAGE_FEATURE_NAMES)} columns from encoder {featurizer.model_id}")
    return train, valid, featurizer, table


def message_rows_for(*, featurizer: MessageFeaturizer | None, rows: Rows, table: pd.DataFrame) -> Rows:
    """`rows` with the message columns a saved model's own featurizer makes (unchanged without one).

    For judging a champion on rows built for new versions: its components are its own.
    """
    if featurizer is None:
        return rows
    try:
        return featurizer.add_to(rows, message_embeddings(table, message_embedder(model_id=featurizer.model_id)))
    except MlError as exc:
        raise CrmError(str(exc)) from exc


def message_features_score(*, featurizer: MessageFeaturizer, events: pd.DataFrame, rows: Rows, as_of,
                           evidence: pd.DataFrame) -> tuple[Rows, pd.DataFrame, int]:
    """(rows with the message columns, evidence with the most negative message, messages encoded) for one chunk.

    Vectors come from the cache; only messages never seen by this encoder are encoded.
    """
    try:
        embedder = message_embedder(model_id=featurizer.model_id)
        messages: MessageEmbeddings = message_embeddings(events, embedder)
        values, quoted = featurizer.features(messages, rows.customer_ids, as_of)
    except MlError as exc:
        raise CrmError(f"message features: {exc}") from exc
    return with_columns(rows, MESSAGE_FEATURE_NAMES, values), evidence.join(quoted), embedder.n_encoded
