"""The only package that talks to MLflow: store and URI policy, runs and resume, queries, model registry."""
from hte_bench.tracking.queries import KIND
from hte_bench.tracking.runs import Tracker
from hte_bench.tracking.store import default_uri, resolve_uri

__all__ = ["KIND", "Tracker", "default_uri", "resolve_uri"]
