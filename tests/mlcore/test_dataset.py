"""training_rows: time-safe cutoffs, no look at the future, clear errors when data is short."""
import numpy as np
import pandas as pd
import pytest

from mlcore.dataset import training_rows
from mlcore.errors import NotEnoughData
from mlcore.training import reads_texts
from tests.mlcore.synth import synth_frames

AS_OF = pd.Timestamp("2025-12-01", tz="UTC")


@pytest.fixture(scope="module")
def shop():
    return synth_frames(200, days=420, seed=5)


def test_every_label_window_ends_by_as_of_and_validation_is_the_latest_cutoff(shop):
    train, valid = training_rows(*shop, as_of=AS_OF, horizon_days=90, n_cutoffs=4, every_days=30)
    valid_cutoff = (AS_OF - pd.Timedelta(days=90)).tz_localize(None)
    assert set(valid.as_of) == {np.datetime64(valid_cutoff, "ns")}
    train_cutoffs = sorted(set(pd.to_datetime(train.as_of)))
    # The last training label window ends where validation's begins: one horizon between the cutoffs.
    assert len(train_cutoffs) == 3 and max(train_cutoffs) == valid_cutoff - pd.Timedelta(days=90)
    assert valid.labels is not None and train.labels is not None
    assert 0 < train.labels.mean() < 1 and 0 < valid.labels.mean() < 1


def test_events_from_as_of_on_change_no_training_row(shop):
    events, customers = shop
    train, valid = training_rows(events, customers, as_of=AS_OF, horizon_days=90)
    future = events[events["kind"] == "order"].copy()
    future["occurred_at"] = AS_OF + pd.Timedelta(hours=3)  # every customer orders again right after as_of
    train2, valid2 = training_rows(pd.concat([events, future], ignore_index=True), customers, as_of=AS_OF,
                                   horizon_days=90)
    for a, b in ((train, train2), (valid, valid2)):
        np.testing.assert_array_equal(a.customer_ids, b.customer_ids)
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.texts == b.texts


def test_too_few_customers_says_how_many_are_needed_and_how_many_there_are(shop):
    events, customers = shop
    few = events[events["customer_id"] <= 8]
    with pytest.raises(NotEnoughData, match=r"need at least 50 customers.*have \d+ customers, \d+ churners"):
        training_rows(few, customers, as_of=AS_OF, horizon_days=90)


def test_as_of_before_enough_history_names_the_data_start(shop):
    events, customers = shop
    with pytest.raises(NotEnoughData, match=r"data starts 2025-01-0\d"):
        training_rows(events, customers, as_of=pd.Timestamp("2025-03-01", tz="UTC"), horizon_days=90)


def test_no_events_at_all_is_a_clear_error(shop):
    _, customers = shop
    empty = pd.DataFrame(columns=["customer_id", "kind", "occurred_at", "amount", "quantity", "rating", "text", "attributes"])
    with pytest.raises(NotEnoughData, match="no events yet"):
        training_rows(empty, customers, as_of=AS_OF, horizon_days=90)


def test_training_rows_are_weighted_as_if_untreated(shop):
    """An alert inside a training row's label window changes what its label means: the row leaves
    training (weight 0), held-out customers stand for the alerted ones, rows outside the window are as before."""
    from mlcore.snapshot import prepare_events

    events, customers = shop
    plain_train, _ = training_rows(events, customers, as_of=AS_OF, horizon_days=60, n_cutoffs=7)
    cutoffs = sorted(set(pd.to_datetime(plain_train.as_of)))
    first = cutoffs[0]
    ids = np.unique(prepare_events(events).query("occurred_at < @first")["customer_id"])
    told, held = ids[:20], ids[20:25]
    at = (first + pd.Timedelta(days=5)).tz_localize("UTC")  # inside the first cutoff's label window only
    alerts = pd.DataFrame({"customer_id": np.r_[told, held], "alerted_at": at,
                           "status": ["sent"] * len(told) + ["held_out"] * len(held)})
    train, valid = training_rows(events, customers, as_of=AS_OF, horizon_days=60, n_cutoffs=7, alerts=alerts)
    at_first = train.as_of == np.datetime64(first, "ns")
    assert not np.isin(train.customer_ids[at_first], told).any()  # the told rows are out
    w_held = train.sample_weight[at_first & np.isin(train.customer_ids, held)]
    assert len(w_held) == len(held) and (w_held == pytest.approx(len(ids[:25]) / len(held)))
    # An alert ~5 days after the first cutoff lies in the horizon before the second (30 days later)
    # too, so only cutoffs whose [c - h, c + h) misses it keep every row at weight 1.
    untouched = pd.to_datetime(train.as_of) >= at.tz_localize(None) + pd.Timedelta(days=60)
    assert untouched.any() and (train.sample_weight[untouched] == 1).all()
    plain_untouched = pd.to_datetime(plain_train.as_of) >= at.tz_localize(None) + pd.Timedelta(days=60)
    np.testing.assert_array_equal(train.customer_ids[untouched], plain_train.customer_ids[plain_untouched])
    assert (valid.sample_weight == 1).all()


def test_validation_slices_keep_early_stopping_and_calibration_apart(shop):
    from mlcore.training import train_family, validation_slices

    train, valid = training_rows(*shop, as_of=AS_OF, horizon_days=90)
    stop, calib, split = validation_slices(valid)
    assert split and len(stop) + len(calib) == len(valid)
    assert not set(stop.customer_ids) & set(calib.customer_ids)
    again = validation_slices(valid)[1]
    np.testing.assert_array_equal(calib.customer_ids, again.customer_ids)  # the same customers every time
    trained = train_family("lightgbm", train, valid)
    np.testing.assert_array_equal(trained.valid_rows.customer_ids, calib.customer_ids)
    assert trained.valid_metrics["calibration_rows"] == len(calib) and "active_pr_auc" in trained.valid_metrics


def test_rows_without_texts_for_families_that_read_none(shop):
    train, valid = training_rows(*shop, as_of=AS_OF, horizon_days=90)
    bare_train, bare_valid = training_rows(*shop, as_of=AS_OF, horizon_days=90, texts=False)
    for full, bare in ((train, bare_train), (valid, bare_valid)):
        assert all(full.texts) and bare.texts == [None] * len(full)
        np.testing.assert_array_equal(bare.features, full.features)
        np.testing.assert_array_equal(bare.labels, full.labels)
        np.testing.assert_array_equal(bare.events, full.events)
    assert not reads_texts(["logreg", "lightgbm", "bert_events", "bert_events_pretrained", "stacked"])
    assert reads_texts(["lightgbm", "bert"]) and reads_texts(["bert_pretrained"])
