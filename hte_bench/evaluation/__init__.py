"""Evaluation: the metric registry, pure metric functions and per-seed analyses (no MLflow here)."""
