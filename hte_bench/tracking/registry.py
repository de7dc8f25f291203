"""Model registry: a promoted configuration becomes a registered pyfunc model behind the @champion alias."""
from __future__ import annotations

import contextlib
import logging
import os
import warnings

from hte_bench.errors import interrupted
from hte_bench.evaluation.registry import level_text
from hte_bench.tracking import notes
from hte_bench.tracking.queries import KIND
from hte_bench.tracking.store import PACKAGE_DIR, VALUE_MAX, package_version, provenance


class Registry:
    """Mixin for ``Tracker``: uses its ``client``, ``uri``, ``registry_uri``, ``experiment_id`` and ``_batch``."""

    def register_model(self, name: str, adapter, X_example, alpha: float, run_name: str, params: dict,
                       tags: dict, version_tags: dict, artifact_dir: str, packages: tuple = (),
                       code_paths: tuple = ()) -> dict:
        """Log a fitted adapter as a pyfunc model in a promotion run, register it and point @champion at it.

        ``packages`` (distributions the estimator comes from) join the pinned requirements and ``code_paths``
        (the user's modules) ship with the model, so it loads in a fresh environment. Returns the new version,
        the previous champion's version (or None) and the run id.
        """
        import mlflow
        from mlflow.exceptions import MlflowException

        from hte_bench.tracking.serving import CateModel, feature_signature

        model = CateModel(adapter, list(X_example.columns), alpha)
        try:  # what tau_lower/tau_upper claim, beside the model and in its version (a key of INTERVAL_KINDS)
            kind = adapter.interval_kind()
        except Exception:  # noqa: BLE001 — an adapter that cannot say: said as unknown, never guessed
            kind = "unknown"
        meaning = {"interval_kind": kind, "interval_level": level_text(alpha)}
        version_tags = {**version_tags, **meaning}
        example = X_example.head(5).astype(float)
        signature = feature_signature(example, model.predict(None, example))
        try:
            previous = self.client.get_model_version_by_alias(name, "champion").version
        except MlflowException:
            previous = None
        os.environ.pop("MLFLOW_RUN_ID", None)  # would silently attach the model to an unrelated run
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.registry_uri)
        run = self.client.create_run(self.experiment_id, run_name=run_name,
                                     tags={KIND: "promotion", **tags, **provenance()})
        run_id = run.info.run_id
        version = None
        try:
            self._batch(run_id, params=params)
            with mlflow.start_run(run_id=run_id), warnings.catch_warnings(), _quiet("mlflow.pyfunc"):
                # MLflow's input-example code compares columns with a range, which pandas 3 flags for pandas 4.
                warnings.filterwarnings("ignore", message="Operation with range is deprecated")
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=model, signature=signature, input_example=example,
                    registered_model_name=name, code_paths=[str(PACKAGE_DIR), *code_paths], metadata=meaning,
                    pip_requirements=_model_requirements(packages))
            version = str(info.registered_model_version)
            self.client.log_artifacts(run_id, artifact_dir)
            for key, value in {**version_tags, "previous_champion_version": previous or "none",
                               "promotion_run_id": run_id}.items():
                self.client.set_model_version_tag(name, version, key, str(value)[:VALUE_MAX])
            note = notes.version_note(name, {**version_tags, **tags}, self.experiment_id, run_id)
            self.client.update_model_version(name, version, description=note)
            self.client.set_tag(run_id, notes.NOTE, f"Promotion of version {version} of `{name}`.\n\n{note}")
            self.client.set_terminated(run_id, "FINISHED")
            # Last: once the alias has moved there is nothing left to undo.
            self.client.set_registered_model_alias(name, "champion", version)
        except BaseException as err:
            self._undo_promotion(name, version, previous, run_id, err)
            raise
        return {"version": version, "previous": previous, "run_id": run_id, "model_uri": f"models:/{name}@champion"}

    def _undo_promotion(self, name: str, version, previous, run_id: str, err: BaseException) -> None:
        """A promotion stopped before @champion moved: no half-tagged version left behind, the run ended.

        Best effort (the store may be what failed): the original error is what the user sees.
        """
        from mlflow.exceptions import MlflowException

        try:
            if version is not None:
                self.client.delete_model_version(name, version)
                if previous is None and not self.client.search_model_versions(f"name='{name}'"):
                    self.client.delete_registered_model(name)  # created by this promotion, now empty
            status = "KILLED" if interrupted(err) else "FAILED"
            self.client.set_terminated(run_id, status)
        except (MlflowException, OSError):
            pass


@contextlib.contextmanager
def _quiet(logger: str):
    """MLflow's INFO and WARNING lines of one logger off for a block: log_model's cloudpickle caution and its
    input-example validation came out on stderr in the middle of promotion's own lines (the README says the
    model is a cloudpickled object: load it only from a registry you trust)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _model_requirements(extra=()) -> list[str]:
    """The pip requirements of a registered model, pinned from this environment (MLflow's own inference would
    reload the model in a subprocess): hte-bench's fitting stack plus ``extra`` distributions."""
    pkgs = dict.fromkeys(("econml", "scikit-learn", "statsmodels", "numpy", "pandas", "scipy", "mlflow", *extra))
    return [f"{pkg}=={v}" for pkg in pkgs if (v := package_version(pkg))]
