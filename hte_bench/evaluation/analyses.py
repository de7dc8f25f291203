"""The per-seed analyses in one place and one shape: ``fn(dataset, estimate, truth | None, settings) -> AnalysisResult``.

Registered by name in ``ANALYSES``: ``importance`` (permutation importance of the estimate and of the true tau
function), ``insights`` (insights.md: best linear projection for every estimator, plus its own coefficient
statement), ``truth_free`` (validation scores from observed data) and ``subgroups`` (seed notebook 003's
tables, only when the truth declares subgroups). ``run_all`` runs a selection with failures isolated: a
failing analysis leaves a note, not a failed seed. The seed's DR nuisances are fitted once, on first use,
and cached on ``settings`` (one Settings per seed), so AIPW, policy values, DRTester and the BLP share them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

import numpy as np
import pandas as pd

from hte_bench.evaluation import interpretation as _interpretation  # light: econml is imported inside

if TYPE_CHECKING:
    from hte_bench.data.base import Dataset, Truth
    from hte_bench.estimators.base import Estimate
    from hte_bench.evaluation.dr_scores import DRNuisances

log = logging.getLogger(__name__)
NAN = float("nan")


@dataclass
class AnalysisResult:
    """What an analysis produced: scalar metrics, tables (path without .csv), figures (file name), notes, texts."""

    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)  # file name under plots/ -> matplotlib Figure
    notes: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)     # file name -> text (insights.md)

    def merge(self, other: "AnalysisResult", source: str) -> None:
        """Add another result's outputs; a name produced twice keeps the later value and leaves a note."""
        for mine, theirs in ((self.metrics, other.metrics), (self.tables, other.tables),
                             (self.figures, other.figures), (self.texts, other.texts)):
            clash = sorted(set(mine) & set(theirs))
            if clash:
                self.notes.append(f"{source}: replaced earlier outputs {clash}")
            mine.update(theirs)
        self.notes.extend(other.notes)


@dataclass
class Settings:
    """Knobs of one seed's analyses, and the cache that lets them share the seed's DR nuisances."""

    seed: int
    alpha: float = 0.05
    n_folds: int = 2                 # cross-fitting folds of the DR nuisances and the R-score
    importance_repeats: int = 3      # permutations per feature
    importance_max_rows: int = 500   # test rows per permutation
    outcome_model: Any = None        # None: dr_scores.default_outcome_model(seed)
    treatment_model: Any = None      # None: dr_scores.default_treatment_model(seed)
    plots: bool = True               # draw figures
    cache_dir: Optional[str] = None  # joblib.Memory folder of the DR nuisances shared across runs (None: off)
    cache: dict = field(default_factory=dict, repr=False, compare=False)
    # Whether the seed's DR nuisances came from the on-disk cache (None: no analysis run needed them).
    nuisances_cached: Optional[bool] = field(default=None, compare=False)

    @classmethod
    def from_config(cls, cfg, seed: int, cache_dir: Optional[str] = None) -> "Settings":
        """Settings from the run config (alpha, importance_repeats, importance_max_rows, tracking.plots) and the
        cache folder the caller chose (tracking.store.cache_location: the evaluation does not know the store)."""
        from hte_bench.artifacts import seed_plots

        return cls(seed=int(seed), alpha=float(cfg.get("alpha", 0.05)),
                   importance_repeats=int(cfg.get("importance_repeats", 3)),
                   importance_max_rows=int(cfg.get("importance_max_rows", 500)),
                   plots=seed_plots(cfg, seed), cache_dir=cache_dir)


def dr_nuisances(dataset: "Dataset", settings: Settings) -> "DRNuisances":
    """The seed's DR nuisances, fitted on first use (or read from the on-disk cache) and kept on settings."""
    from hte_bench.evaluation.dr_scores import cached_dr_nuisances

    key = ("dr_nuisances", id(dataset))
    if key not in settings.cache:
        settings.cache[key], settings.nuisances_cached = cached_dr_nuisances(dataset, settings.seed, settings.n_folds,
                                                       settings.outcome_model, settings.treatment_model,
                                                       location=settings.cache_dir)
        log.debug("seed %d: DR nuisances %s", settings.seed,
                  f"read from the cache in {settings.cache_dir}" if settings.nuisances_cached else "fitted")
    return settings.cache[key]


def _effect_fn(estimate: "Estimate", what: str) -> Callable:
    if estimate.effect_fn is None:
        raise ValueError(f"{what}: the estimate carries no effect_fn (the fitted model's effect function)")
    return estimate.effect_fn


# --------------------------------------------------------------------------- the analyses


