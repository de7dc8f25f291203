"""The seeds loop: generate → fit → estimate → metrics for each seed, failures isolated, then aggregate."""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from hte_bench import config as C
from hte_bench.callbacks import SWEEP_ENV
from hte_bench.errors import ConfigError
from hte_bench.tracking import KIND

# Config groups whose chosen option is recorded on the parent run (tag choice.<group>), so a promoted
# configuration can select the same options again.
CHOICE = "choice."
REPLAYED_GROUPS = ("data", "estimator", "outcome_model", "treatment_model")

log = logging.getLogger(__name__)


@dataclass
class SeedResult:
    """What one seed produced, ready for the tracker: metrics, tags and a folder of artifacts."""

    seed: int
    status: str  # "FINISHED" or "FAILED"
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifact_dir: Optional[str] = None
    dataset_frame: Optional[pd.DataFrame] = None
    start_ms: int = 0
    end_ms: int = 0


_DATA_CACHE: "OrderedDict[str, tuple]" = OrderedDict()
_DATA_CACHE_SIZE = 32


def make_data(cfg: DictConfig, seed: int):
    """Instantiate the data generator for this seed and check what it returned.

    Draws are cached per process (a sweep's configurations share each seed's data): the key is the
    resolved data config and the seed, and a generator is a pure function of them.
    """
    import json

    from hydra.utils import instantiate

    from hte_bench.data.base import validate

    key = json.dumps([OmegaConf.to_container(cfg.data, resolve=True), seed], sort_keys=True, default=str)
    if key in _DATA_CACHE:
        _DATA_CACHE.move_to_end(key)
        return _DATA_CACHE[key]
    dataset, truth = instantiate(cfg.data, seed=seed)
    validate(dataset, truth)
    _DATA_CACHE[key] = (dataset, truth)
    while len(_DATA_CACHE) > _DATA_CACHE_SIZE:
        _DATA_CACHE.popitem(last=False)
    return dataset, truth


def make_estimator(cfg: DictConfig, seed: int):
    """Instantiate the estimator adapter (nuisance models included) with models seeded by ``seed``."""
    from hydra.utils import instantiate

    from hte_bench.estimators.econml_adapter import configure_nuisance_cache

    configure_nuisance_cache(int(cfg.get("nuisance_cache", 16)))
    return instantiate(C.for_seed(cfg, seed).estimator)


def fit_and_estimate(adapter, dataset, alpha: float):
    """Fit on the training sample only and collect point effects, intervals, the effect function and summaries."""
    from hte_bench.estimators.base import Estimate, NoInference

    t0 = time.perf_counter()
    adapter.fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    tau_hat_train = adapter.effect(dataset.X_train)
    # The ATE over the training sample is the mean of its CATEs (econml's ate() computes exactly this).
    est = Estimate(tau_hat_train=tau_hat_train, tau_hat_test=adapter.effect(dataset.X_test),
                   ate_hat=float(np.mean(tau_hat_train)))
    try:
        est.lower_train, est.upper_train = adapter.effect_interval(dataset.X_train, alpha)
        est.lower_test, est.upper_test = adapter.effect_interval(dataset.X_test, alpha)
    except NoInference as why:
        est.interval_reason = str(why)
    try:
        est.ate_lower, est.ate_upper = adapter.ate_interval(dataset.X_train, alpha)
    except NoInference as why:
        est.ate_interval_reason = str(why)
    est.predict_seconds = time.perf_counter() - t0
    est.fit_seconds = fit_seconds
    est.extra["nuisance_reused"] = bool(getattr(adapter, "reused_nuisance_", False))
    # Importance and insights.md are analyses (evaluation.analyses); they need the fitted effect function
    # and the estimator's own coefficient statement.
    est.effect_fn = adapter.effect
    est.native_importance = adapter.native_importance()
    est.native_insights = adapter.insights(alpha)
    est.summary = adapter.summary()
    return est


