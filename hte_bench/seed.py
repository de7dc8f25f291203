"""One seed, stage by stage: data → estimator → fit → predict → metrics → analyses → artifacts (no MLflow).

Each stage is a small named function; ``evaluate_seed`` runs them in order and is the only place a seed's
failure is caught: the error names its stage and the traceback goes to the seed's files. With ``strict``
(the first seed of a job) errors of the input stages are the user's input errors and raise ConfigError.
"""
from __future__ import annotations

import hashlib
import logging
import time
import traceback
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from hte_bench import config as C
from hte_bench import errors as E
from hte_bench.errors import ConfigError

# Per-seed stages, in order. The first three read the user's input: on the first seed their errors are
# input errors (one line, nothing written); later stages fail a seed, never the configuration.
log = logging.getLogger(__name__)

SEED_STAGES = ("data", "estimator", "fit", "predict", "analyses", "metrics", "artifacts")
INPUT_STAGES = ("data", "estimator", "fit")


@dataclass
class SeedResult:
    """What one seed produced, ready for the tracker: metrics, tags and a folder of artifacts."""

    seed: int
    status: str  # "FINISHED" or "FAILED"
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifact_dir: Optional[str] = None
    dataset: Optional[dict] = None  # what the run's Dataset entry describes (dataset_spec)
    start_ms: int = 0
    end_ms: int = 0


@dataclass
class SeedContext:
    """What the stages of one seed hand each other."""

    cfg: DictConfig
    seed: int
    out: Path
    result: SeedResult
    dataset: Any = None
    truth: Any = None
    adapter: Any = None
    estimate: Any = None
    true_importance: Optional[pd.Series] = None
    analysis: Any = None
    title: str = ""  # names estimator and data condition on every figure
    strict: bool = False  # the configuration's first seed: its input problems are said once, here


def evaluate_seed(cfg: DictConfig, seed: int, workdir: str, strict: bool = False, title: str = "") -> SeedResult:
    """Run the stages of one seed without MLflow; with ``strict``, input-stage errors raise ConfigError."""
    from hte_bench.estimators.base import AdapterError, numpy_seed
    from hte_bench.evaluation import registry

    registry.load_modules(cfg.get("metric_modules"))  # a worker process registers the user's metrics too
    out = Path(workdir) / f"seed_{seed}"
    out.mkdir(parents=True, exist_ok=True)
    ctx = SeedContext(cfg=cfg, seed=seed, out=out, result=SeedResult(
        seed=seed, status="FAILED", start_ms=int(time.time() * 1000), artifact_dir=str(out)),
        title=f"{title}, seed {seed}" if title else "", strict=strict)
    for stage in SEED_STAGES:
        try:
            with numpy_seed(_stage_seed(seed, stage)):
                _STAGES[stage](ctx)
        except Exception as err:
            if E.interrupted(err):  # Ctrl-C that a library's clean-up turned into its own error: not a failed fit
                raise
            if strict and (stage in INPUT_STAGES or isinstance(err, AdapterError)) and E.is_input_error(stage, err):
                raise ConfigError(E.one_line(stage, err) + E.knobs(cfg, stage, err)) from err
            (out / "traceback.txt").write_text(f"stage: {stage}\n\n{traceback.format_exc()}")
            ctx.result.tags["error"] = E.one_line(stage, err)
            ctx.result.tags["failed_stage"] = stage  # said by the process that records it (runner.record_seeds)
            break
    else:
        ctx.result.status = "FINISHED"
    if "data_hash" in ctx.result.tags:  # the training sample passed its checks: its Dataset entry for the run
        ctx.result.dataset = dataset_spec(ctx.dataset, ctx.result.tags["data_hash"])
    ctx.result.end_ms = int(time.time() * 1000)
    return ctx.result


