"""The only package that talks to MLflow: store and URI policy, runs and resume, queries, model registry."""
from hte_bench.tracking.runs import KIND, Tracker, default_uri, resolve_uri

__all__ = ["KIND", "Tracker", "default_uri", "resolve_uri"]