def importance(dataset: "Dataset", estimate: "Estimate", truth: Optional["Truth"], settings: Settings) -> AnalysisResult:
    """Permutation importance of tau_hat(x) and of the true tau(x) on the test split, and their agreement."""
    from hte_bench.evaluation.importance import effect_importance, importance_table
    from hte_bench.evaluation.metrics import importance_agreement

    kw = {"n_repeats": settings.importance_repeats, "max_rows": settings.importance_max_rows}
    estimated = effect_importance(_effect_fn(estimate, "importance"), dataset.X_test, settings.seed, **kw)
    true = (_true_importance(truth, dataset, settings.seed, kw)
            if truth is not None and truth.tau_fn is not None else None)
    modifiers = truth.known_modifiers() if truth is not None else None
    table = importance_table(estimated, true, modifiers, estimate.native_importance)
    out = AnalysisResult(tables={"importance": table})
    if truth is not None:
        rank_corr, top_hit = importance_agreement(estimated, true, modifiers)
        out.metrics = {"importance_rank_corr": rank_corr, "importance_top_hit": top_hit}
    if settings.plots:
        from hte_bench import plots

        out.figures["importance.png"] = plots.importance_plot(
            table[["estimated", "true"]], title="Permutation importance of tau: estimate vs truth")
    return out


_TRUE_IMPORTANCE: dict = {}


def _true_importance(truth: "Truth", dataset: "Dataset", seed: int, kw: dict) -> pd.Series:
    """Permutation importance of the true tau, once per (test sample, true effects, seed, settings) in a
    process: it depends on the data and the seed only, so a sweep's estimators share it."""
    import hashlib

    from hte_bench.evaluation.importance import effect_importance

    h = hashlib.sha256(pd.util.hash_pandas_object(dataset.X_test).to_numpy().tobytes())
    h.update(np.ascontiguousarray(truth.tau_test, dtype=float).tobytes())
    key = (h.hexdigest(), tuple(dataset.X_test.columns), seed, tuple(sorted(kw.items())))
    if key not in _TRUE_IMPORTANCE:
        if len(_TRUE_IMPORTANCE) >= 256:
            _TRUE_IMPORTANCE.clear()
        _TRUE_IMPORTANCE[key] = effect_importance(truth.tau_fn, dataset.X_test, seed, **kw)
    return _TRUE_IMPORTANCE[key].copy()


def insights(dataset: "Dataset", estimate: "Estimate", truth: Optional["Truth"], settings: Settings) -> AnalysisResult:
    """insights.md: best linear projection of grf-style DR scores (HC3) for every estimator, plus its own statement."""
    from hte_bench.evaluation import insights as I

    out = AnalysisResult()
    try:
        nuisances = dr_nuisances(dataset, settings)
        scores = nuisances.test.grf_scores(estimate.tau_hat_test)
        table = I.best_linear_projection(scores, dataset.X_test, settings.alpha, standardize=True)
        table["tau_hat_slope"] = I.estimate_slopes(estimate.tau_hat_test, dataset.X_test, table)
    except ValueError as err:  # too few units per arm, non-finite scores: say so in insights.md itself
        out.notes.append(f"insights: no best linear projection ({err})")
        out.texts["insights.md"] = I.compose(f"## Effect modifiers\n\nNo best linear projection: {err}\n",
                                             estimate.native_insights)
        return out
    source = (f"OLS of grf-style DR scores with this estimator's τ̂ on the centered, standardized features, "
              f"test split; nuisances: {nuisances.models}. The scores are doubly robust, so the intervals "
              f"describe the effect itself; the estimator's own τ̂ slope is shown beside them, without inference.")
    out.tables["best_linear_projection"] = table
    out.texts["insights.md"] = I.compose(I.describe_blp(table, settings.alpha, source), estimate.native_insights)
    if settings.plots:
        from hte_bench import plots

        out.figures["best_linear_projection.png"] = plots.blp_plot(table)
    if truth is not None and truth.modifiers_known:  # unknown modifiers: no hits, no false positives
        named = set(I.named_modifiers(table))
        features = [f for f in table.index if f != I.INTERCEPT]
        mods = [f for f in features if f in set(truth.modifiers)]
        others = [f for f in features if f not in set(truth.modifiers)]
        out.metrics = {
            "insights_true_modifiers_named": float(np.mean([f in named for f in mods])) if mods else NAN,
            "insights_non_modifiers_named": float(np.mean([f in named for f in others])) if others else NAN,
        }
    return out


def insights_skipped(estimate: "Estimate", k: int) -> str:
    """insights.md of a seed past ``analyses.seeds``: the estimator's own statement, and why no projection."""
    from hte_bench.evaluation import insights as I

    where = (f"so it runs on the first {k} seeds of the configuration (`analyses.seeds={k}`; `analyses.seeds=true` "
             "for every seed). See insights.md of those seed runs." if k else
             "and `analyses.seeds=0` turns it off on every seed (`analyses.seeds=true` or a number turns it on).")
    return I.compose(f"## Effect modifiers\n\nNo best linear projection for this seed: it fits DR nuisance models "
                     f"of its own, {where}\n", estimate.native_insights)


