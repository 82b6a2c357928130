"""Random, stable hold-out of alert-eligible customers, so the alerts' effect can be measured.

Membership is a pure function of (salt, customer key): the same customer is always in or
out of the control group for a given salt, whichever worker or day asks, with no table to
keep in sync. The hash spreads keys uniformly whatever they look like (sequential ids,
segment prefixes), so the held-out group is a fair random sample of the customers the
policy would alert. Groups are nested: raising `share` from 0.05 to 0.10 keeps every
customer who was already held out and adds new ones, so a comparison in progress is not
reshuffled. Changing the salt starts a fresh randomisation (a new experiment).
"""
from __future__ import annotations

import hashlib

import numpy as np

# 53 bits fit a float64 mantissa exactly, so every draw is a distinct, exact value in [0, 1).
_MANTISSA_BITS = 53


def control_group_draw(customer_key: str, *, salt: str) -> float:
    """The customer's fixed uniform draw in [0, 1) for this salt (sha256 of salt + key)."""
    _check_key_and_salt(customer_key, salt)
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    digest = hashlib.sha256(f"{salt}\x1f{customer_key}".encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") >> (64 - _MANTISSA_BITS)) / float(1 << _MANTISSA_BITS)


def control_group_member(customer_key: str, *, share: float = 0.10, salt: str) -> bool:
    """True when the customer is held out: no alert, outcome still recorded for comparison.

    `customer_key` should be the shop's stable id (`Customer.external_id`), not a database
    primary key, so a re-import does not move customers between groups.
    """
    _check_share(share)
    return control_group_draw(customer_key, salt=salt) < share


def _check_share(share: float) -> None:
    if isinstance(share, bool) or not isinstance(share, (int, float)):
        raise ValueError(f"control group share must be a number in [0, 1), got {share!r}")
    if not 0.0 <= float(share) < 1.0:
        raise ValueError(
            f"control group share must be at least 0 and below 1 (0.10 holds out 10%), got {share!r}"
        )


def _check_key_and_salt(customer_key: str, salt: str) -> None:
    if not isinstance(customer_key, str) or not customer_key:
        raise ValueError(f"customer_key must be a non-empty string (the shop's customer id), got {customer_key!r}")
    if not isinstance(salt, str) or not salt:
        raise ValueError("salt must be a non-empty string; it names the experiment (e.g. 'control-2026')")


def control_group_evaluation_weights(is_alert_eligible, is_control, *, share: float) -> np.ndarray:
    """Row weights that make untreated rows stand for the whole population under "no alerts".

    For backtests and calibration checks of the no-action risk a model should predict:
    customers the policy would not alert count once; among the would-be-alerted, only the
    held-out ones are untreated by design, so each stands for 1 / share customers; alerted
    customers get weight 0 (their outcome is what the alert made of it). Sums of weights
    estimate population counts, so a weighted churn rate is the no-alert churn rate.
    """
    _check_share(share)
    if share == 0:
        raise ValueError("with a control group share of 0 there are no untreated would-be-alerted customers to weight")
    eligible = np.asarray(is_alert_eligible, dtype=bool)
    control = np.asarray(is_control, dtype=bool)
    if eligible.shape != control.shape:
        raise ValueError(f"is_alert_eligible and is_control need one entry per row ({eligible.shape} vs {control.shape})")
    if (control & ~eligible).any():
        raise ValueError("a held-out customer must be alert-eligible (the hold-out is drawn among would-be-alerted customers)")
    return np.where(~eligible, 1.0, np.where(control, 1.0 / share, 0.0))
