"""Message embeddings: cached by content, read only before the cutoff, saved with the model, free without text."""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from mlcore import dataset, registry
from mlcore.errors import MlError
from mlcore.families.bert import packaged_minilm_path
from mlcore.messages import (
    MESSAGE_FEATURE_NAMES, MemoryVectorStore, MessageEmbedder, MessageEncoder, MessageFeaturizer, message_embeddings,
    message_features_fit, message_key,
)
from mlcore.reasons import build_reasons
from mlcore.snapshot import FEATURE_NAMES, customer_snapshot, rows_for_features
from mlcore.training import train_family
from tests.mlcore.synth import synth_frames

AS_OF = pd.Timestamp("2026-06-01")


class CountingEncoder:
    """A stand-in encoder: a fixed unit vector per text, every call recorded."""

    model_id = "counting-encoder-1"

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        out = np.stack([np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=16)
                        for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _events(rows):
    frame = pd.DataFrame(rows)
    for column in ("amount", "rating"):
        if column not in frame:
            frame[column] = np.nan
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"]).dt.tz_localize("UTC")
    frame["attributes"] = [{} for _ in range(len(frame))]
    return frame


def _day(days_before: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days_before)


def _shop(extra=()):
    rows = [{"customer_id": 1, "kind": "order", "occurred_at": _day(d), "amount": 40.0} for d in (200, 120, 60)]
    rows += [{"customer_id": 1, "kind": "review", "occurred_at": _day(20), "rating": 1, "text": "Arrived broken."},
             {"customer_id": 1, "kind": "ticket", "occurred_at": _day(10), "text": "Refund  not processed "},
             {"customer_id": 1, "kind": "ticket", "occurred_at": _day(400), "text": "Where is my parcel?"},
             {"customer_id": 2, "kind": "order", "occurred_at": _day(5), "amount": 30.0},
             {"customer_id": 2, "kind": "review", "occurred_at": _day(30), "rating": 5, "text": "Lovely, thanks"},
             {"customer_id": 3, "kind": "order", "occurred_at": _day(50), "amount": 30.0}]
    return _events(rows + list(extra))


def test_a_message_seen_before_is_never_encoded_again():
    encoder, store = CountingEncoder(), MemoryVectorStore()
    first = message_embeddings(_shop(), MessageEmbedder(store=store, encoder=encoder))
    assert len(first) == 4 and len(encoder.calls) == 1
    # One call with each distinct normalised text once ("Refund  not processed " is keyed as "Refund not processed").
    assert sorted(encoder.calls[0]) == ["Arrived broken.", "Lovely, thanks", "Refund not processed", "Where is my parcel?"]
    assert message_key("Refund  not processed ") == message_key("Refund not processed")

    # The next run (a fresh embedder over the same store, as tomorrow's process) encodes nothing ...
    again = message_embeddings(_shop(), MessageEmbedder(store=store, encoder=encoder))
    assert len(encoder.calls) == 1
    np.testing.assert_array_equal(again.vectors, first.vectors)
    # ... and a day with one new message and one repeated text encodes just the new one.
    new = [{"customer_id": 2, "kind": "return", "occurred_at": _day(2), "text": "Too small"},
           {"customer_id": 3, "kind": "review", "occurred_at": _day(1), "rating": 1, "text": "Arrived broken."}]
    embedder = MessageEmbedder(store=store, encoder=encoder)
    message_embeddings(_shop(new), embedder)
    assert encoder.calls[1:] == [["Too small"]] and embedder.n_encoded == 1


def test_another_encoders_vectors_are_never_mixed_in():
    store = MemoryVectorStore()
    message_embeddings(_shop(), MessageEmbedder(store=store, encoder=CountingEncoder()))
    # A model whose features came from another encoder cannot have its new messages encoded by this one.
    with pytest.raises(MlError, match="come from encoder other-encoder.*restore that encoder or retrain"):
        message_embeddings(_shop(), MessageEmbedder(store=store, encoder=CountingEncoder(), model_id="other-encoder"))


def _featurizer(events, store=None):
    embedder = MessageEmbedder(store=store or MemoryVectorStore(), encoder=CountingEncoder())
    messages = message_embeddings(events, embedder)
    rows = dataset.snapshot_rows(customer_snapshot(events, pd.DataFrame({"customer_id": [1, 2, 3]}), AS_OF))
    return MessageFeaturizer.fit(rows, messages, embedder), messages, embedder


def test_features_read_only_messages_from_before_the_cutoff():
    featurizer, messages, _ = _featurizer(_shop())
    ids = np.array([1, 2, 3])
    values, evidence = featurizer.features(messages, ids, AS_OF)
    f = pd.DataFrame(values, index=ids, columns=MESSAGE_FEATURE_NAMES)
    assert f.loc[1, "msg_count_90"] == 2 and f.loc[1, "msg_count_365"] == 2 and f.loc[2, "msg_count_90"] == 1
    assert f.loc[1, "msg_days_since_last"] == pytest.approx(10) and f.loc[3, "msg_days_since_last"] == 999
    assert (f.loc[3].drop("msg_days_since_last") == 0).all()  # no messages: neutral zeros, no encoder output
    assert evidence.loc[1, "message_text"] in {"Arrived broken.", "Refund not processed"}

    # Messages at or after the cutoff (one exactly at it) change nothing ...
    future = [{"customer_id": c, "kind": "review", "occurred_at": AS_OF + pd.Timedelta(days=d), "rating": 1,
               "text": "I am leaving for good"} for c in (1, 2, 3) for d in (0, 3)]
    _, later = _featurizer(_shop(future))[:2]
    later_values, later_evidence = featurizer.features(later, ids, AS_OF)
    np.testing.assert_array_equal(later_values, values)
    pd.testing.assert_frame_equal(later_evidence, evidence)
    # ... while the same message a minute before the cutoff does (the test can fail).
    past = [{"customer_id": 3, "kind": "review", "occurred_at": AS_OF - pd.Timedelta(minutes=1), "rating": 1,
             "text": "I am leaving for good"}]
    _, earlier = _featurizer(_shop(past))[:2]
    assert not np.array_equal(featurizer.features(earlier, ids, AS_OF)[0], values)


def test_components_are_fitted_on_training_rows_only():
    events, customers = synth_frames(120, 420, seed=4)
    as_of = events["occurred_at"].max().tz_localize(None).normalize()
    train, valid = dataset.training_rows(events, customers, as_of=as_of, horizon_days=90)
    store = MemoryVectorStore()
    embedder = MessageEmbedder(store=store, encoder=CountingEncoder())
    base = message_embeddings(events, embedder)
    _, _, fitted = message_features_fit(train, valid, base, embedder)
    # Messages written after the last training cutoff (validation-side) leave the fit exactly as it was.
    last_train = pd.Timestamp(train.as_of.max())
    extra = _events([{"customer_id": int(c), "kind": "review", "occurred_at": last_train + pd.Timedelta(days=5),
                      "rating": 1, "text": f"complaint number {c}"} for c in valid.customer_ids[:30]])
    more = message_embeddings(pd.concat([events, extra], ignore_index=True), embedder)
    _, valid_more, refit = message_features_fit(train, valid, more, embedder)
    np.testing.assert_array_equal(refit.components, fitted.components)
    np.testing.assert_array_equal(refit.pca_mean, fitted.pca_mean)
    assert not np.array_equal(valid_more.features, message_features_fit(train, valid, base, embedder)[1].features)


def test_a_family_trained_with_message_features_saves_them_and_scores_with_them(tmp_path):
    events, customers = synth_frames(200, 420, seed=3)
    as_of = events["occurred_at"].max().tz_localize(None).normalize()
    train, valid = dataset.training_rows(events, customers, as_of=as_of, horizon_days=90)
    embedder = MessageEmbedder(store=MemoryVectorStore(), encoder=CountingEncoder())
    messages = message_embeddings(events, embedder)
    train_m, valid_m, featurizer = message_features_fit(train, valid, messages, embedder)
    assert train_m.feature_names == FEATURE_NAMES + MESSAGE_FEATURE_NAMES and len(MESSAGE_FEATURE_NAMES) <= 32
    for family in ("logreg", "lightgbm"):
        trained = train_family(family, train_m, valid_m, messages=featurizer)
        manifest = registry.save_trained(trained, tmp_path / family)
        assert "messages.json" in manifest["files"]
        schema = json.loads((tmp_path / family / "schema.json").read_text())
        assert schema["feature_names"][-len(MESSAGE_FEATURE_NAMES):] == list(MESSAGE_FEATURE_NAMES)
        loaded = registry.load_trained(tmp_path / family, manifest)
        # Scoring rebuilds the columns with the saved featurizer from the plain snapshot rows.
        scoring = loaded.messages.add_to(valid, messages)
        np.testing.assert_allclose(loaded.predict_proba(scoring), trained.predict_proba(valid_m))

    # A model trained without them still loads and scores rows that carry them (it reads its own columns).
    plain = train_family("logreg", train, valid)
    registry.save_trained(plain, tmp_path / "plain")
    old = registry.load_trained(tmp_path / "plain")
    assert old.messages is None and not (tmp_path / "plain" / "messages.json").exists()
    np.testing.assert_allclose(old.predict_proba(rows_for_features(valid_m, old.feature_names)),
                               plain.predict_proba(valid))


def test_a_shop_without_text_never_loads_the_encoder():
    events, customers = synth_frames(150, 420, seed=2, transactions_only=True)
    as_of = events["occurred_at"].max().tz_localize(None).normalize()
    train, valid = dataset.training_rows(events, customers, as_of=as_of, horizon_days=90)
    # The real encoder, lazily: it would load its weights on the first message to encode.
    encoder = MessageEncoder(str(packaged_minilm_path() or "/nonexistent"))
    embedder = MessageEmbedder(store=MemoryVectorStore(), encoder=encoder)
    messages = message_embeddings(events, embedder)
    same_train, same_valid, featurizer = message_features_fit(train, valid, messages, embedder)
    assert len(messages) == 0 and featurizer is None
    assert same_train is train and same_valid is valid  # no columns at all
    assert not encoder.loaded and encoder.n_calls == 0


def test_the_most_negative_message_becomes_a_reason_once():
    featurizer, messages, _ = _featurizer(_shop())
    events = _shop()
    snap = customer_snapshot(events, pd.DataFrame({"customer_id": [1, 2, 3]}), AS_OF)
    values, quoted = featurizer.features(messages, snap.customer_ids, AS_OF)
    names = FEATURE_NAMES + MESSAGE_FEATURE_NAMES
    features = np.c_[snap.features.to_numpy(), values]
    evidence = snap.evidence.join(quoted)
    # The fake encoder's tones mean nothing: say customer 1's worst message is a negative ticket.
    evidence.loc[1, ["message_text", "message_kind", "message_at", "message_tone"]] = [
        "Refund not processed", "ticket", _day(10), -0.3]
    evidence.loc[2, "message_tone"] = 0.2
    contributions = np.zeros(features.shape)
    contributions[0, names.index("msg_tone_min_90")] = 0.9
    contributions[1, names.index("msg_tone_min_90")] = 0.9  # pushes, but the message is not negative: no sentence
    reasons = build_reasons(feature_names=names, features=features, contributions=contributions,
                            evidence=evidence, as_of=AS_OF)
    assert reasons[0][0]["code"] == "message_tone"
    assert reasons[0][0]["text"] == "negative ticket 10 days ago: 'Refund not processed'"
    assert all(r["code"] != "message_tone" for r in reasons[1])
    # The same words already quoted by the review reason are said once, with both pushes.
    evidence.loc[1, ["message_text", "message_kind"]] = ["Arrived broken.", "review"]
    contributions[0, names.index("min_rating_90")] = 0.5
    merged = build_reasons(feature_names=names, features=features, contributions=contributions,
                           evidence=evidence, as_of=AS_OF)[0]
    assert [r["code"] for r in merged if "Arrived broken." in r["text"]] == ["bad_review"]
    assert next(r for r in merged if r["code"] == "bad_review")["weight"] == pytest.approx(1.4)


@pytest.mark.slow
def _minilm(texts, kind):
    """The packaged MiniLM's featurizer fitted on one message per customer (ids 1..n, 5 days before AS_OF)."""
    encoder = MessageEncoder(str(packaged_minilm_path()))
    embedder = MessageEmbedder(store=MemoryVectorStore(), encoder=encoder)
    events = _events([{"customer_id": i + 1, "kind": kind, "occurred_at": _day(5), "text": t}
                      for i, t in enumerate(texts)])
    messages = message_embeddings(events, embedder)
    snap = customer_snapshot(events, pd.DataFrame({"customer_id": np.arange(1, len(texts) + 1)}), AS_OF)
    return MessageFeaturizer.fit(dataset.snapshot_rows(snap), messages, embedder), messages, snap, encoder


def test_minilm_tone_directions_read_complaints_and_goodbyes():
    texts = ["The shoes arrived broken and nobody answers my emails.", "Lovely jumper, fits perfectly, thank you!",
             "Third bad order in a row, I'm done with this shop.", "Great as always, see you next month."]
    featurizer, messages, _, encoder = _minilm(texts, "review")
    f = pd.DataFrame(featurizer.features(messages, np.array([1, 2, 3, 4]), AS_OF)[0], index=texts,
                     columns=MESSAGE_FEATURE_NAMES)
    assert f["msg_tone_last"].iloc[0] < 0 < f["msg_tone_last"].iloc[1]
    assert f["msg_leaving_max_90"].iloc[2] > f["msg_leaving_max_90"].iloc[3]
    assert encoder.n_calls == 2  # the messages, then the anchor sentences: each text once


def test_a_plain_question_to_support_is_not_called_negative():
    """On the tone direction alone routine questions sit below the midpoint ("negative ticket: 'Can I
    change the delivery address?'"); a reason says negative only when the message is nearer the
    complaint anchors than the plain-request ones."""
    texts = ["Can you tell me if the blue jacket comes in a large?", "When will the trainers be back in stock?",
             "My refund still hasn't arrived after a month.", "The parcel came damaged and support ignored me."]
    featurizer, messages, snap, _ = _minilm(texts, "ticket")
    values, quoted = featurizer.features(messages, snap.customer_ids, AS_OF)
    assert (values[:, MESSAGE_FEATURE_NAMES.index("msg_tone_last")] < 0).all()  # the tone alone calls all four negative
    names = FEATURE_NAMES + MESSAGE_FEATURE_NAMES
    contributions = np.zeros((4, len(names)))
    contributions[:, names.index("msg_tone_min_90")] = 0.9
    reasons = build_reasons(feature_names=names, features=np.c_[snap.features.to_numpy(), values],
                            contributions=contributions, evidence=snap.evidence.join(quoted), as_of=AS_OF)
    said = [any(r["code"] == "message_tone" for r in row) for row in reasons]
    assert said == [False, False, True, True]
    assert quoted["message_text"].notna().tolist() == [False, False, True, True]  # only complaints are evidence
    # A featurizer saved before the request anchors existed quotes what it quoted before: every message.
    old = MessageFeaturizer.from_dict({k: v for k, v in featurizer.to_dict().items()
                                       if k not in ("complaint", "complaint_offset")})
    assert old.complaint is None and old.features(messages, snap.customer_ids, AS_OF)[1]["message_text"].notna().all()
    # The columns themselves do not depend on the request anchors.
    np.testing.assert_array_equal(old.features(messages, snap.customer_ids, AS_OF)[0], values)
