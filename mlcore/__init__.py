"""Churn models: snapshots, datasets, model families, training, backtests, registry, scoring.

Every module takes and returns plain data (DataFrames, arrays, dataclasses) and none touches
Django: crm_plugin loads the data, calls in, and stores what comes back.
"""
