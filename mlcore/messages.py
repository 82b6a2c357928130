"""Message embeddings: the customer's own words (reviews, tickets, returns, coupons) as a few numeric columns.

Every message is encoded once by a frozen sentence encoder (the packaged all-MiniLM-L6-v2 by
default, loaded with the bert family's own loaders) and its vector is cached by content: the
sha256 of the normalised text, per encoder (`model_id`). The cache is the caller's (`VectorStore`:
a Django table in production, a dict in tests and backtests without one); a daily run encodes only
messages it has never seen, and a shop without text never loads the encoder.

Per row (customer, cutoff) only messages from strictly before the cutoff count. They become
MESSAGE_FEATURE_NAMES: counts and recency, the tone of the customer's messages along two fixed
directions (positive vs negative, leaving vs staying: differences of anchor sentences' vectors,
not fitted on any shop) and MESSAGE_COMPONENTS principal components of the mean vector of the
last WINDOW_DAYS, fitted on training rows only. `MessageFeaturizer` holds those directions and
components; it is saved with the model (messages.json) so scoring computes the same columns.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import sparse

from mlcore.errors import MlError
from mlcore.families.base import Rows
from mlcore.threads import use_torch_threads

# Event kinds whose text the customer wrote (or that was written for them, e.g. a coupon note).
MESSAGE_KINDS = ("review", "ticket", "return", "coupon")
WINDOW_DAYS = 90
LONG_WINDOW_DAYS = 365
MESSAGE_COMPONENTS = 8
NO_MESSAGE_DAYS = 999.0  # recency for "never wrote": the same "never" as the snapshot's
MESSAGE_MAX_TOKENS = 128  # messages are short; a long complaint's first 128 word pieces carry its tone
ENCODE_BATCH = 64
FEATURIZER_FORMAT = 1
FEATURIZER_FILE = "messages.json"

MESSAGE_FEATURE_NAMES: tuple[str, ...] = (
    "msg_count_90", "msg_count_365", "msg_days_since_last",
    "msg_tone_mean_90", "msg_tone_min_90", "msg_tone_last", "msg_leaving_max_90",
    *(f"msg_pc_{i}" for i in range(1, MESSAGE_COMPONENTS + 1)),
)
MESSAGE_FEATURE_DOCS: dict[str, str] = {
    "msg_count_90": "messages (reviews, tickets, returns, coupon notes with text) in the last 90 days",
    "msg_count_365": "messages in the last 365 days",
    "msg_days_since_last": f"days since the customer's latest message ({NO_MESSAGE_DAYS:.0f} if none)",
    "msg_tone_mean_90": "average tone of the last 90 days' messages (positive > 0 > negative; 0 when none)",
    "msg_tone_min_90": "tone of the most negative message of the last 90 days (0 when none)",
    "msg_tone_last": "tone of the customer's latest message (0 when none)",
    "msg_leaving_max_90": "how much the last 90 days' most 'leaving' message sounds like leaving (> 0) vs staying (0 when none)",
    **{f"msg_pc_{i}": f"principal component {i} of the last 90 days' mean message vector (0 when none)"
       for i in range(1, MESSAGE_COMPONENTS + 1)},
}

# Fixed anchor sentences for the two directions: generic shop English, never fitted on a shop.
ANCHORS: dict[str, tuple[str, ...]] = {
    "positive": ("Great product, exactly as described. Very happy with it.",
                 "Excellent quality and fast delivery, thank you!",
                 "I love it and will definitely recommend this shop."),
    "negative": ("Terrible quality, it broke straight away.",
                 "Very disappointed: the parcel arrived damaged and nobody replied.",
                 "Awful service, I am still waiting for my refund."),
    "leaving": ("This is my last order, I am going elsewhere.",
                "I found it cheaper at another shop and I am switching.",
                "I will never buy from this shop again."),
    "staying": ("I will order again soon.",
                "I shop here every month and will keep coming back.",
                "Thanks, see you next time."),
    # Plain requests: a reason quotes a message as negative only when it is nearer the complaints
    # above than these (on the tone direction alone, routine questions to support sit below the midpoint).
    "request": ("Could you tell me when my order will arrive?",
                "Do you deliver to other countries?",
                "Is this item available in another size?",
                "How do I use a gift card at checkout?"),
}

_SPACE = re.compile(r"\s+")


def message_normalise(text: str) -> str:
    """The text as encoded and keyed: Unicode NFKC, whitespace runs as one space, trimmed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text or "")).strip()