def _stage_seed(seed: int, stage: str) -> int:
    """numpy's global seed for one stage of one seed: from the seed and the stage's name, so a stage's draws
    do not depend on what the stages before it drew (a reused first-stage fit draws nothing)."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(stage.encode())]).generate_state(1)[0])


def preflight_inputs(cfg: DictConfig, seed: int) -> None:
    """The data and estimator stages of one seed as input checks, before the store is reached: ConfigError
    on data that cannot be fitted or an estimator that cannot be built (the draw stays cached)."""
    from hte_bench.estimators.base import numpy_seed

    ctx = SeedContext(cfg=cfg, seed=seed, out=Path("."), result=SeedResult(seed=seed, status="FAILED"))
    for stage in ("data", "estimator"):
        try:
            with numpy_seed(_stage_seed(seed, stage)):  # as evaluate_seed: the cached draw is the same one
                _STAGES[stage](ctx)
        except Exception as err:
            raise ConfigError(E.one_line(stage, err) + E.knobs(cfg, stage, err)) from err


def _stage_data(ctx: SeedContext) -> None:
    """Draw (or load) the seed's data and truth and check the training sample can be fitted."""
    ctx.dataset, ctx.truth = make_data(ctx.cfg, ctx.seed)
    check_fittable(ctx.cfg, ctx.dataset)
    ctx.result.tags["data_hash"] = data_hash(ctx.dataset)
    from hte_bench.evaluation.insights import collinear_columns

    collinear = collinear_columns(ctx.dataset.X_train)
    if collinear:  # a copied or summed column: coefficients, importance and library summaries split it arbitrarily
        ctx.result.tags["collinear_features"] = ", ".join(collinear)[:500]
        if ctx.strict:
            log.warning("data: feature(s) %s are linear combinations of the features before them: coefficients, "
                        "importance and the library's summary cannot tell them apart (insights.md leaves them out); "
                        "drop them, or list data.features", ", ".join(collinear))
    if not ctx.truth.known:
        ctx.result.tags["truth"] = "absent: no true tau, only truth-free metrics are logged"


def _stage_estimator(ctx: SeedContext) -> None:
    """Build the estimator adapter with this seed's random states."""
    from hte_bench.estimators.base import check_adapter

    ctx.adapter = make_estimator(ctx.cfg, ctx.seed)
    check_adapter(ctx.adapter, str(ctx.cfg.estimator.get("_target_")))


def _stage_fit(ctx: SeedContext) -> None:
    """Fit on the training sample only."""
    ctx.estimate = fit(ctx.adapter, ctx.dataset)
    if ctx.estimate.extra["nuisance_reused"]:
        ctx.result.tags["nuisance_reused"] = "true"  # fit_seconds then covers the final stage only


def _stage_predict(ctx: SeedContext) -> None:
    """Effects and intervals on both splits, the library's importance, summary and coefficient statement."""
    predict(ctx.adapter, ctx.dataset, float(ctx.cfg.alpha), ctx.estimate)
    ctx.result.tags.update(interval_kind=ctx.estimate.interval_kind, ate_interval_kind=ctx.estimate.ate_interval_kind)
    for key, reason in (("interval_reason", ctx.estimate.interval_reason),
                        ("ate_interval_reason", ctx.estimate.ate_interval_reason)):
        if reason:
            ctx.result.tags[key] = reason


def _stage_analyses(ctx: SeedContext) -> None:
    """Importance, insights, truth-free scores and subgroup tables; a failing analysis leaves a note."""
    from hte_bench.evaluation import analyses
    from hte_bench.tracking.store import cache_location

    settings = analyses.Settings.from_config(ctx.cfg, ctx.seed, cache_dir=cache_location(ctx.cfg))
    wanted = analyses.selected(ctx.cfg.get("analyses"))
    which = analyses.selected(ctx.cfg.get("analyses"), C.on_first_seeds(ctx.cfg, "analyses.seeds", ctx.seed))
    ctx.analysis = analyses.run_all(ctx.dataset, ctx.estimate, ctx.truth if ctx.truth.known else None, settings,
                                    which=which)
    skipped = [name for name in wanted if name not in which]
    if skipped:  # so a seed run browsed alone says why it lacks the R-score and the trees
        ctx.result.tags["analyses_skipped"] = f"{', '.join(skipped)} (past analyses.seeds={ctx.cfg.analyses.seeds})"
    if "insights" in skipped:
        ctx.analysis.texts["insights.md"] = analyses.insights_skipped(ctx.estimate, ctx.cfg.analyses.seeds)
    if settings.nuisances_cached is not None:  # counted per configuration by the runner
        ctx.result.tags["dr_nuisances_cached"] = str(settings.nuisances_cached).lower()
    if ctx.analysis.notes:
        ctx.result.tags["analysis_notes"] = " | ".join(ctx.analysis.notes)[:500]


def _stage_metrics(ctx: SeedContext) -> None:
    """Every per-seed metric of the estimate against the truth (pure functions), with the analyses' own."""
    from hte_bench.evaluation.metrics import evaluate

    imp = ctx.analysis.tables.get("importance")
    ctx.estimate.importance = None if imp is None else imp["estimated"]
    ctx.true_importance = None if imp is None or not ctx.truth.known else imp["true"]
    ctx.result.metrics = {**evaluate(ctx.truth, ctx.estimate, ctx.true_importance), **ctx.analysis.metrics}


def _stage_artifacts(ctx: SeedContext) -> None:
    """The seed's files: predictions, summary, the analyses' tables, texts and (optionally) plots."""
    from hte_bench import artifacts

    plots = artifacts.seed_plots(ctx.cfg, ctx.seed)
    artifacts.write_seed(ctx.out, ctx.dataset, ctx.truth, ctx.estimate, plots=plots, title=ctx.title)
    report = ctx.analysis
    artifacts.write_report(ctx.out, report.tables, report.figures if plots else {}, report.notes, report.texts,
                           title=ctx.title)


