"""Run lifecycle: the experiment, configuration (parent) and seed (child) runs, sweep runs, resume."""
from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional

from hte_bench.errors import ConfigError
from hte_bench.tracking import notes, store
from hte_bench.tracking.queries import KIND, Queries
from hte_bench.tracking.registry import Registry

log = logging.getLogger(__name__)


def describe_dataset(spec: dict) -> dict:
    """A seed run's Dataset entry (digest, source, schema, profile) from ``seed.dataset_spec``: an all-float
    training frame with our data hash as digest."""
    import json

    # MLflow infers a schema element by element (a column is "required" when no value is missing); ours is
    # floats throughout, so a one-row frame with the same names and gaps gives the same schema, once per
    # data condition. Floats: MLflow warns that integer columns cannot hold missing values.
    key = (tuple(spec["columns"]), tuple(spec["gaps"]))
    if key not in _DESCRIBED:
        import mlflow.data
        import pandas as pd

        frame = pd.DataFrame({c: [float("nan") if gap else 0.0] for c, gap in zip(*key)})
        with warnings.catch_warnings():
            # MLflow's schema code calls DataFrame.all positionally, which pandas 3 flags for pandas 4.
            warnings.filterwarnings("ignore", message="Starting with pandas version 4.0")
            entity = mlflow.data.from_pandas(frame, targets="Y", name="", digest="-")._to_mlflow_entity()
        _DESCRIBED[key] = {"source_type": entity.source_type, "source": entity.source, "schema": entity.schema}
    # MLflow's PandasDataset profile, as it serialises it.
    profile = json.dumps({"num_rows": spec["rows"], "num_elements": spec["rows"] * len(spec["columns"])})
    return {"digest": spec["digest"], **_DESCRIBED[key], "profile": profile}


_DESCRIBED: dict = {}


