"""Model families. Each implements `mlcore.families.base.ChurnModel`."""
