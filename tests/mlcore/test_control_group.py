"""Control-group assignment: stable per customer, unbiased whatever the keys look like, validated."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mlcore.control_group import control_group_draw, control_group_evaluation_weights, control_group_member

SALT = "control-test"


def _share_in_control(keys, share: float = 0.10, salt: str = SALT) -> float:
    return sum(control_group_member(k, share=share, salt=salt) for k in keys) / len(keys)


def _binomial_tolerance(n: int, share: float, sigmas: float = 4.0) -> float:
    return sigmas * math.sqrt(share * (1 - share) / n)


def test_membership_is_stable_for_a_customer():
    keys = [f"C{i}" for i in range(1000)]
    first = [control_group_member(k, salt=SALT) for k in keys]
    again = [control_group_member(k, salt=SALT) for k in reversed(keys)][::-1]
    assert first == again
    # A pinned value (sha256(b"control-2026\x1fcustomer-42") starts 825e89d7e2752e9d), so the
    # assignment cannot silently change between releases and reshuffle a running experiment.
    assert control_group_draw("customer-42", salt="control-2026") == pytest.approx(0x825E89D7E2752E9D / 2**64, abs=1e-15)


@pytest.mark.parametrize(
    "pattern",
    [
        lambda i: str(i),  # sequential database-like ids
        lambda i: f"{i:08d}",  # zero-padded ids
        lambda i: f"vip-{i}",  # segment prefixes
        lambda i: f"new-{i}",
        lambda i: f"shop-b/cust_{i * 7 + 3}",  # strided ids with a path-like prefix
    ],
    ids=["sequential", "zero-padded", "prefix-vip", "prefix-new", "strided"],
)
def test_share_is_unbiased_over_100k_keys(pattern):
    n = 100_000
    keys = [pattern(i) for i in range(n)]
    observed = _share_in_control(keys)
    assert abs(observed - 0.10) < _binomial_tolerance(n, 0.10), observed


def test_share_is_unbiased_within_each_block_of_sequential_ids():
    # No drift along the id sequence: early and late customers are held out alike.
    n = 100_000
    members = np.array([control_group_member(str(i), salt=SALT) for i in range(n)])
    for block in members.reshape(10, -1):
        assert abs(block.mean() - 0.10) < _binomial_tolerance(len(block), 0.10)


def test_draws_are_uniform_and_independent_of_parity():
    draws = np.array([control_group_draw(str(i), salt=SALT) for i in range(20_000)])
    counts, _ = np.histogram(draws, bins=10, range=(0, 1))
    expected = len(draws) / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # 99.9th percentile of chi-square with 9 degrees of freedom
    # Even and odd ids are held out at the same rate.
    even, odd = draws[0::2] < 0.1, draws[1::2] < 0.1
    assert abs(even.mean() - odd.mean()) < 4 * math.sqrt(2 * 0.09 / 10_000)


def test_other_shares_are_respected():
    keys = [f"C{i}" for i in range(50_000)]
    for share in (0.0, 0.02, 0.25, 0.5):
        observed = _share_in_control(keys, share=share)
        assert abs(observed - share) <= _binomial_tolerance(len(keys), share) + 1e-12, (share, observed)


def test_groups_are_nested_when_the_share_grows():
    keys = [f"C{i}" for i in range(5000)]
    small = {k for k in keys if control_group_member(k, share=0.05, salt=SALT)}
    large = {k for k in keys if control_group_member(k, share=0.10, salt=SALT)}
    assert small and small < large


def test_a_new_salt_is_a_new_randomisation():
    keys = [f"C{i}" for i in range(20_000)]
    a = np.array([control_group_member(k, salt="exp-a") for k in keys])
    b = np.array([control_group_member(k, salt="exp-b") for k in keys])
    # Independent draws: overlap close to 0.1 * 0.1, not 0.1.
    assert abs((a & b).mean() - 0.01) < 0.004


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5, float("nan"), "0.1", None, True])
def test_invalid_share_is_refused_with_a_clear_message(share):
    with pytest.raises(ValueError, match="control group share"):
        control_group_member("C1", share=share, salt=SALT)


def test_missing_salt_or_key_is_refused():
    with pytest.raises(ValueError, match="salt must be a non-empty string"):
        control_group_member("C1", salt="")
    with pytest.raises(ValueError, match="customer_key must be a non-empty string"):
        control_group_member("", salt=SALT)
    with pytest.raises(ValueError, match="customer_key must be a non-empty string"):
        control_group_member(123, salt=SALT)  # type: ignore[arg-type]


def test_evaluation_weights_recover_the_no_alert_churn_rate():
    # 20,000 customers; the riskiest 30% are alert-eligible; 10% of those are held out.
    rng = np.random.default_rng(0)
    n = 20_000
    risk = rng.beta(2, 4, n)
    eligible = risk >= np.quantile(risk, 0.7)
    control = eligible & np.array([control_group_member(f"C{i}", salt=SALT) for i in range(n)])
    churn_without_alerts = rng.random(n) < risk
    observed = churn_without_alerts & ~(eligible & ~control & (rng.random(n) < 0.4))  # alerts save 40%
    weights = control_group_evaluation_weights(eligible, control, share=0.10)
    assert set(np.unique(weights)) == {0.0, 1.0, 10.0}
    assert weights.sum() == pytest.approx(n, rel=0.03)
    weighted_rate = (weights * observed).sum() / weights.sum()
    naive_rate = observed.mean()  # mixes in the customers the alerts saved
    assert weighted_rate == pytest.approx(churn_without_alerts.mean(), abs=0.015)
    assert naive_rate < churn_without_alerts.mean() - 0.03


def test_evaluation_weights_refuse_inconsistent_input():
    with pytest.raises(ValueError, match="held-out customer must be alert-eligible"):
        control_group_evaluation_weights([False], [True], share=0.1)
    with pytest.raises(ValueError, match="one entry per row"):
        control_group_evaluation_weights([True, False], [True], share=0.1)
    with pytest.raises(ValueError, match="share of 0 there are no untreated"):
        control_group_evaluation_weights([True], [False], share=0.0)
