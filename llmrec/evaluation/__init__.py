"""Evaluation: offline metrics, classical baselines, ``evaluate`` and its reports."""
