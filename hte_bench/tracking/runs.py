"""The only module that talks to MLflow: store URI, experiment, parent and child runs, params, artifacts."""
from __future__ import annotations

import logging
import os
import random
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlparse

from hte_bench.errors import ConfigError

if TYPE_CHECKING:  # pandas is imported where tables are built
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_DIR = "mlruns"
DB_NAME = "mlflow.db"
_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "file")
_PARAM_MAX = 6000
# Tag that tells configuration (parent) runs, seed (child) runs and report runs apart in an experiment.
KIND = "hte_bench.kind"


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
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _is_locked(err: BaseException) -> bool:
    text = str(err).lower()
    return "database is locked" in text or "database table is locked" in text


class _Retrying:
    """MlflowClient proxy that retries calls SQLite rejected with "database is locked" (parallel writers).

    A locked write is rolled back whole, so retrying cannot duplicate it; backoff is jittered so that
    processes which collided once do not collide again.
    """

    def __init__(self, client, attempts: int = 12):
        self._client = client
        self._attempts = attempts

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            delay = 0.05
            for attempt in range(self._attempts):
                try:
                    return attr(*args, **kwargs)
                except Exception as err:
                    if not _is_locked(err) or attempt == self._attempts - 1:
                        raise
                    log.debug("%s: database is locked, retry %d", name, attempt + 1)
                    time.sleep(delay * (1 + random.random()))
                    delay = min(delay * 2, 2.0)

        return call