def data_hash(dataset) -> str:
    """Hash of the observed training data, so runs on identical draws can be recognised."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(dataset.X_train, index=False).to_numpy().tobytes())
    h.update(np.asarray(dataset.T_train, dtype=float).tobytes())
    h.update(np.asarray(dataset.Y_train, dtype=float).tobytes())
    return h.hexdigest()[:16]


def evaluate_seed(cfg: DictConfig, seed: int, workdir: str, strict: bool = False) -> SeedResult:
    """Run one seed end to end without MLflow; with ``strict`` input errors raise ConfigError instead."""
    from hte_bench import artifacts
    from hte_bench.data.base import DataError
    from hte_bench.evaluation import analyses
    from hte_bench.evaluation.metrics import evaluate

    start = int(time.time() * 1000)
    out = Path(workdir) / f"seed_{seed}"
    out.mkdir(parents=True, exist_ok=True)
    result = SeedResult(seed=seed, status="FAILED", start_ms=start, artifact_dir=str(out))
    stage = "data"
    try:
        dataset, truth = make_data(cfg, seed)
        result.tags["data_hash"] = data_hash(dataset)
        # Floats throughout: MLflow warns that integer columns cannot hold missing values.
        result.dataset_frame = dataset.X_train.assign(T=dataset.T_train, Y=dataset.Y_train).astype(float)
        stage = "estimator"
        adapter = make_estimator(cfg, seed)
        stage = "fit"
        est = fit_and_estimate(adapter, dataset, float(cfg.alpha))
        # Analyses (importance, insights, truth-free scores, subgroups) isolate their own failures as notes.
        stage = "analyses"
        settings = analyses.Settings.from_config(cfg, seed)
        report = analyses.run_all(dataset, est, truth if truth.known else None, settings,
                                  which=analyses.selected(cfg.get("analyses")))
        # Until artifacts.write_seed stops writing importance.csv/png and insights.md itself, it is fed
        # from the analyses' outputs (which then are not written twice).
        imp = report.tables.pop("importance", None)
        report.figures.pop("importance.png", None)
        est.importance = imp["estimated"] if imp is not None else pd.Series(np.nan, index=dataset.feature_names)
        true_imp = None if imp is None or not truth.known else imp["true"]
        est.insights = report.texts.get("insights.md")
        result.metrics = {**evaluate(truth, est, true_imp), **report.metrics}
        if not truth.known:
            result.tags["truth"] = "absent: no true tau, only truth-free metrics are logged"
        if est.extra["nuisance_reused"]:
            result.tags["nuisance_reused"] = "true"  # fit_seconds then covers the final stage only
        for key, reason in (("interval_reason", est.interval_reason),
                            ("ate_interval_reason", est.ate_interval_reason)):
            if reason:
                result.tags[key] = reason
        if report.notes:
            result.tags["analysis_notes"] = " | ".join(report.notes)[:500]
        plots = bool(cfg.tracking.plots)
        artifacts.write_seed(out, dataset, truth, est, true_imp, plots=plots)
        artifacts.write_report(out, report.tables, report.figures if plots else {}, report.notes)
        result.status = "FINISHED"
    except Exception as err:
        if strict and (stage in ("data", "estimator") or isinstance(err, DataError) or _is_parameter_error(err)):
            raise ConfigError(_one_line(stage, err)) from err
        (out / "traceback.txt").write_text(traceback.format_exc())
        result.tags["error"] = _one_line(stage, err)
        log.warning("seed %d failed: %s", seed, result.tags["error"])
    result.end_ms = int(time.time() * 1000)
    return result


def _is_parameter_error(err: BaseException) -> bool:
    # sklearn's InvalidParameterError and econml's argument checks are ValueError/TypeError raised at fit.
    return isinstance(err, (ValueError, TypeError))


def _one_line(stage: str, err: BaseException) -> str:
    cause = err.__cause__ or err
    text = " ".join(str(cause).split()) or type(cause).__name__
    where = {"data": "data", "estimator": "estimator", "fit": "estimator (first seed's fit)",
             "analyses": "analyses"}[stage]
    return f"{where}: {type(cause).__name__}: {text}"[:500]


def run(cfg: DictConfig, choices: Optional[dict[str, str]] = None, job_log: Optional[str] = None) -> dict:
    """Fit one configuration over its seeds, log parent and child runs, return the aggregate metrics.

    With ``resume`` (default) a configuration already in the experiment continues in its parent run:
    seeds with a FINISHED child are not refitted, children left RUNNING by a killed process become
    KILLED and their seeds are redone.
    """
    from hte_bench.tracking import Tracker

    C.validate(cfg)
    choices = choices or {}
    tracker = Tracker.from_config(cfg.tracking)
    seeds = C.seeds_of(cfg)
    data_name = choices.get("data") or str(cfg.data._target_).rsplit(".", 2)[-2]
    est_name = choices.get("estimator") or str(cfg.estimator._target_).rsplit(".", 1)[-1]
    chash = C.config_hash(cfg)
    label = f"{data_name}/{est_name} [{chash}]"
    previous = tracker.find_parent(chash) if cfg.get("resume", True) else None
    done = tracker.resume_state(previous.info.run_id, seeds) if previous else {}
    todo = [s for s in seeds if s not in done]
    sweep_id = os.environ.get(SWEEP_ENV)
    if previous and not todo and previous.info.status == "FINISHED":
        if sweep_id:
            tracker.attach_to_sweep(previous.info.run_id, sweep_id)
        log.info("%s: all %d seeds already finished in run %s (resume=false to refit)", label, len(seeds),
                 previous.info.run_id)
        return {**previous.data.metrics, "_parent_run_id": previous.info.run_id}
    run_tags = {"data": data_name, "estimator": est_name, "config_hash": chash}
    with tempfile.TemporaryDirectory(prefix="hte-bench-") as workdir:
        # The first seed to fit is checked strictly before any run is opened or reopened: bad input
        # fails here with nothing written to the store.
        pending = _evaluate(cfg, todo, workdir)
        first = next(pending, None)
        if previous:
            parent = previous.info.run_id
            tracker.reopen(parent)
        else:
            parent = tracker.start_parent(
                run_name=f"{data_name}/{est_name}/{chash[:6]}", params=C.flatten(cfg),
                tags={**run_tags, KIND: "config", "n_seeds": str(len(seeds)), **tracker.provenance(),
                      **({"truth": first.tags["truth"]} if first is not None and "truth" in first.tags else {}),
                      **{f"{CHOICE}{g}": v for g, v in choices.items() if g in REPLAYED_GROUPS}})
        if sweep_id:
            tracker.attach_to_sweep(parent, sweep_id)
        try:
            results = []
            if first is not None:
                from itertools import chain

                from tqdm import tqdm

                for result in tqdm(chain([first], pending), total=len(todo), desc=label, unit="seed",
                                   leave=False, disable=len(todo) < 2):
                    results.append(result)
                    tracker.log_seed(parent, result, tags={**run_tags, KIND: "seed"})
            summary = _finish(cfg, tracker, parent, done, results, workdir, job_log)
        except BaseException:
            tracker.end(parent, "KILLED")
            raise
    resumed = f" (resumed: {len(done)} seeds reused)" if done else ""
    log.info("%s: %s%s", label, _one_line_summary(summary), resumed)
    if not sweep_id:  # a sweep prints this once, at its end
        log.info("browse: %s", tracker.ui_hint())
    return summary


def _evaluate(cfg: DictConfig, seeds: list[int], workdir: str):
    """Yield SeedResults in seed order, serially or in n_jobs processes; the first seed is strict."""
    n_jobs = int(cfg.n_jobs)
    if n_jobs == 1 or len(seeds) < 2:
        for i, seed in enumerate(seeds):
            yield evaluate_seed(cfg, seed, workdir, strict=i == 0)
        return
    from joblib import Parallel, delayed

    # All seeds go to the pool at once; results come back in order, so a strict failure of the first
    # seed still surfaces before the parent run is opened.
    yield from Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(evaluate_seed)(cfg, seed, workdir, i == 0) for i, seed in enumerate(seeds))


def _finish(cfg, tracker, parent, done: dict[int, dict], results, workdir, job_log) -> dict:
    """Aggregate reused and new seeds, write the parent's files and close it."""
    from hte_bench import artifacts
    from hte_bench.evaluation.metrics import aggregate

    ok = [r for r in results if r.status == "FINISHED"]
    rows = [{"seed": s, **m} for s, m in done.items()]
    rows += [{"seed": r.seed, **r.metrics} for r in ok]
    per_seed = pd.DataFrame(rows).sort_values("seed").reset_index(drop=True) if rows else pd.DataFrame()
    summary = aggregate(per_seed.drop(columns="seed", errors="ignore"), n_failed=len(results) - len(ok),
                        alpha=float(cfg.alpha))
    parent_dir = Path(workdir) / "parent"
    failed = [r.seed for r in results if r.status != "FINISHED"]
    artifacts.write_parent(parent_dir, cfg, per_seed, summary, failed=failed, job_log=job_log,
                           plots=bool(cfg.tracking.plots))
    status = "FINISHED" if rows else "FAILED"
    tracker.finish_parent(parent, summary, str(parent_dir), status)
    summary["_parent_run_id"] = parent
    return summary


def _one_line_summary(summary: dict) -> str:
    def f(key: str) -> str:
        v = summary.get(key, float("nan"))
        return "nan" if v is None or not np.isfinite(v) else f"{v:.4g}"

    seeds = f"seeds ok {int(summary.get('n_seeds_ok', 0))}, failed {int(summary.get('n_seeds_failed', 0))}"
    if "ate_true_mean" not in summary:
        return f"{seeds}; no true tau: ATE estimate {f('ate_hat_mean')} (truth metrics absent)"
    return (f"{seeds}; √PEHE test {f('cate_rmse_test_mean')}, ATE bias {f('ate_bias_mean')}, "
            f"ATE coverage {f('ate_coverage_rate')}, CATE coverage test {f('cate_coverage_test_mean')}")
