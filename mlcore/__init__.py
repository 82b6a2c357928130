"""Churn models: snapshots, datasets, model families, training, backtests, registry, scoring.

Core modules take and return plain data (DataFrames, arrays, dataclasses). Only
`mlcore.tasks` (and the crm_plugin glue it calls) touches Django.
"""
