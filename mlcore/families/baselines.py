"""The contract's home for the numeric baselines: `logreg` and `lightgbm` (implemented in logreg.py / gbm.py)."""
from mlcore.families.gbm import LightgbmFamily
from mlcore.families.logreg import LogregFamily

__all__ = ["LightgbmFamily", "LogregFamily"]
