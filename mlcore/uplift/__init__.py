"""The closed loop's statistics: measured retention lift and next-best action by estimated uplift."""
from mlcore.uplift.lift import (
    LiftBreakdown,
    LiftEstimate,
    retention_lift,
    retention_lift_breakdown,
    standardised_retention_lift,
)
from mlcore.uplift.next_best_action import ActionEstimate, EvidenceRule, NextBestActionModel, Recommendation

__all__ = [
    "ActionEstimate",
    "EvidenceRule",
    "LiftBreakdown",
    "LiftEstimate",
    "NextBestActionModel",
    "Recommendation",
    "retention_lift",
    "retention_lift_breakdown",
    "standardised_retention_lift",
]