_STAGES = {"data": _stage_data, "estimator": _stage_estimator, "fit": _stage_fit, "predict": _stage_predict,
           "analyses": _stage_analyses, "metrics": _stage_metrics, "artifacts": _stage_artifacts}
assert tuple(_STAGES) == SEED_STAGES


# --------------------------------------------------------------------------- building blocks


_DATA_CACHE: "OrderedDict[str, tuple]" = OrderedDict()
_DATA_CACHE_SIZE = 32


def make_data(cfg: DictConfig, seed: int):
    """Instantiate the data generator for this seed and check what it returned.

    Draws are cached per process (a sweep's configurations share each seed's data): the key is the
    resolved data config and the seed, and a generator is a pure function of them.
    """
    import json

    from hydra.utils import instantiate

    from hte_bench.data.base import unpack, validate

    key = json.dumps([OmegaConf.to_container(cfg.data, resolve=True), seed], sort_keys=True, default=str)
    if key in _DATA_CACHE:
        _DATA_CACHE.move_to_end(key)
        return _DATA_CACHE[key]
    dataset, truth = unpack(instantiate(cfg.data, seed=seed))
    validate(dataset, truth)
    _DATA_CACHE[key] = (dataset, truth)
    while len(_DATA_CACHE) > _DATA_CACHE_SIZE:
        _DATA_CACHE.popitem(last=False)
    return dataset, truth


# Where estimator configs give their number of cross-fitting folds: econml's ``cv``, DoubleML's ``n_folds``,
# CausalML's R-learner ``n_fold``. Without one, 2 (econml's default ``cv``).
FOLD_KEYS = ("model.cv", "n_folds", "model.n_fold")


def check_fittable(cfg: DictConfig, dataset) -> None:
    """Refuse a training sample with fewer units per arm than ``min_units_per_arm`` or the estimator's folds need."""
    from hte_bench.data.base import DataError

    given = [(int(v), f"estimator.{k}") for k in FOLD_KEYS
             if C.is_int(v := OmegaConf.select(cfg, f"estimator.{k}", default=None))]
    folds, key = max(given, default=(2, "cv"))
    need = max(int(cfg.get("min_units_per_arm", 10)), 2 * folds)
    arms, counts = np.unique(np.asarray(dataset.T_train).ravel(), return_counts=True)
    have = dict(zip(arms.tolist(), counts.tolist()))
    if len(arms) == 2 and counts.min() >= need:
        return
    size = f"data.n={len(dataset.X_train)}" if "n" in cfg.data else f"{len(dataset.X_train)} training units"
    fewer = f" or fewer folds ({key})" if given else ""
    raise DataError(f"{size} gives {have} units per treatment arm in the training sample; hte-bench needs at "
                    f"least {need} per arm (min_units_per_arm={cfg.get('min_units_per_arm', 10)}, and 2 per "
                    f"cross-fitting fold, {key}={folds}): raise data.n{fewer}")


def make_estimator(cfg: DictConfig, seed: int):
    """Instantiate the estimator adapter (nuisance models included) with models seeded by ``seed``."""
    from hydra.utils import instantiate

    from hte_bench.estimators.econml_adapter import configure_nuisance_cache

    configure_nuisance_cache(int(cfg.get("nuisance_cache", 16)))
    return instantiate(C.seeded(cfg, "estimator", seed))


def seeded_data(cfg: DictConfig, seed: int):
    """``make_data`` as a seed's data stage draws it (numpy's global generator seeded for the stage)."""
    from hte_bench.estimators.base import numpy_seed

    with numpy_seed(_stage_seed(seed, "data")):
        return make_data(cfg, seed)


def fitted_adapter(cfg: DictConfig, seed: int, X, T, Y):
    """The configuration's adapter built, checked and fitted on (X, T, Y) as a seed's stages do it (numpy's global
    generator seeded per stage), so promotion's refit is the seed run's fit; AdapterError if it breaks the
    contract."""
    from hte_bench.estimators.base import check_adapter, numpy_seed

    with numpy_seed(_stage_seed(seed, "estimator")):
        adapter = make_estimator(cfg, seed)
    check_adapter(adapter, str(cfg.estimator.get("_target_")))
    with numpy_seed(_stage_seed(seed, "fit")):
        adapter.fit(X, T, Y)  # the adapter, not what fit returns (a user's fit may return None)
    return adapter