def message_key(text: str) -> str:
    """The cache key of a message: sha256 of its normalised text (equal key, equal vector)."""
    return hashlib.sha256(message_normalise(text).encode("utf-8")).hexdigest()


# --- the encoder and its cache -----------------------------------------------------------------

# Files whose bytes decide an encoder's output (weights, vocabulary, architecture); read without
# importing torch, so a run whose messages are all cached never loads it.
_IDENTITY_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt")


@functools.lru_cache(maxsize=8)
def _folder_digest(folder: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    for name in _IDENTITY_FILES:
        path = Path(folder) / name
        if path.is_file():
            digest.update(name.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def encoder_id(model_path: str) -> str:
    """`<folder name>-<sha256 of its weights, vocabulary and config, 16 hex>`: the cache's encoder key.

    Raises MlError naming the path when it is not a checkpoint folder. Hashed once per process
    (per path, size and modification time).
    """
    folder = Path(model_path) if model_path else None
    if folder is None or not (folder / "config.json").is_file():
        raise MlError(f"message embeddings need a local BERT checkpoint: BERT_MODEL_PATH={model_path!r} has no "
                      "config.json; set BERT_MODEL_PATH, or ML_MESSAGE_EMBEDDINGS=0 to train without them")
    stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (folder / n for n in _IDENTITY_FILES) if p.is_file())
    return f"{folder.resolve().name}-{_folder_digest(str(folder.resolve()), stamp)[:16]}"


class MessageEncoder:
    """The frozen sentence encoder: unit-length mean-pooled vectors, fp32; the weights load on the first encode."""

    def __init__(self, model_path: str, *, max_length: int = MESSAGE_MAX_TOKENS, batch_size: int = ENCODE_BATCH):
        self.model_path, self.max_length, self.batch_size = model_path, max_length, batch_size
        self._encoder = self._tokenizer = None
        self.n_calls = 0  # encode() calls that reached the encoder
        self.n_texts = 0  # texts encoded

    @property
    def model_id(self) -> str:
        return encoder_id(self.model_path)

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [n, hidden], each row of length 1; texts should be normalised (`message_normalise`)."""
        # torch and transformers load only here: a process whose messages are all cached never needs them.
        import torch

        from mlcore.families.bert.config import load_encoder, load_tokenizer
        from mlcore.families.bert.model import embed_token_lists

        texts = list(texts)
        if self._encoder is None:
            self._tokenizer, self._encoder = load_tokenizer(self.model_path), load_encoder(self.model_path)
        use_torch_threads()
        self.n_calls += 1
        self.n_texts += len(texts)
        tokens = self._tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"] if texts else []
        # fp32 on CPU (the cached vectors stay the same whichever worker computed them); CUDA is not used:
        # a few thousand short messages a day are not worth a GPU worker's memory.
        out = embed_token_lists(self._encoder, tokens, pad_id=self._tokenizer.pad_token_id, device=torch.device("cpu"),
                                batch_size=self.batch_size,
                                with_token_types="token_type_ids" in self._tokenizer.model_input_names)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)


class VectorStore(Protocol):
    """Where message vectors persist between runs, keyed by (encoder id, message key)."""

    def vectors_get(self, *, model_id: str, keys: Sequence[str]) -> dict[str, np.ndarray]: ...

    def vectors_put(self, *, model_id: str, vectors: Mapping[str, np.ndarray]) -> None: ...


class MemoryVectorStore:
    """A VectorStore in a dict (tests; a backtest process without the database's)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], np.ndarray] = {}

    def vectors_get(self, *, model_id: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        return {k: self.data[(model_id, k)] for k in keys if (model_id, k) in self.data}

    def vectors_put(self, *, model_id: str, vectors: Mapping[str, np.ndarray]) -> None:
        self.data.update({(model_id, k): np.asarray(v, dtype=np.float32) for k, v in vectors.items()})


def canonical(vectors: np.ndarray) -> np.ndarray:
    """Vectors as stored: float16 precision, float32 type. Fresh and cached vectors are then identical."""
    return np.asarray(vectors, dtype=np.float16).astype(np.float32)


class MessageEmbedder:
    """Vectors for texts through the cache: only texts the store lacks reach the encoder, in one call.

    `model_id`: whose vectors are wanted (default: the encoder's own). Asking for another encoder's
    vectors works while they are all cached; a miss then raises MlError rather than mixing encoders.
    """

    def __init__(self, *, store: VectorStore, encoder: MessageEncoder | None = None, model_id: str | None = None):
        if encoder is None and model_id is None:
            raise ValueError("a MessageEmbedder needs an encoder or a model_id")
        self.store, self.encoder, self._model_id = store, encoder, model_id
        self.n_encoded = 0

    @property
    def model_id(self) -> str:
        if self._model_id is None:
            self._model_id = self.encoder.model_id
        return self._model_id

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [n, hidden] for `texts` (normalised and keyed here), in their order."""
        normalised = [message_normalise(t) for t in texts]
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in normalised]
        unique = dict(zip(keys, normalised))
        if not unique:
            return np.zeros((0, 0), dtype=np.float32)
        found = self.store.vectors_get(model_id=self.model_id, keys=list(unique))
        missing = [k for k in unique if k not in found]
        if missing:
            if self.encoder is None:
                raise MlError(f"{len(missing)} messages have no cached vector of encoder {self.model_id} and no "
                              "encoder is configured to compute them")
            if self.encoder.model_id != self.model_id:
                raise MlError(f"this model's message features come from encoder {self.model_id}, but BERT_MODEL_PATH "
                              f"is {self.encoder.model_id}; {len(missing)} new messages cannot be encoded the same way: "
                              "restore that encoder or retrain")
            fresh = canonical(self.encoder.encode([unique[k] for k in missing]))
            self.n_encoded += len(missing)
            new = dict(zip(missing, fresh))
            self.store.vectors_put(model_id=self.model_id, vectors=new)
            found.update(new)
        return np.stack([np.asarray(found[k], dtype=np.float32) for k in keys])


# --- messages of an event log ----------------------------------------------------------------

@dataclass(frozen=True)
class MessageEmbeddings:
    """Messages (sorted by customer, time) and their vectors, aligned by position."""

    customer_id: np.ndarray  # int64
    occurred_at: np.ndarray  # datetime64[ns], UTC-naive
    kind: np.ndarray  # object
    text: np.ndarray  # object, normalised
    vectors: np.ndarray  # float16 [m, hidden]: the stored precision, half the memory of a long history
    model_id: str = ""

    def __len__(self) -> int:
        return len(self.customer_id)


def _timestamp(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts).as_unit("ns")


def message_table(events: pd.DataFrame) -> pd.DataFrame:
    """The messages of an events frame (raw or prepared): customer_id, occurred_at (naive UTC), kind, text.

    Events of MESSAGE_KINDS with a non-blank text; text normalised; sorted by customer and time.
    """
    if not len(events) or "text" not in events:
        return pd.DataFrame({"customer_id": pd.Series(dtype="int64"), "occurred_at": pd.Series(dtype="datetime64[ns]"),
                             "kind": pd.Series(dtype=object), "text": pd.Series(dtype=object)})
    kind = events["kind"].astype(str)
    text = events["text"].fillna("").astype(str)
    mask = (kind.isin(MESSAGE_KINDS) & (text.str.strip() != "")).to_numpy()
    at = pd.to_datetime(events.loc[mask, "occurred_at"], utc=True).dt.tz_localize(None).astype("datetime64[ns]")
    out = pd.DataFrame({"customer_id": events.loc[mask, "customer_id"].astype("int64").to_numpy(),
                        "occurred_at": at.to_numpy(), "kind": kind[mask].to_numpy(),
                        "text": [message_normalise(t) for t in text[mask]]})
    return out.sort_values(["customer_id", "occurred_at"], kind="stable").reset_index(drop=True)


def message_embeddings(events: pd.DataFrame, embedder: MessageEmbedder) -> MessageEmbeddings:
    """Every message of `events` with its vector; without messages nothing is looked up or encoded."""
    table = message_table(events)
    vectors = (embedder.vectors(table["text"].tolist()) if len(table) else np.zeros((0, 0))).astype(np.float16)
    return MessageEmbeddings(customer_id=table["customer_id"].to_numpy(dtype=np.int64),
                             occurred_at=table["occurred_at"].to_numpy(dtype="datetime64[ns]"),
                             kind=table["kind"].to_numpy(dtype=object), text=table["text"].to_numpy(dtype=object),
                             vectors=vectors, model_id=embedder.model_id if len(table) else "")


# --- per-customer aggregates at a cutoff --------------------------------------------------------

def _direction(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit vector from b's centroid to a's, offset): projection - offset is > 0 on a's side of the midpoint."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    d = ca - cb
    d = d / max(float(np.linalg.norm(d)), 1e-12)
    return d.astype(np.float32), float(d @ (ca + cb) / 2)


@dataclass(frozen=True)
class MessageFeaturizer:
    """How messages become MESSAGE_FEATURE_NAMES: fixed tone directions, components fitted on training rows."""

    model_id: str
    tone: np.ndarray  # [hidden] unit vector, negative -> positive
    tone_offset: float
    leaving: np.ndarray  # [hidden] unit vector, staying -> leaving
    leaving_offset: float
    pca_mean: np.ndarray  # [hidden]
    components: np.ndarray  # [MESSAGE_COMPONENTS, hidden]; zero rows where training had too few messages
    n_fit_rows: int = 0
    window_days: int = WINDOW_DAYS
    # [hidden] unit vector, plain requests -> complaints; only the quoted evidence reads it (None: saved before it)
    complaint: np.ndarray | None = None
    complaint_offset: float = 0.0

    feature_names = MESSAGE_FEATURE_NAMES

    @classmethod
    def fit(cls, train: Rows, messages: MessageEmbeddings, embedder: MessageEmbedder) -> "MessageFeaturizer":
        """Tone directions from the anchors, components from the training rows' 90-day mean vectors."""
        flat = embedder.vectors([t for texts in ANCHORS.values() for t in texts])  # one encoder call at most
        bounds = np.cumsum([0, *(len(texts) for texts in ANCHORS.values())])
        anchors = {name: flat[bounds[i]:bounds[i + 1]] for i, name in enumerate(ANCHORS)}
        tone, tone_offset = _direction(anchors["positive"], anchors["negative"])
        leaving, leaving_offset = _direction(anchors["leaving"], anchors["staying"])
        complaint, complaint_offset = _direction(anchors["negative"], anchors["request"])
        hidden = tone.shape[0]
        means = []
        for as_of, index in _by_cutoff(train):
            agg = _aggregate(messages, train.customer_ids[index], as_of, window_days=WINDOW_DAYS)
            means.append(agg["mean"][agg["count_w"] > 0])
        x = np.concatenate(means) if means else np.zeros((0, hidden), np.float32)
        pca_mean = x.mean(axis=0) if len(x) else np.zeros(hidden, np.float32)
        components = np.zeros((MESSAGE_COMPONENTS, hidden), dtype=np.float32)
        if len(x) > 1:
            _, sv, vt = np.linalg.svd(x - pca_mean, full_matrices=False)
            # Directions without variance (a shop with a handful of distinct messages) stay zero: scaled to
            # unit variance by a family they would be rounding noise.
            k = int(min(MESSAGE_COMPONENTS, (sv > max(1e-3 * sv[0], 1e-6)).sum()))
            top = vt[:k]
            # A fixed sign per component (its largest loading positive), so a refit gives the same columns.
            signs = np.sign(top[np.arange(k), np.abs(top).argmax(axis=1)])
            components[:k] = top * np.where(signs == 0, 1.0, signs)[:, None]
        return cls(model_id=messages.model_id or embedder.model_id, tone=tone, tone_offset=tone_offset,
                   leaving=leaving, leaving_offset=leaving_offset, pca_mean=pca_mean.astype(np.float32),
                   components=components, n_fit_rows=int(len(x)), complaint=complaint,
                   complaint_offset=complaint_offset)

    def features(self, messages: MessageEmbeddings, customer_ids: np.ndarray, as_of
                 ) -> tuple[np.ndarray, pd.DataFrame]:
        """(float32 [n, len(MESSAGE_FEATURE_NAMES)], evidence) for customers at one cutoff.

        Only messages from strictly before as_of are read. The evidence frame (index: customer
        ids) holds the most negative complaint of the window (text, date, kind, tone) for reasons:
        a message nearer the complaint anchors than the plain-request ones (any message, for a
        featurizer saved before the request anchors existed).
        """
        if len(messages) and messages.model_id and messages.model_id != self.model_id:
            raise MlError(f"message vectors of encoder {messages.model_id} given to features of encoder {self.model_id}")
        as_of = _timestamp(as_of)
        ids = np.asarray(customer_ids, dtype=np.int64)
        n = len(ids)
        agg = _aggregate(messages, ids, as_of, window_days=self.window_days)
        f = np.zeros((n, len(MESSAGE_FEATURE_NAMES)), dtype=np.float64)
        col = {name: j for j, name in enumerate(MESSAGE_FEATURE_NAMES)}
        f[:, col["msg_count_90"]], f[:, col["msg_count_365"]] = agg["count_w"], agg["count_long"]
        f[:, col["msg_days_since_last"]] = agg["last_age"]
        evidence = pd.DataFrame({"message_text": pd.Series(None, index=ids, dtype=object),
                                 "message_at": pd.Series(pd.NaT, index=ids, dtype="datetime64[ns]"),
                                 "message_kind": pd.Series(None, index=ids, dtype=object),
                                 "message_tone": pd.Series(np.nan, index=ids, dtype=np.float64)})
        sel = agg["selected"]
        if sel is None:
            return f.astype(np.float32), evidence
        codes, age, vec = agg["codes"], agg["age"], messages.vectors[sel].astype(np.float32)
        tone = vec @ self.tone - self.tone_offset
        leaving = vec @ self.leaving - self.leaving_offset
        in_w = age < self.window_days
        has = agg["count_w"] > 0
        tone_sum = np.bincount(codes[in_w], weights=tone[in_w], minlength=n)
        f[:, col["msg_tone_mean_90"]] = np.divide(tone_sum, agg["count_w"], out=np.zeros(n), where=has)
        worst = np.full(n, np.inf)
        np.minimum.at(worst, codes[in_w], tone[in_w])
        f[:, col["msg_tone_min_90"]] = np.where(has, worst, 0.0)
        most_leaving = np.full(n, -np.inf)
        np.maximum.at(most_leaving, codes[in_w], leaving[in_w])
        f[:, col["msg_leaving_max_90"]] = np.where(has, most_leaving, 0.0)
        # Messages are sorted by customer and time, so a customer's last selected one is the latest.
        last = np.full(n, -1)
        np.maximum.at(last, codes, np.arange(len(codes)))
        wrote = last >= 0
        f[wrote, col["msg_tone_last"]] = tone[last[wrote]]
        pcs = (agg["mean"][has] - self.pca_mean) @ self.components.T
        f[np.ix_(np.flatnonzero(has), [col[f"msg_pc_{i}"] for i in range(1, MESSAGE_COMPONENTS + 1)])] = pcs
        # Evidence: the most negative complaint of the window (first of equals: the earliest). On the tone
        # direction alone routine questions to support sit on the negative side; they are not quoted.
        quotable = in_w if self.complaint is None else in_w & (vec @ self.complaint > self.complaint_offset)
        pos = np.flatnonzero(quotable)
        order = pos[np.lexsort((pos, tone[pos]))]
        first = pd.Series(order).groupby(codes[order]).first()
        rows, picked = first.index.to_numpy(), first.to_numpy()
        sel_index = np.flatnonzero(sel)[picked]
        evidence.iloc[rows, 0] = messages.text[sel_index]
        evidence.iloc[rows, 1] = messages.occurred_at[sel_index]
        evidence.iloc[rows, 2] = messages.kind[sel_index]
        evidence.iloc[rows, 3] = tone[picked]
        return f.astype(np.float32), evidence

    def add_to(self, rows: Rows, messages: MessageEmbeddings) -> Rows:
        """`rows` with MESSAGE_FEATURE_NAMES appended (replaced if present), each row at its own cutoff."""
        values = np.zeros((len(rows), len(MESSAGE_FEATURE_NAMES)), dtype=np.float32)
        for as_of, index in _by_cutoff(rows):
            values[index] = self.features(messages, rows.customer_ids[index], as_of)[0]
        return with_columns(rows, MESSAGE_FEATURE_NAMES, values)

    def to_dict(self) -> dict:
        return {"format": FEATURIZER_FORMAT, "model_id": self.model_id, "window_days": self.window_days,
                "n_fit_rows": self.n_fit_rows, "feature_names": list(MESSAGE_FEATURE_NAMES),
                "anchors": {k: list(v) for k, v in ANCHORS.items()},
                "tone": self.tone.tolist(), "tone_offset": self.tone_offset,
                "leaving": self.leaving.tolist(), "leaving_offset": self.leaving_offset,
                "pca_mean": self.pca_mean.tolist(), "components": self.components.tolist(),
                "complaint": None if self.complaint is None else self.complaint.tolist(),
                "complaint_offset": self.complaint_offset}

    @classmethod
    def from_dict(cls, data: dict) -> "MessageFeaturizer":
        if data.get("format") != FEATURIZER_FORMAT or tuple(data.get("feature_names") or ()) != MESSAGE_FEATURE_NAMES:
            raise ValueError(f"unsupported message features (format {data.get('format')!r}); retrain the model")
        vec = lambda key: np.asarray(data[key], dtype=np.float32)  # noqa: E731
        return cls(model_id=data["model_id"], tone=vec("tone"), tone_offset=float(data["tone_offset"]),
                   leaving=vec("leaving"), leaving_offset=float(data["leaving_offset"]), pca_mean=vec("pca_mean"),
                   components=vec("components"), n_fit_rows=int(data.get("n_fit_rows", 0)),
                   window_days=int(data["window_days"]),
                   complaint=vec("complaint") if data.get("complaint") is not None else None,
                   complaint_offset=float(data.get("complaint_offset", 0.0)))

    def save(self, folder: Path) -> None:
        (Path(folder) / FEATURIZER_FILE).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, folder: Path) -> "MessageFeaturizer | None":
        """The featurizer saved in a model folder, or None for a model trained without message features."""
        path = Path(folder) / FEATURIZER_FILE
        return cls.from_dict(json.loads(path.read_text())) if path.is_file() else None


def _by_cutoff(rows: Rows):
    """(cutoff, row positions) for each distinct as_of of `rows`."""
    as_of = np.asarray(rows.as_of, dtype="datetime64[ns]")
    for value in np.unique(as_of):
        yield pd.Timestamp(value), np.flatnonzero(as_of == value)


def _aggregate(messages: MessageEmbeddings, ids: np.ndarray, as_of: pd.Timestamp, *, window_days: int) -> dict:
    """Counts, recency and the window's mean vector per customer in `ids`, from messages strictly before as_of."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    hidden = messages.vectors.shape[1] if len(messages) else 0
    out = {"count_w": np.zeros(n), "count_long": np.zeros(n), "last_age": np.full(n, NO_MESSAGE_DAYS),
           "mean": np.zeros((n, hidden), dtype=np.float32), "selected": None, "codes": None, "age": None}
    if not len(messages) or not n:
        return out
    # Customer ids may repeat across cutoffs but not within one; map messages to row positions.
    index = pd.Index(ids)
    positions = index.get_indexer(messages.customer_id)
    sel = (positions >= 0) & (messages.occurred_at < np.datetime64(as_of))
    if not sel.any():
        return out
    codes = positions[sel]
    age = (np.datetime64(as_of) - messages.occurred_at[sel]) / np.timedelta64(1, "D")
    in_w = age < window_days
    out["count_w"] = np.bincount(codes[in_w], minlength=n).astype(np.float64)
    out["count_long"] = np.bincount(codes[age < LONG_WINDOW_DAYS], minlength=n).astype(np.float64)
    last_age = np.full(n, np.inf)
    np.minimum.at(last_age, codes, age)
    out["last_age"] = np.where(np.isfinite(last_age), last_age, NO_MESSAGE_DAYS)
    # Sums per customer as one sparse product (np.add.at over the rows took ten times as long).
    window = np.flatnonzero(sel)[in_w]
    onehot = sparse.csr_matrix((np.ones(len(window)), (codes[in_w], np.arange(len(window)))), shape=(n, len(window)))
    total = np.asarray(onehot @ messages.vectors[window].astype(np.float64))
    has = out["count_w"] > 0
    out["mean"][has] = (total[has] / out["count_w"][has, None]).astype(np.float32)
    out.update(selected=sel, codes=codes, age=age)
    return out


def with_columns(rows: Rows, names: Sequence[str], values: np.ndarray) -> Rows:
    """`rows` with columns `names` set to `values` (appended, or replacing columns of the same names)."""
    names = tuple(names)
    keep = [j for j, name in enumerate(rows.feature_names) if name not in names]
    features = np.concatenate([rows.features[:, keep], np.asarray(values, dtype=np.float32)], axis=1)
    return replace(rows, features=features.astype(np.float32),
                   feature_names=tuple(rows.feature_names[j] for j in keep) + names)


def uses_messages(feature_names: Sequence[str]) -> bool:
    return any(name in MESSAGE_FEATURE_NAMES for name in feature_names)


def message_features_fit(train: Rows, valid: Rows, messages: MessageEmbeddings, embedder: MessageEmbedder
                         ) -> tuple[Rows, Rows, MessageFeaturizer | None]:
    """Training and validation rows with the message columns, and the featurizer fitted on `train`.

    Without any message, the rows come back unchanged and the featurizer is None (no columns:
    a shop without text pays nothing and its models look exactly as before).
    """
    if not len(messages):
        return train, valid, None
    featurizer = MessageFeaturizer.fit(train, messages, embedder)
    return featurizer.add_to(train, messages), featurizer.add_to(valid, messages), featurizer


__all__ = ["MESSAGE_FEATURE_NAMES", "MESSAGE_FEATURE_DOCS", "MESSAGE_KINDS", "MemoryVectorStore", "MessageEmbedder",
           "MessageEmbeddings", "MessageEncoder", "MessageFeaturizer", "VectorStore", "encoder_id",
           "message_embeddings", "message_features_fit", "message_key", "message_normalise", "message_table",
           "uses_messages", "with_columns"]
