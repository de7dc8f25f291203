"""Reading runs back from an experiment: search across pages, configuration and seed runs, tables, files."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from hte_bench.errors import ConfigError
from hte_bench.tracking.store import Retrying, sqlite_path

if TYPE_CHECKING:  # pandas is imported where tables are built
    import pandas as pd

# Tag that tells configuration (parent) runs, seed (child) runs and report runs apart in an experiment.
KIND = "hte_bench.kind"


class Queries:
    """Read access to one experiment of a store through ``MlflowClient`` (no fluent global state, so
    ``MLFLOW_RUN_ID`` in the environment cannot re-parent runs and several processes can log side by side)."""

    def __init__(self, uri: str, experiment: str):
        from mlflow import MlflowClient

        self.uri = uri
        self.experiment = experiment
        # The model registry lives in the tracking store unless the user set MLFLOW_REGISTRY_URI.
        self.registry_uri = os.environ.get("MLFLOW_REGISTRY_URI") or uri
        self.client = Retrying(MlflowClient(tracking_uri=uri, registry_uri=self.registry_uri))
        self._experiment_id: Optional[str] = None

    def experiment_names(self) -> list[str]:
        """Names of the experiments in the store."""
        return sorted(e.name for e in self.client.search_experiments(max_results=1000))

    def existing_experiment_id(self) -> str:
        """The experiment's id; ConfigError listing the available ones if it does not exist."""
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            raise ConfigError(f"experiment={self.experiment!r} does not exist in {self.uri}; available: "
                              f"{', '.join(self.experiment_names()) or '(none)'}")
        self._experiment_id = exp.experiment_id
        return exp.experiment_id

    def search(self, filter_string: str) -> list:
        """All runs of the experiment matching an MLflow filter string, across result pages."""
        experiment_id = self._experiment_id or self.existing_experiment_id()
        runs, token = [], None
        while True:
            page = self.client.search_runs([experiment_id], filter_string=filter_string,
                                           max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def config_runs(self, filter_string: str = "") -> list:
        """Finished configuration (parent) runs, optionally narrowed by a filter string."""
        base = f"tags.`{KIND}` = 'config' and attributes.status = 'FINISHED'"
        return self.search(f"{base} and {filter_string}" if filter_string else base)

    def seed_runs(self, parent_ids: list[str]) -> list:
        """Child runs of the given parents (all statuses)."""
        wanted = set(parent_ids)
        return [r for r in self.search(f"tags.`{KIND}` = 'seed'")
                if r.data.tags.get("mlflow.parentRunId") in wanted]

    def tags(self, run_id: str) -> dict[str, str]:
        """A run's tags."""
        return dict(self.client.get_run(run_id).data.tags)

    def download(self, run_id: str, path: str, dst: str) -> str:
        """Copy one artifact of a run to a local folder; returns the local path."""
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file is noise
        return self.client.download_artifacts(run_id, path, dst)

    def aggregates(self, run_id: str) -> dict:
        """Every aggregate of a configuration run (its ``aggregate.json``; the run logs only a curated set)."""
        import json
        import tempfile

        # Only a missing file (a run killed before its files were written) means "no aggregates": a store that
        # fails to answer must not leave a board ranking without the metrics it asked for. The listing says
        # which (MLflow's download reports every failure as RESOURCE_DOES_NOT_EXIST).
        if "aggregate.json" not in {a.path for a in self.client.list_artifacts(run_id)}:
            return {}
        with tempfile.TemporaryDirectory() as tmp:
            data = json.loads(Path(self.download(run_id, "aggregate.json", tmp)).read_text())
        return {k: v for k, v in data.items() if isinstance(v, (int, float)) or v is None}

    def frame(self, runs, aggregates: bool = True) -> "pd.DataFrame":
        """Runs as a table: run_id, run_name, status, start_time, parent_id, then tags.*, params.*, metrics.*.

        Configuration runs (and promotion's confirmation runs) get every aggregate of their ``aggregate.json``
        as ``metrics.*``, so a board can rank by, and show, any registered metric although the run logs only
        the headline ones.
        """
        import pandas as pd

        rows = []
        for r in runs:
            row = {"run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status,
                   "start_time": r.info.start_time, "parent_id": r.data.tags.get("mlflow.parentRunId")}
            row.update({f"tags.{k}": v for k, v in r.data.tags.items() if not k.startswith("mlflow.")})
            row.update({f"params.{k}": v for k, v in r.data.params.items()})
            row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
            rows.append(row)
        frame = pd.DataFrame(rows)
        return self.with_aggregates(frame) if aggregates else frame

    def with_aggregates(self, frame: "pd.DataFrame") -> "pd.DataFrame":
        """``frame`` (of ``frame(runs, aggregates=False)``, perhaps filtered since: each file is one download)
        with every aggregate of its FINISHED configuration and confirmation runs as ``metrics.*``."""
        import pandas as pd

        if frame.empty or f"tags.{KIND}" not in frame:
            return frame
        extra = {}
        for i, row in frame.iterrows():
            if row[f"tags.{KIND}"] in ("config", "confirmation") and row["status"] == "FINISHED":
                extra[i] = {f"metrics.{k}": (float("nan") if v is None else float(v))
                            for k, v in self.aggregates(row["run_id"]).items()
                            if not (f"metrics.{k}" in frame and pd.notna(row.get(f"metrics.{k}")))}
        if not extra:
            return frame
        more = pd.DataFrame.from_dict(extra, orient="index").reindex(frame.index)
        # Logged values stay; aggregates fill what the run did not log (one concat: no fragmented frame).
        shared = [c for c in more.columns if c in frame]
        filled = frame.copy()
        if shared:
            filled[shared] = frame[shared].combine_first(more[shared])
        return pd.concat([filled, more.drop(columns=shared)], axis=1).copy()  # copy: one block per dtype

    def ui_hint(self) -> str:
        """How to open this experiment's runs table (the 'Model training' view) in the MLflow UI."""
        view = f"#/experiments/{self._experiment_id or self.existing_experiment_id()}/runs?workflowType=machine_learning"
        if self.uri.startswith(("http://", "https://")):
            return f"open {self.uri.rstrip('/')}/{view}"
        backend, path = self.uri, sqlite_path(self.uri)
        if path is not None:
            try:  # shorter to type from here
                backend = f"sqlite:///{path.relative_to(Path.cwd())}"
            except ValueError:
                pass
        return f"mlflow ui --backend-store-uri {backend}  then open http://127.0.0.1:5000/{view}"
