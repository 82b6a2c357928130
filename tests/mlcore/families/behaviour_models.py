"""Untrained behaviour models for tests that count passes or threads, not what a model learned."""
import numpy as np
import torch

from mlcore.families.behaviour import BehaviourBertFamily, BehaviourConfig, BehaviourModel

# A behaviour BERT small enough to run in milliseconds.
TINY = dict(layers=1, hidden=16, heads=2, max_events=16, eval_batch_size=32)


def untrained_behaviour(feature_names, *, seed: int = 0, **config) -> BehaviourBertFamily:
    """A BehaviourBertFamily with weights from `seed`, standardising nothing (mean 0, sd 1)."""
    torch.manual_seed(seed)
    family = BehaviourBertFamily(BehaviourConfig(**(TINY | config)))
    family.feature_names = tuple(feature_names)
    family.mean, family.sd = np.zeros(len(feature_names)), np.ones(len(feature_names))
    family.model = BehaviourModel(family.config, len(feature_names)).eval()
    return family