def truth_free(dataset: "Dataset", estimate: "Estimate", truth: Optional["Truth"], settings: Settings) -> AnalysisResult:
    """R-score, DR MSE, DRTester and DR policy values on the test split; oracle policy values when the truth is known."""
    from hte_bench.evaluation import validation

    scores = validation.truth_free(dataset, _effect_fn(estimate, "truth_free"), settings.seed, settings.n_folds,
                                   settings.outcome_model, settings.treatment_model, alpha=settings.alpha,
                                   nuisances=lambda: dr_nuisances(dataset, settings), plots=settings.plots,
                                   cache_dir=settings.cache_dir)
    out = AnalysisResult(metrics=dict(scores.metrics), notes=list(scores.notes))
    if settings.plots:
        out.figures.update(scores.figures)
    else:
        for fig in scores.figures.values():  # drawn by econml regardless; not kept
            fig.clear()
    if truth is not None:
        out.metrics.update(validation.with_truth(truth.tau_test, estimate.tau_hat_test))
    return out


def subgroups(dataset: "Dataset", estimate: "Estimate", truth: Optional["Truth"], settings: Settings) -> AnalysisResult:
    """Seed notebook 003's AIPW, balance, subgroup, decile and quartile tables; nothing unless truth declares subgroups."""
    if truth is None or not (truth.extra or {}).get("subgroups"):
        return AnalysisResult()
    from hte_bench.evaluation import subgroups as S

    report = S.analyse(dataset, truth, estimate, dr_nuisances(dataset, settings), alpha=settings.alpha)
    out = AnalysisResult(metrics=report.metrics, tables={f"subgroups/{k}": v for k, v in report.tables.items()})
    if settings.plots:
        from hte_bench import plots

        if "subgroups" in report.tables:
            out.figures["subgroups_subgroups.png"] = plots.subgroup_figure(report.tables["subgroups"])
        heatmap = dict(truth.extra.get("heatmap") or {})
        row, col = heatmap.get("row", "age"), heatmap.get("col", "education_years")
        if row in dataset.X_test.columns and col in dataset.X_test.columns:
            out.figures["subgroups_heatmap.png"] = plots.heatmap_figure(
                dataset.X_test, estimate.tau_hat_test, truth.tau_test, **heatmap)
    return out


ANALYSES: dict[str, Callable[..., AnalysisResult]] = {
    "importance": importance, "insights": insights, "truth_free": truth_free, "subgroups": subgroups}
ANALYSES["interpretation"] = _interpretation.interpretation  # CATE and policy trees (evaluation/interpretation.py)


# Analyses that fit models of their own (the DR nuisances, the R-scorer's, the interpreters' trees): about
# 1.5 s a seed at n = 1000 whatever the estimator costs, so they run on the first ``analyses.seeds`` seeds of
# a configuration; importance and the metrics against the truth run on every seed.
FITTING = ("insights", "truth_free", "subgroups", "interpretation")


def selected(cfg_analyses, all_seeds: bool = True) -> list[str]:
    """Names switched on in the config's ``analyses`` mapping (absent means on); without ``all_seeds`` (a seed
    past ``analyses.seeds``) the ones that fit models of their own are left out."""
    wanted = cfg_analyses or {}
    return [name for name in ANALYSES if bool(wanted.get(name, True)) and (all_seeds or name not in FITTING)]


def run_all(dataset: "Dataset", estimate: "Estimate", truth: Optional["Truth"], settings: Settings,
            which: Optional[Iterable[str]] = None) -> AnalysisResult:
    """Run the named analyses (all by default) in registry order; each failure becomes a note, not an exception."""
    import sys

    names = list(ANALYSES) if which is None else list(which)
    unknown = sorted(set(names) - set(ANALYSES))
    if unknown:
        raise ValueError(f"analyses: unknown {unknown}; known: {list(ANALYSES)}")
    if truth is not None and not truth.known:
        truth = None  # a Truth without tau (user data) is no truth for the analyses
    total = AnalysisResult()
    for name in (n for n in ANALYSES if n in names):
        # Only an analysis that draws imports pyplot (~1 s a worker process): none are open if it is not loaded.
        plt = sys.modules.get("matplotlib.pyplot")
        before = set(plt.get_fignums()) if plt else set()
        try:
            total.merge(ANALYSES[name](dataset, estimate, truth, settings), name)
        except Exception as err:  # degenerate data or a library's edge case: keep the seed, say what failed
            log.warning("analysis %s failed: %s: %s", name, type(err).__name__, err)
            total.notes.append(f"{name} failed: {type(err).__name__}: {err}")
        finally:
            plt = sys.modules.get("matplotlib.pyplot")
            for num in (set(plt.get_fignums()) - before) if plt else ():  # a failed analysis must not leak figures
                plt.close(num)
    return total
