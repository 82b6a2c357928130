"""The closed loop: measured lift against the control group, the funnel, next-best action (reads only)."""