class Tracker:
    """Creates and fills runs through ``MlflowClient`` (no fluent global state, so ``MLFLOW_RUN_ID`` in the
    environment cannot re-parent runs and several processes can log side by side)."""

    def __init__(self, uri: str, experiment: str):
        from mlflow import MlflowClient

        self.uri = uri
        self.experiment = experiment
        # The model registry lives in the tracking store unless the user set MLFLOW_REGISTRY_URI.
        self.registry_uri = os.environ.get("MLFLOW_REGISTRY_URI") or uri
        self.client = _Retrying(MlflowClient(tracking_uri=uri, registry_uri=self.registry_uri))
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

    def start_sweep(self, overrides: list[str], sweeper: str, metric: str) -> str:
        """Open the run that groups every configuration of one multirun sweep."""
        run = self.client.create_run(self.experiment_id, run_name=f"sweep/{time.strftime('%Y-%m-%d_%H-%M-%S')}",
                                     tags={KIND: "sweep", "optimized_metric": metric, "host": socket.gethostname(),
                                           "pid": str(os.getpid()), **self.provenance()})
        self._batch(run.info.run_id, params={"overrides": " ".join(overrides) or "(none)", "sweeper": sweeper})
        return run.info.run_id

    def attach_to_sweep(self, parent_id: str, sweep_id: str) -> None:
        """Show a configuration run under the sweep that (re)visited it.

        The UI shows it under the last such sweep; ``swept_by.<sweep id>`` keeps every sweep that used it
        (two sweeps running at once share their configurations).
        """
        self._batch(parent_id, tags={"sweep_run_id": sweep_id, "mlflow.parentRunId": sweep_id,
                                     f"swept_by.{sweep_id}": "true"})

    def sweep_parents(self, sweep_id: str) -> list:
        """The configuration runs a sweep launched or revisited."""
        return self.search(f"tags.`{KIND}` = 'config' and tags.`swept_by.{sweep_id}` = 'true'")

    def finish_sweep(self, sweep_id: str, metric: str, loss, how: str,
                     artifact_dir: Optional[str] = None) -> Optional[dict]:
        """Tag the sweep run with its best configuration (lowest ``loss(value)`` of ``metric``), attach files, close it.

        ``how`` says in words what best means (e.g. "rscore_mean: higher is better"); returns the best.
        """
        import math

        parents = self.sweep_parents(sweep_id)
        scored = [(float(loss(p.data.metrics.get(metric, math.nan))), p) for p in parents]
        scored = [(v, p) for v, p in scored if math.isfinite(v)]
        best = None
        if scored:
            _, run = min(scored, key=lambda vp: vp[0])
            value = run.data.metrics[metric]
            label = run.info.run_name
            best = {"value": value, "parent_run_id": run.info.run_id, "label": label}
            self._batch(sweep_id, metrics={f"best_{metric}": value, "n_configs": len(parents)},
                        tags={"best_parent_run_id": run.info.run_id, "best_config": label,
                              "best_config_hash": run.data.tags.get("config_hash", ""), "direction": how})
        else:
            self._batch(sweep_id, metrics={"n_configs": len(parents)})
        if artifact_dir and any(Path(artifact_dir).iterdir()):
            self.client.log_artifacts(sweep_id, artifact_dir)
        self.client.set_terminated(sweep_id, "FINISHED")
        return best

    def find_parent(self, config_hash: str):
        """The latest configuration run with this config hash in the experiment, or None."""
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            return None
        self._experiment_id = exp.experiment_id
        runs = self.search(f"tags.`{KIND}` = 'config' and tags.config_hash = '{config_hash}'")
        return max(runs, key=lambda r: r.info.start_time) if runs else None

    def resume_state(self, parent_id: str, seeds: list[int],
                     alive=lambda seed: False) -> dict[int, dict[str, float]]:
        """Metrics of the seeds already FINISHED under a parent; children left RUNNING are marked KILLED
        unless ``alive(seed)`` (another process holds the seed's claim and is writing that child)."""
        done: dict[int, tuple[int, dict]] = {}
        for child in self.search(f"tags.`mlflow.parentRunId` = '{parent_id}'"):
            seed = int(child.data.tags.get("seed", -1))
            if child.info.status == "RUNNING":
                # A child is written in one go, so RUNNING means its process died mid-write.
                if not alive(seed):
                    self.client.set_terminated(child.info.run_id, "KILLED")
                continue
            if child.info.status == "FINISHED" and seed in seeds:
                if seed not in done or child.info.start_time > done[seed][0]:
                    done[seed] = (child.info.start_time, dict(child.data.metrics))
        return {seed: metrics for seed, (_, metrics) in sorted(done.items())}

    def reopen(self, run_id: str) -> None:
        """Mark an existing configuration run RUNNING again while missing seeds are added to it."""
        self.client.update_run(run_id, status="RUNNING")

    def end(self, run_id: str, status: str) -> None:
        """Close a run with the given status (KILLED when the job is interrupted)."""
        try:
            self.client.set_terminated(run_id, status)
        except Exception:  # the store may be what failed; the original error matters more
            log.exception("could not mark run %s %s", run_id, status)

    def ui_hint(self) -> str:
        """How to open this experiment's runs table (the 'Model training' view) in the MLflow UI."""
        view = f"#/experiments/{self.experiment_id}/runs?workflowType=machine_learning"
        if self.uri.startswith(("http://", "https://")):
            return f"open {self.uri.rstrip('/')}/{view}"
        backend = self.uri
        if backend.startswith("sqlite:///"):
            path = Path(backend.split("sqlite:///", 1)[1])
            try:
                backend = f"sqlite:///{path.relative_to(Path.cwd())}"
            except ValueError:
                pass
        return f"mlflow ui --backend-store-uri {backend}  then open http://127.0.0.1:5000/{view}"

    # ---- reading back, for the leaderboard and promotion ----

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
        if self._experiment_id is None:
            self.existing_experiment_id()
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=filter_string,
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

    def download(self, run_id: str, path: str, dst: str) -> str:
        """Copy one artifact of a run to a local folder; returns the local path."""
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file is noise
        return self.client.download_artifacts(run_id, path, dst)

    def log_report(self, run_name: str, kind: str, params: dict, tags: dict, metrics: dict,
                   artifact_dir: str) -> str:
        """A finished run holding a report (leaderboard, promotion) beside the configuration runs."""
        run = self.client.create_run(self.experiment_id, run_name=run_name,
                                     tags={KIND: kind, **tags, **self.provenance()})
        run_id = run.info.run_id
        self._batch(run_id, metrics=metrics, params=params)
        self.client.log_artifacts(run_id, artifact_dir)
        self.client.set_terminated(run_id, "FINISHED")
        return run_id

    @staticmethod
    def frame(runs) -> "pd.DataFrame":
        """Runs as a table: run_id, run_name, status, start_time, parent_id, then tags.*, params.*, metrics.*."""
        import pandas as pd

        rows = []
        for r in runs:
            row = {"run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status,
                   "start_time": r.info.start_time, "parent_id": r.data.tags.get("mlflow.parentRunId")}
            row.update({f"tags.{k}": v for k, v in r.data.tags.items() if not k.startswith("mlflow.")})
            row.update({f"params.{k}": v for k, v in r.data.params.items()})
            row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def register_model(self, name: str, adapter, X_example, alpha: float, run_name: str, params: dict,
                       tags: dict, version_tags: dict, artifact_dir: str) -> dict:
        """Log a fitted adapter as a pyfunc model in a promotion run, register it and point @champion at it.

        Returns the new version, the previous champion's version (or None) and the run id.
        """
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.models import infer_signature

        from hte_bench.compare.serving import CateModel

        model = CateModel(adapter, list(X_example.columns), alpha)
        example = X_example.head(5).astype(float)
        signature = infer_signature(example, model.predict(None, example))
        try:
            previous = self.client.get_model_version_by_alias(name, "champion").version
        except MlflowException:
            previous = None
        os.environ.pop("MLFLOW_RUN_ID", None)  # would silently attach the model to an unrelated run
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.registry_uri)
        run = self.client.create_run(self.experiment_id, run_name=run_name,
                                     tags={KIND: "promotion", **tags, **self.provenance()})
        run_id = run.info.run_id
        self._batch(run_id, params=params)
        with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
            # MLflow's input-example code compares columns with a range, which pandas 3 flags for pandas 4.
            warnings.filterwarnings("ignore", message="Operation with range is deprecated")
            info = mlflow.pyfunc.log_model(
                name="model", python_model=model, signature=signature, input_example=example,
                registered_model_name=name, code_paths=[str(Path(__file__).resolve().parents[1])],
                pip_requirements=_model_requirements())
        version = str(info.registered_model_version)
        self.client.log_artifacts(run_id, artifact_dir)
        self.client.set_terminated(run_id, "FINISHED")
        for key, value in {**version_tags, "previous_champion_version": previous or "none",
                           "promotion_run_id": run_id}.items():
            self.client.set_model_version_tag(name, version, key, str(value)[:_PARAM_MAX])
        self.client.set_registered_model_alias(name, "champion", version)
        return {"version": version, "previous": previous, "run_id": run_id, "model_uri": f"models:/{name}@champion"}


def _model_requirements() -> list[str]:
    # Pinned from this environment: MLflow's own inference would reload the model in a subprocess.
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("econml", "scikit-learn", "statsmodels", "numpy", "pandas", "scipy", "mlflow"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            pass
    return reqs
