"""The only module that talks to MLflow: store URI, experiment, parent and child runs, params, artifacts."""
from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

from hte_bench.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_DIR = "mlruns"
DB_NAME = "mlflow.db"
_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "file")
_PARAM_MAX = 6000


def default_uri(root: str | os.PathLike = DEFAULT_DIR) -> str:
    """SQLite database under ``mlruns/`` of the working directory (MLflow 3 refuses the bare file store)."""
    return f"sqlite:///{Path(root).resolve() / DB_NAME}"


def resolve_uri(uri: Optional[str]) -> str:
    """Tracking URI: the config's, else ``MLFLOW_TRACKING_URI``, else the local SQLite default."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def check_uri(uri: str) -> None:
    """Reject URIs MLflow cannot use, with the allowed schemes, before anything is written."""
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme not in _SCHEMES:
        raise ConfigError(f"tracking.uri={uri!r} has scheme {scheme!r}; allowed: "
                          f"{', '.join(s + '://' for s in _SCHEMES)}")
    if scheme == "sqlite":
        path = uri.split("sqlite:///", 1)[-1]
        if path and path != ":memory:" and not Path(path).parent.exists():
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ConfigError(f"tracking.uri={uri!r}: cannot create folder {Path(path).parent}: {err}")


def _artifact_root(uri: str) -> Optional[str]:
    # Keep artifacts beside a local SQLite store, as an absolute URI, so the UI finds them from any cwd.
    if uri.startswith("sqlite:///"):
        return (Path(uri.split("sqlite:///", 1)[1]).resolve().parent / "artifacts").as_uri()
    return None


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class Tracker:
    """Creates and fills runs through ``MlflowClient`` (no fluent global state, so ``MLFLOW_RUN_ID`` in the
    environment cannot re-parent runs and several processes can log side by side)."""

    def __init__(self, uri: str, experiment: str):
        import mlflow
        from mlflow import MlflowClient

        self.uri = uri
        self.experiment = experiment
        # The registry follows the tracking store unless the user set one, for promotion later.
        self.client = MlflowClient(tracking_uri=uri, registry_uri=mlflow.get_registry_uri() if
                                   os.environ.get("MLFLOW_REGISTRY_URI") else uri)
        self._experiment_id: Optional[str] = None

    @classmethod
    def from_config(cls, tracking) -> "Tracker":
        """Build from the ``tracking`` config node; reaches the store once so errors surface before any run."""
        uri = resolve_uri(tracking.get("uri"))
        check_uri(uri)
        name = tracking.get("experiment")
        if not name or not str(name).strip():
            raise ConfigError("tracking.experiment is empty; give an experiment name, e.g. hte-bench")
        tracker = cls(uri, str(name))
        try:
            # Creates/migrates a new SQLite store here, once, before any run is written.
            tracker.client.search_experiments(max_results=1)
        except Exception as err:  # MLflow raises several types for unreachable stores
            raise ConfigError(f"tracking.uri={uri!r} cannot be used: {' '.join(str(err).split())[:300]}")
        return tracker

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                try:
                    self._experiment_id = self.client.create_experiment(
                        self.experiment, artifact_location=_artifact_root(self.uri))
                except Exception:
                    # Another process created it between our lookup and create.
                    self._experiment_id = self.client.get_experiment_by_name(self.experiment).experiment_id
            else:
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    @staticmethod
    def provenance() -> dict[str, str]:
        """Package versions and the git commit of the hte-bench source, as tags."""
        from importlib.metadata import PackageNotFoundError, version

        tags = {}
        for pkg in ("hte-bench", "econml", "scikit-learn", "statsmodels", "mlflow", "numpy", "pandas",
                    "hydra-core"):
            try:
                tags[f"version.{pkg}"] = version(pkg)
            except PackageNotFoundError:
                pass
        commit = _git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        return tags

    def _batch(self, run_id: str, metrics: dict[str, float] | None = None,
               params: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        ms = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if v is not None]
        ps = [Param(k, str(v)[:_PARAM_MAX]) for k, v in (params or {}).items()]
        ts = [RunTag(k, str(v)[:_PARAM_MAX]) for k, v in (tags or {}).items()]
        # MLflow caps a batch at 1000 metrics and 100 params.
        for i in range(0, max(len(ms), len(ps), len(ts), 1), 100):
            self.client.log_batch(run_id, metrics=ms[i:i + 100], params=ps[i:i + 100], tags=ts[i:i + 100])

    def start_parent(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        """Open the run of one configuration; returns its id."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self._batch(run.info.run_id, params=params)
        return run.info.run_id

    def log_seed(self, parent_id: str, result, tags: dict[str, str]) -> str:
        """Write one finished or failed seed as a complete child run in one go."""
        run = self.client.create_run(
            self.experiment_id, start_time=result.start_ms, run_name=f"seed={result.seed}",
            tags={"mlflow.parentRunId": parent_id, "seed": str(result.seed), **tags, **result.tags})
        run_id = run.info.run_id
        self._batch(run_id, metrics=result.metrics, params={"seed": result.seed})
        if result.dataset_frame is not None:
            self._log_dataset(run_id, result.dataset_frame, name=f"{tags.get('data', 'data')}-seed{result.seed}")
        if result.artifact_dir and any(Path(result.artifact_dir).iterdir()):
            self.client.log_artifacts(run_id, result.artifact_dir)
        self.client.set_terminated(run_id, result.status, end_time=result.end_ms)
        return run_id

    def _log_dataset(self, run_id: str, frame, name: str) -> None:
        # Fills the Dataset column of the runs table: name, digest, schema of the observed training data.
        import warnings

        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        with warnings.catch_warnings():
            # MLflow's digest code calls DataFrame.all positionally, which pandas 3 flags for pandas 4.
            warnings.filterwarnings("ignore", message="Starting with pandas version 4.0")
            ds = mlflow.data.from_pandas(frame, targets="Y", name=name)
        self.client.log_inputs(run_id, [DatasetInput(ds._to_mlflow_entity(),
                                                     [InputTag(MLFLOW_DATASET_CONTEXT, "training")])])

    def finish_parent(self, parent_id: str, metrics: dict[str, float], artifact_dir: str, status: str) -> None:
        """Log the aggregate metrics and files of a configuration and close its run."""
        self._batch(parent_id, metrics={k: v for k, v in metrics.items() if not k.startswith("_")})
        self.client.log_artifacts(parent_id, artifact_dir)
        self.client.set_terminated(parent_id, status)

    def end(self, run_id: str, status: str) -> None:
        """Close a run with the given status (KILLED when the job is interrupted)."""
        try:
            self.client.set_terminated(run_id, status)
        except Exception:  # the store may be what failed; the original error matters more
            log.exception("could not mark run %s %s", run_id, status)

    def ui_hint(self) -> str:
        """How to open this experiment's runs table (the 'Model training' view) in the MLflow UI."""
        backend = self.uri
        if backend.startswith("sqlite:///"):
            path = Path(backend.split("sqlite:///", 1)[1])
            try:
                backend = f"sqlite:///{path.relative_to(Path.cwd())}"
            except ValueError:
                pass
        return (f"mlflow ui --backend-store-uri {backend}  then open "
                f"http://127.0.0.1:5000/#/experiments/{self.experiment_id}/runs?workflowType=machine_learning")