class Tracker(Queries, Registry):
    """Creates and fills runs of one experiment; reading back (``Queries``) and the model registry
    (``Registry``) are mixed in rather than composed, so callers keep one object and every method name."""

    provenance = staticmethod(store.provenance)
    resume_versions = staticmethod(store.resume_versions)

    @classmethod
    def from_config(cls, tracking) -> "Tracker":
        """Build from the ``tracking`` config node; reaches the store once so errors surface before any run."""
        name = tracking.get("experiment")
        if not name or not str(name).strip():
            raise ConfigError("tracking.experiment is empty; give an experiment name, e.g. hte-bench")
        uri = store.resolve_uri(tracking.get("uri"))
        timeout = store.timeout_of(tracking)
        store.check_uri(uri, timeout)  # may create a new SQLite store's folder: the last check before it
        with store.store_errors(uri, timeout):
            tracker = cls(uri, str(name))  # creates/migrates a new SQLite store here, once
            tracker.client.search_experiments(max_results=1)
        return tracker

    @property
    def experiment_id(self) -> str:
        """The experiment's id, creating the experiment on first use."""
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                try:
                    self._experiment_id = self.client.create_experiment(
                        self.experiment, artifact_location=store.artifact_root(self.uri))
                except Exception:
                    # Another process created it between our lookup and create.
                    self._experiment_id = self.client.get_experiment_by_name(self.experiment).experiment_id
            else:
                self._experiment_id = exp.experiment_id
                if notes.NOTE in exp.tags:
                    return self._experiment_id
            # The description the UI shows above the runs table (stores made before it get it too).
            self.client.set_experiment_tag(self._experiment_id, notes.NOTE, notes.EXPERIMENT)
        return self._experiment_id

    def _batch(self, run_id: str, metrics: dict[str, float] | None = None,
               params: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        ms = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if v is not None]
        ps = [Param(k, str(v)[:store.VALUE_MAX]) for k, v in (params or {}).items()]
        ts = [RunTag(k, str(v)[:store.VALUE_MAX]) for k, v in (tags or {}).items()]
        # MLflow caps a batch at 1000 metrics and 100 params.
        for i in range(0, max(len(ms), len(ps), len(ts), 1), 100):
            self.client.log_batch(run_id, metrics=ms[i:i + 100], params=ps[i:i + 100], tags=ts[i:i + 100])

    def _new_run(self, run_name: str, tags: dict[str, str], params: dict[str, Any],
                 metrics: dict[str, float] | None = None, **kwargs) -> str:
        return self._create(run_name, tags, params, metrics, **kwargs).info.run_id

    def _create(self, run_name: str, tags: dict[str, str], params: dict[str, Any],
                metrics: dict[str, float] | None = None, **kwargs):
        """A new run with its tags, params and metrics: the Run as create_run returned it (its artifact URI)."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags, **kwargs)
        try:
            self._batch(run.info.run_id, metrics=metrics, params=params)
        except BaseException:
            # Stopped between the run and its params (Ctrl-C): a resume matches runs by their tags and would
            # have finished a configuration run without params, which can never be added; such a run is deleted.
            try:
                self.client.delete_run(run.info.run_id)
            except Exception:  # the store may be what failed; the original error matters more
                pass
            raise
        return run

    def _abandon(self, run_id: str) -> None:
        """A run whose writing stopped half-way (Ctrl-C, an upload error) ends KILLED, never left RUNNING; not
        FAILED, which says a fit failed (best effort: the store may be what failed)."""
        try:
            self.client.set_terminated(run_id, "KILLED")
        except Exception:
            pass

    def start_parent(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        """Open the run of one configuration; returns its id."""
        return self._new_run(run_name, tags, params)

    def log_seed(self, parent_id: str, result, tags: dict[str, str], alpha: float = 0.05) -> str:
        """Write one finished or failed seed as a complete child run in one go (``alpha``: its intervals' level
        is 1 - alpha, for the description)."""
        # The child's own code_version shows which seeds a resume=force join added under other code.
        name = f"{tags.get('estimator', 'seed')}/seed={result.seed}"  # the runs table names the estimator
        note = notes.seed_note(self.experiment_id, parent_id, result.seed, result.status, {**tags, **result.tags},
                               result.metrics, alpha)
        run = self._create(name, {"mlflow.parentRunId": parent_id, "seed": str(result.seed),
                                  "code_version": store.code_version(), **tags, **result.tags, notes.NOTE: note},
                           {"seed": result.seed}, result.metrics, start_time=result.start_ms)
        run_id = run.info.run_id
        try:
            if result.artifact_dir and any(Path(result.artifact_dir).iterdir()):
                self._log_files(run.info.artifact_uri, result.artifact_dir)
            if result.dataset is not None:
                self._log_dataset(run_id, result.dataset, name=f"{tags.get('data', 'data')}-seed{result.seed}")
            self.client.set_terminated(run_id, result.status, end_time=result.end_ms)
        except BaseException:  # a seed run left RUNNING stayed so when the rerun opened a new parent
            self._abandon(run_id)
            raise
        return run_id

    def _log_files(self, artifact_uri: str, local_dir: str) -> None:
        """A folder of files into a run's artifact location, as MlflowClient.log_artifacts would put them."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        # MlflowClient.log_artifacts first reads the whole run back (params, metrics, dataset inputs) for the
        # artifact URI create_run has just returned: a quarter of the cost of writing a seed run.
        get_artifact_repository(artifact_uri, tracking_uri=self.uri).log_artifacts(local_dir)

    def _log_dataset(self, run_id: str, spec: dict, name: str) -> None:
        # Fills the Dataset column of the runs table: name, digest, schema of the observed training data.
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        self.client.log_inputs(run_id, [DatasetInput(Dataset(name=name, **describe_dataset(spec)),
                                                     [InputTag(MLFLOW_DATASET_CONTEXT, "training")])])

    def finish_parent(self, parent_id: str, metrics: dict[str, float], artifact_dir: str, status: str,
                      tags: Optional[dict] = None, keep: tuple = (), per_seed=None) -> None:
        """Log a configuration's curated metrics (``notes.logged_metrics``; ``keep`` adds named aggregates),
        tags (the description among them), per-seed table and files, and close its run."""
        from hte_bench.compare.leaderboard import SELECTORS  # the sweep's selector report reads their means

        # The optimized mean with its interval (the sweep summary shows it), the selectors' means alone.
        bounds = [key for k in keep for key in notes.interval_keys(k)]
        keep = (*keep, *bounds, *(f"{s}_mean" for s in SELECTORS))
        logged = notes.logged_metrics(metrics, keep)
        # A resumed run summarised again over other seeds may no longer have a metric it logged before (an
        # analysis mean when none of the new seeds was analysed): MLflow keeps the old value, which would then
        # read as this summary's. It gets this summary's value, or NaN (not computed on these seeds).
        for key in self.client.get_run(parent_id).data.metrics.keys() - logged.keys():
            value = metrics.get(key)
            logged[key] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
                else float("nan")
        self._batch(parent_id, metrics=logged, tags=tags)
        if per_seed is not None and len(per_seed):
            self.log_table(parent_id, per_seed, "per_seed.json")
        self.client.log_artifacts(parent_id, artifact_dir)
        self.client.set_terminated(parent_id, status)

    def log_table(self, run_id: str, frame, artifact_file: str) -> None:
        """A table MLflow's Evaluation and artifact views show (missing values as empty cells)."""
        self.client.log_table(run_id, data=frame.astype(object).where(frame.notna(), None),
                              artifact_file=artifact_file)

    def log_report(self, run_name: str, kind: str, params: dict, tags: dict, metrics: dict,
                   artifact_dir: str, how: str = "") -> str:
        """A finished run holding a report (leaderboard, promotion) beside the configuration runs; ``how``:
        the board's test, correction and level in a sentence, for its description."""
        run_id = self._new_run(run_name, {KIND: kind, **tags, **self.provenance()}, params, metrics)
        try:
            board = Path(artifact_dir) / "leaderboard.csv"
            if board.is_file():
                import pandas as pd

                table = pd.read_csv(board)
                if len(table):
                    self.log_table(run_id, table, "leaderboard.json")
                    self._batch(run_id, tags={notes.NOTE: notes.board_note(
                        self.experiment_id, table, run_name, metric=params.get("metric"), how=how)})
            self.client.log_artifacts(run_id, artifact_dir)
            self.client.set_terminated(run_id, "FINISHED")
        except BaseException:
            self._abandon(run_id)
            raise
        return run_id

    # ---- sweeps ----

    def start_sweep(self, overrides: list[str], sweeper: str, metric: str, claims: str = "none") -> str:
        """Open the run that groups every configuration of one multirun sweep (``claims``: where its lease lives,
        ``claims.claims_tag``)."""
        from hte_bench.tracking.claims import CLAIMS_TAG

        return self._new_run(f"sweep/{time.strftime('%Y-%m-%d_%H-%M-%S')}",
                             {KIND: "sweep", "optimized_metric": metric, "host": socket.gethostname(),
                              "pid": str(os.getpid()), CLAIMS_TAG: claims, **self.provenance()},
                             {"overrides": " ".join(overrides) or "(none)", "sweeper": sweeper})

    def attach_to_sweep(self, parent_id: str, sweep_id: str) -> None:
        """Show a configuration run under the sweep that (re)visited it; make sure it carries the sweep's
        optimized metric.

        The UI shows it under the last such sweep; ``swept_by.<sweep id>`` keeps every sweep that used it
        (two sweeps running at once share their configurations), and ``sweep_run_ids`` lists them in order.
        """
        parent = self.client.get_run(parent_id)
        earlier = [s for s in parent.data.tags.get("sweep_run_ids", "").split(",") if s and s != sweep_id]
        metric = self.client.get_run(sweep_id).data.tags.get("optimized_metric", "")
        missing = {}
        if metric and metric not in parent.data.metrics and parent.info.status == "FINISHED":
            # A configuration finished before this sweep chose a non-headline metric: log it from its files.
            wanted = {metric, *notes.interval_keys(metric)}
            missing = {k: v for k, v in self.aggregates(parent_id).items() if k in wanted and v is not None}
        self._batch(parent_id, metrics=missing, tags={"sweep_run_id": sweep_id, "mlflow.parentRunId": sweep_id,
                                                      f"swept_by.{sweep_id}": "true",
                                                      "sweep_run_ids": ",".join([*earlier, sweep_id])[:5000]})

    def sweep_parents(self, sweep_id: str) -> list:
        """The configuration runs a sweep launched or revisited."""
        return self.search(f"tags.`{KIND}` = 'config' and tags.`swept_by.{sweep_id}` = 'true'")

    def finish_sweep(self, sweep_id: str, metric: str, loss, how: str,
                     artifact_dir: Optional[str] = None, tags: Optional[dict] = None) -> Optional[dict]:
        """Tag the sweep run with its best configuration (lowest ``loss(value, its alpha)`` of ``metric``), attach
        files, close it.

        ``how`` says in words what best means (e.g. "rscore_mean: higher is better"); returns the best. The
        description ranks the configurations per data condition (``notes.sweep_rows``) with links, the
        best's among them, which a later sweep may re-parent (tag ``best_parent_run_id`` keeps it).
        ``tags`` are added as given (the best of each data condition).
        """
        import math

        if tags:
            self._batch(sweep_id, tags=tags)

        parents = self.sweep_parents(sweep_id)
        top = notes.sweep_rows(parents, metric) if metric else []
        from hte_bench.compare.study import sweep_order

        scored = [(float(loss(p.data.metrics.get(metric, math.nan), float(p.data.params.get("alpha", 0.05)))), p)
                  for p in parents]
        scored = [(v, p) for v, p in scored if math.isfinite(v)]
        best = None
        if scored:
            _, run = min(scored, key=lambda vp: sweep_order(vp[0], vp[1].data.metrics.get("n_seeds_failed", 0)))
            value = run.data.metrics[metric]
            label = run.info.run_name
            best = {"value": value, "parent_run_id": run.info.run_id, "label": label}
            self._batch(sweep_id, metrics={f"best_{metric}": value, "n_configs": len(parents)},
                        tags={"best_parent_run_id": run.info.run_id, "best_config": label,
                              "best_config_hash": run.data.tags.get("config_hash", ""), "direction": how})
        else:
            self._batch(sweep_id, metrics={"n_configs": len(parents)})
        self._batch(sweep_id, tags={notes.NOTE: notes.sweep_note(self.experiment_id, top, metric, how,
                                                                 len(parents), best)})
        if artifact_dir and any(Path(artifact_dir).iterdir()):
            self.client.log_artifacts(sweep_id, artifact_dir)
        self.client.set_terminated(sweep_id, "FINISHED")
        return best

    # ---- resume ----

    def find_parent(self, config_hash: str, versions: Optional[Mapping[str, str]] = None) -> tuple:
        """``(run, note)``: the latest configuration run with this hash, or None.

        With ``versions`` (tag -> value, e.g. ``resume_versions()``) only a run carrying all of them
        counts; when runs with this hash exist but none matches, ``note`` names the latest one and how
        its versions differ. Without ``versions`` any run counts (resume=force) and ``note`` is None.
        """
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            return None, None
        self._experiment_id = exp.experiment_id
        runs = sorted(self.search(f"tags.`{KIND}` = 'config' and tags.config_hash = '{config_hash}'"),
                      key=lambda r: r.info.start_time, reverse=True)
        if not versions:
            return (runs[0] if runs else None), None
        same = [r for r in runs if all(r.data.tags.get(k, "") == v for k, v in versions.items())]
        if same or not runs:
            return (same[0] if same else None), None
        return None, _version_note(runs[0], versions)

    def resume_state(self, parent_id: str, seeds: list[int]) -> dict[int, dict[str, float]]:
        """Metrics of the seeds already FINISHED under a parent (the latest run of a seed counts). Runs left
        RUNNING are not touched here: shared.finished_seeds closes those whose writer is gone, after the claims."""
        done: dict[int, tuple[int, dict]] = {}
        for child in self.search(f"tags.`mlflow.parentRunId` = '{parent_id}'"):
            seed = int(child.data.tags.get("seed", -1))
            if child.info.status == "FINISHED" and seed in seeds:
                if seed not in done or child.info.start_time > done[seed][0]:
                    done[seed] = (child.info.start_time, dict(child.data.metrics))
        return {seed: metrics for seed, (_, metrics) in sorted(done.items())}

    def reopen(self, run_id: str) -> None:
        """Mark an existing configuration run RUNNING again while missing seeds are added to it."""
        self.client.update_run(run_id, status="RUNNING")

    def discard(self, run_id: str) -> None:
        """Close and delete a run that holds nothing (MLflow's soft delete: hidden everywhere, `mlflow gc`
        purges it)."""
        self.end(run_id, "FAILED")  # never left RUNNING, even in the deleted view
        self.client.delete_run(run_id)

    def end(self, run_id: str, status: str) -> None:
        """Close a run with the given status (KILLED when the job is interrupted)."""
        try:
            self.client.set_terminated(run_id, status)
        except Exception:  # the store may be what failed; the original error matters more
            log.exception("could not mark run %s %s", run_id, status)


def _version_note(run, versions: Mapping[str, str]) -> str:
    """'run <id> was fitted with code <a>/econml <b>, now code <c>/econml <d>', differing entries only."""
    differ = [k for k, v in versions.items() if run.data.tags.get(k, "") != v]

    def show(values, code: str) -> str:
        # The code by its readable version (a commit), the source hash beside it: a run logged before hashes
        # were tagged may share the commit.
        return "/".join(f"code {code or '?'} (source {values.get(k) or '?'})" if k == store.CODE_HASH
                        else f"{k.removeprefix('version.')} {values.get(k) or '?'}" for k in differ)

    return (f"run {run.info.run_id} was fitted with {show(run.data.tags, run.data.tags.get('code_version'))}, "
            f"now {show(versions, store.code_version())}")