def predict(adapter, dataset, alpha: float, est):
    """Fill ``est`` with point effects and intervals on both splits, the ATE and the library's own reports."""
    from hte_bench.estimators.base import NoInference, check_effects

    t0 = time.perf_counter()
    est.tau_hat_train = check_effects(adapter, adapter.effect(dataset.X_train), dataset.X_train)
    est.tau_hat_test = check_effects(adapter, adapter.effect(dataset.X_test), dataset.X_test)
    for split, tau_hat in (("training", est.tau_hat_train), ("test", est.tau_hat_test)):
        bad = int(np.sum(~np.isfinite(tau_hat)))  # check_effects made it a float array
        if bad:  # else the metrics are NaN and the configuration's means quietly stand on fewer seeds
            raise ValueError(f"{type(adapter).__name__} gave {bad} of {np.size(tau_hat)} effects on the {split} "
                             f"sample as NaN or inf; a seed with undefined effects fails")
    # The ATE over the training sample as the adapter estimates it, so its interval is about this number:
    # the mean of the CATEs, except CausalForestDML's doubly robust ATE (see EconmlAdapter.ate).
    est.ate_hat = float(adapter.ate(dataset.X_train))
    try:
        est.lower_train, est.upper_train = adapter.effect_interval(dataset.X_train, alpha)
        est.lower_test, est.upper_test = adapter.effect_interval(dataset.X_test, alpha)
    except NoInference as why:
        est.interval_reason = str(why)
    try:
        est.ate_lower, est.ate_upper = adapter.ate_interval(dataset.X_train, alpha)
    except NoInference as why:
        est.ate_interval_reason = str(why)
    # What the intervals claim (vocabulary in estimators/base.py); an interval that is absent claims nothing.
    est.interval_kind = "none" if est.interval_reason else adapter.interval_kind()
    est.ate_interval_kind = "none" if est.ate_interval_reason else adapter.ate_interval_kind()
    est.predict_seconds = time.perf_counter() - t0
    est.native_importance = adapter.native_importance()
    est.summary = adapter.summary()
    # Importance and insights.md are analyses (evaluation.analyses): they need the fitted effect function
    # and the estimator's own coefficient statement, never the adapter itself.
    est.effect_fn = _KnownEffects(adapter.effect, [(dataset.X_train, est.tau_hat_train),
                                                   (dataset.X_test, est.tau_hat_test)])
    est.group_effects_fn = getattr(adapter, "group_effects", None)
    est.native_insights = adapter.insights(alpha)
    return est


class _KnownEffects:
    """adapter.effect answering the seed's two splits from the predictions already made: the analyses ask for
    tau_hat on them again (R-scorer, DRTester, interpreters), and a 1000-tree forest takes ~0.2 s a call."""

    def __init__(self, effect, known: list[tuple[pd.DataFrame, np.ndarray]]):
        self.effect, self.known = effect, known

    def __call__(self, X) -> np.ndarray:
        for frame, tau_hat in self.known:
            if X is frame or (isinstance(X, pd.DataFrame) and X.shape == frame.shape
                              and list(X.columns) == list(frame.columns) and X.dtypes.equals(frame.dtypes)
                              and np.array_equal(X.to_numpy(), frame.to_numpy())):
                return np.array(tau_hat, copy=True)
        return self.effect(X)


def fit(adapter, dataset):
    """Fit on the training sample only; an Estimate holding the fit time, to be filled by ``predict``."""
    import importlib

    from hte_bench.estimators.base import Estimate

    for module in getattr(adapter, "fit_imports", ()):
        importlib.import_module(module)
    t0 = time.perf_counter()
    adapter.fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    est = Estimate(tau_hat_train=np.array([]), tau_hat_test=np.array([]), ate_hat=float("nan"),
                   fit_seconds=time.perf_counter() - t0)
    est.extra["nuisance_reused"] = bool(getattr(adapter, "reused_nuisance_", False))
    return est


def fit_and_estimate(adapter, dataset, alpha: float):
    """Fit on the training sample and collect effects, intervals and the library's reports (tests, promotion)."""
    return predict(adapter, dataset, alpha, fit(adapter, dataset))


def dataset_spec(dataset, digest: str) -> dict:
    """The training sample as the run's MLflow Dataset entry describes it (tracking.runs.describe_dataset): columns
    X, T and Y as floats, which of them have gaps, rows, and our data hash as digest. Plain values, so a worker
    process never imports MLflow for it."""
    frame = dataset.X_train.assign(T=dataset.T_train, Y=dataset.Y_train)
    return {"digest": digest, "columns": [str(c) for c in frame.columns], "rows": len(frame),
            "gaps": frame.isna().any().tolist()}


def data_hash(dataset) -> str:
    """Hash of the observed training data, so runs on identical draws can be recognised."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(dataset.X_train, index=False).to_numpy().tobytes())
    h.update(np.asarray(dataset.T_train, dtype=float).tobytes())
    h.update(np.asarray(dataset.Y_train, dtype=float).tobytes())
    return h.hexdigest()[:16]
