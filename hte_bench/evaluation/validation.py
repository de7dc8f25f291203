"""Truth-free validation of a fitted CATE estimator on the held-out test split, and its oracle counterparts.

Real data has no true tau, so users pick and check CATE models with scores built from observed (X, T, Y)
alone: econml's R-score (``econml.score.RScorer``), a doubly robust pseudo-outcome MSE, econml's DRTester
(BLP, calibration, Qini, AUTOC) and doubly robust policy values. ``truth_free`` computes them exactly as
a user would (on the test split, never looking at the truth); ``with_truth`` computes the oracle policy
quantities from the true tau, so the harness can report how often the truth-free scores rank models the
way the truth does.

The DR scores are the seed's shared ones (``hte_bench.evaluation.dr_scores``). Every number comes from a real fit.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np
import pandas as pd

from hte_bench.evaluation.dr_scores import (DRNuisances, default_outcome_model, default_treatment_model, dr_arrays,
                                            fit_dr_nuisances, tester_class)
from hte_bench.evaluation.metrics import as_1d, is_constant

NAN = float("nan")

# Metric names in display order. ``policy_value_*`` are values relative to treating nobody, per person.
TRUTH_FREE_METRICS: tuple[str, ...] = (
    "rscore", "r_loss", "r_loss_baseline", "dr_mse", "blp_coef", "blp_se", "blp_pvalue", "cal_score", "qini",
    "qini_se", "qini_ci_lower", "qini_ci_upper", "autoc", "autoc_se", "autoc_ci_lower", "autoc_ci_upper",
    "policy_value_model", "policy_value_model_se", "policy_value_treat_all", "policy_value_treat_all_se",
    "policy_value_treat_none", "policy_gain_vs_all", "policy_gain_vs_all_se", "targeting_gain_top25",
    "targeting_gain_top25_se",
)

ORACLE_METRICS: tuple[str, ...] = (
    "oracle_policy_value",
    "policy_value_model_true",
    "policy_regret",
    "targeting_gain_top25_true",
)

POLICY_METRICS: tuple[str, ...] = tuple(m for m in TRUTH_FREE_METRICS if m.startswith(("policy_", "targeting_")))
_DRTESTER_METRICS: tuple[str, ...] = ("blp_coef", "blp_se", "blp_pvalue", "cal_score", "qini", "qini_se",
                                      "qini_ci_lower", "qini_ci_upper", "autoc", "autoc_se", "autoc_ci_lower",
                                      "autoc_ci_upper")

N_GROUPS = 4  # calibration groups of DRTester, as in econml's default
TOP_SHARE = 0.25  # "top quarter" of the targeting analysis (seed notebook 003)

FIGURE_NAMES = {"cal": "drtester_calibration.png", "qini": "drtester_qini.png", "toc": "drtester_toc.png"}


@dataclass
class ValidationResult:
    """Truth-free scores of one fitted estimator on the test split, econml's validation plots, and notes."""

    metrics: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)  # file name -> matplotlib Figure (Agg canvas)
    notes: list[str] = field(default_factory=list)
    # Cross-fitted DR pseudo-outcomes of the test units, kept so callers can compare models unit by unit.
    psi: Optional[np.ndarray] = None
    tau_hat_test: Optional[np.ndarray] = None


# --------------------------------------------------------------------------- small helpers


def _mean_se(contrib: np.ndarray) -> tuple[float, float]:
    """(mean, standard error of the mean) of per-unit contributions via statsmodels' DescrStatsW."""
    from statsmodels.stats.weightstats import DescrStatsW  # lazy: statsmodels is slow to import

    if contrib.size == 0:
        return NAN, NAN
    d = DescrStatsW(contrib)
    # std_mean is std(ddof=0)/sqrt(n-1) = sample sd / sqrt(n); undefined for a single unit.
    return float(d.mean), (float(d.std_mean) if contrib.size > 1 else NAN)


def top_share_mask(tau_hat, share: float = TOP_SHARE) -> Optional[np.ndarray]:
    """Units in the top ``share`` by predicted effect (ties at the cut included); None if tau_hat is constant."""
    h = as_1d(tau_hat)
    if is_constant(h):
        # A constant prediction ranks nobody above anybody: "the top quarter" does not exist.
        return None
    cut = float(np.quantile(h, 1.0 - share))
    return h >= cut


# --------------------------------------------------------------------------- policy values


def policy_values(psi, tau_hat) -> dict[str, float]:
    """Doubly robust policy values and top-quarter targeting gain of tau_hat from DR scores psi, with SEs."""
    p, h = as_1d(psi), as_1d(tau_hat)
    if p.shape != h.shape:
        raise ValueError(f"validation: psi and tau_hat have different lengths ({p.size} vs {h.size})")
    treat = (h > 0).astype(float)  # the policy "treat if the predicted effect is positive"
    out: dict[str, float] = {}
    # mean(psi * d) estimates E[d(X) tau(X)]: the policy's gain over treating nobody, per person.
    out["policy_value_model"], out["policy_value_model_se"] = _mean_se(p * treat)
    out["policy_value_treat_all"], out["policy_value_treat_all_se"] = _mean_se(p)
    out["policy_value_treat_none"] = 0.0  # the reference policy: every value is relative to it
    # Per-unit differences give a paired standard error (both policies are scored on the same units).
    out["policy_gain_vs_all"], out["policy_gain_vs_all_se"] = _mean_se(p * (treat - 1.0))
    top = top_share_mask(h)
    if top is None or p.size < 2:
        out["targeting_gain_top25"], out["targeting_gain_top25_se"] = NAN, NAN
    else:
        q = float(np.mean(top))
        mu, mu_top = float(np.mean(p)), float(np.mean(p[top]))
        gain = mu_top - mu
        # Delta-method influence function of mean(psi | top) - mean(psi), treating the cut as fixed:
        # (1[top]/q)(psi - mu_top) - (psi - mu). Adding the estimate gives contributions whose mean is the
        # estimate and whose spread is the influence function, so DescrStatsW yields its standard error.
        contrib = (top / q) * (p - mu_top) - (p - mu) + gain
        _, se = _mean_se(contrib)
        out["targeting_gain_top25"], out["targeting_gain_top25_se"] = gain, se
    return {k: float(out[k]) for k in POLICY_METRICS}


def with_truth(tau_test, tau_hat_test) -> dict[str, float]:
    """Oracle policy value, the model policy's true value and regret, and the true top-quarter targeting gain."""
    t, h = as_1d(tau_test), as_1d(tau_hat_test)
    if t.shape != h.shape:
        raise ValueError(f"validation: tau_test and tau_hat_test have different lengths ({t.size} vs {h.size})")
    if t.size == 0:
        return {k: NAN for k in ORACLE_METRICS}
    oracle = float(np.mean(t * (t > 0)))  # treat exactly those who benefit
    model = float(np.mean(t * (h > 0)))
    top = top_share_mask(h)
    targeting = NAN if top is None else float(np.mean(t[top]) - np.mean(t))
    out = {"oracle_policy_value": oracle, "policy_value_model_true": model, "policy_regret": oracle - model,
           "targeting_gain_top25_true": targeting}
    return {k: float(out[k]) for k in ORACLE_METRICS}


# --------------------------------------------------------------------------- nuisances and DR scores


# --------------------------------------------------------------------------- econml adapters


class _CateModel:
    """The fitted estimator seen through the interface econml's scorers call (effect, const_marginal_effect)."""

    def __init__(self, effect_fn: Callable[[pd.DataFrame], np.ndarray], frames: list[pd.DataFrame]):
        """Wrap effect_fn and precompute its predictions on ``frames`` (test split first, then train)."""
        self.effect_fn = effect_fn
        self.columns = list(frames[0].columns)
        self.dtypes = frames[0].dtypes
        # econml hands numpy copies of X back; predictions for the known frames are computed once on the
        # original DataFrames (dtypes intact) and looked up by value.
        self._known = [(f.to_numpy(dtype=float), self._predict(f)) for f in frames]

    def _predict(self, frame: pd.DataFrame) -> np.ndarray:
        """effect_fn on a DataFrame, checked to give one finite number per row."""
        out = as_1d(self.effect_fn(frame))
        if out.shape != (len(frame),):
            raise ValueError(f"validation: effect_fn returned {out.size} values for {len(frame)} rows")
        if not np.isfinite(out).all():
            raise ValueError("validation: effect_fn returned NaN or infinite effects")
        return out

    def predictions(self, i: int) -> np.ndarray:
        """Predictions for the i-th frame given at construction."""
        return self._known[i][1].copy()

    def _effect_of(self, X) -> np.ndarray:
        """Predicted effects for X (array or DataFrame), reusing the cached predictions when X is a known frame."""
        if isinstance(X, pd.DataFrame):
            return self._predict(X)
        arr = np.asarray(X)
        for known, tau_hat in self._known:
            if arr.shape == known.shape and np.array_equal(arr.astype(float), known):
                return tau_hat.copy()
        return self._predict(pd.DataFrame(arr, columns=self.columns).astype(self.dtypes))

    def effect(self, X=None, T0=0, T1=1):
        """Effect of moving from T0 to T1 (binary treatment: T0=0, T1=1), as DRTester calls it."""
        if (T0, T1) != (0, 1):
            raise ValueError(f"validation: binary treatment only, got T0={T0}, T1={T1}")
        return self._effect_of(X)

    def const_marginal_effect(self, X=None):
        """CATE per row, as RScorer.score calls it."""
        return self._effect_of(X)


def _fitted_rscorer(Y, T, X, seed: int, n_folds: int, outcome_model, treatment_model):
    """econml's RScorer fitted on one split: its nuisances depend on the data and the seed only (cacheable)."""
    from econml.score import RScorer

    scorer = RScorer(model_y=outcome_model, model_t=treatment_model, discrete_treatment=True, cv=n_folds,
                     random_state=seed)
    return scorer.fit(Y, T, X=X)


def _rscore(ds, cate: _CateModel, seed: int, n_folds: int, outcome_model, treatment_model,
            cache_dir: Optional[str] = None) -> dict[str, float]:
    """econml RScorer fitted on the test split: R-score, and the raw R-loss of the model and of a constant.

    With ``cache_dir`` the fitted scorer comes from joblib.Memory there (key: the split's arrays, the seed,
    folds and unfitted models), so a sweep's estimators share it; the pickled scorer scores identically."""
    fit = _fitted_rscorer
    if cache_dir is not None:
        from joblib import Memory

        fit = Memory(cache_dir, verbose=0).cache(_fitted_rscorer)
    scorer = fit(as_1d(ds.Y_test), np.asarray(ds.T_test).ravel(), ds.X_test, seed,
                 n_folds, outcome_model, treatment_model)
    score = float(scorer.score(cate))
    # RScorer.score = 1 - loss(cate) / base_score_, and base_score_ (public) is the mean squared residual of
    # the constant-effect R-learner fit (LinearDML.score_). The model's raw R-loss follows exactly; the
    # residuals themselves are only in the private ``lineardml_._cached_values``, which we do not touch.
    base = float(np.mean(scorer.base_score_))
    return {"rscore": score, "r_loss": (1.0 - score) * base, "r_loss_baseline": base}


def _drtester(ds, cate: "_CateModel", nuisances: DRNuisances, seed: int, alpha: float,
              notes: list[str], plots: bool = True) -> tuple[dict[str, float], dict[str, Any]]:
    """DRTester's evaluations on the test split (BLP, calibration, Qini, AUTOC, with plots) on the shared nuisances."""
    import matplotlib.pyplot as plt
    from scipy import stats

    from hte_bench.plots import detach_figure

    metrics = {k: NAN for k in _DRTESTER_METRICS}
    figures: dict[str, Any] = {}
    if is_constant(cate.predictions(0)) or is_constant(cate.predictions(1)):
        notes.append("DRTester (BLP, calibration, Qini, AUTOC): undefined for a constant predicted effect "
                     "(nothing to regress on or rank by); reported as NaN")
        return metrics, figures
    tester = tester_class()(model_regression=None, model_propensity=None, cate=cate, cv=nuisances.n_folds)
    tester.replay = nuisances  # no refit: the scores are the seed's shared ones
    arrays = dr_arrays(ds)
    tester.fit_nuisance(**arrays)

    # econml's uplift bootstrap (uniform bands of the curves) draws from numpy's global RNG: seed it for
    # reproducible plots and restore the caller's state so we leave no trace.
    rng_state = np.random.get_state()
    before = set(plt.get_fignums())
    caught: list[warnings.WarningMessage] = []
    ran = False
    try:
        np.random.seed(seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            res = tester.evaluate_all(Xval=arrays["Xval"], Xtrain=arrays["Xtrain"], n_groups=N_GROUPS)
            tmt = res.blp.treatments[1]  # the treated level (binary treatment: 1)
            z = float(stats.norm.ppf(1.0 - alpha / 2.0))
            metrics.update({
                "blp_coef": float(res.blp.params[0]), "blp_se": float(res.blp.errs[0]),
                "blp_pvalue": float(res.blp.pvals[0]), "cal_score": float(res.cal.cal_r_squared[0]),
            })
            for name, uplift in (("qini", res.qini), ("autoc", res.toc)):
                coef, se = float(uplift.params[0]), float(uplift.errs[0])
                metrics.update({name: coef, f"{name}_se": se, f"{name}_ci_lower": coef - z * se,
                                f"{name}_ci_upper": coef + z * se})
            for key, plot in (("cal", res.plot_cal), ("qini", res.plot_qini), ("toc", res.plot_toc)):
                if plots:
                    figures[FIGURE_NAMES[key]] = detach_figure(plot(tmt))
            ran = True
    except (IndexError, ValueError, ZeroDivisionError, np.linalg.LinAlgError) as err:
        # Degenerate predictions (e.g. a handful of distinct values) can break econml's group and curve
        # computations; the scores are then undefined rather than an error of the harness.
        metrics, figures = {k: NAN for k in _DRTESTER_METRICS}, {}
        notes.append(f"DRTester failed ({type(err).__name__}: {err}); its metrics are NaN")
    finally:
        np.random.set_state(rng_state)
        for num in set(plt.get_fignums()) - before:  # never leave a pyplot figure open
            plt.close(num)
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad and ran:
        messages = sorted({str(w.message) for w in caught})
        notes.append(f"DRTester gave non-finite {', '.join(bad)}" + (f" (warnings: {'; '.join(messages)})"
                                                                     if messages else ""))
    return metrics, figures


# --------------------------------------------------------------------------- entry point


def truth_free(dataset, effect_fn: Callable[[pd.DataFrame], np.ndarray], seed: int, n_folds: int = 2,
               outcome_model=None, treatment_model=None, *, alpha: float = 0.05,
               nuisances: Union[DRNuisances, Callable[[], DRNuisances], None] = None,
               plots: bool = True, cache_dir: Optional[str] = None) -> ValidationResult:
    """Score a fitted CATE function on the test split without the truth: R-score, DR MSE, DRTester, policies.

    ``nuisances`` are the seed's shared DR nuisances, or a function giving them (fitted here when None);
    ``plots=False`` skips econml's validation figures; ``cache_dir`` shares the R-scorer's nuisances on disk.
    """
    from sklearn.base import clone

    outcome_model = clone(default_outcome_model(seed) if outcome_model is None else outcome_model)
    treatment_model = clone(default_treatment_model(seed) if treatment_model is None else treatment_model)
    result = ValidationResult(metrics={k: NAN for k in TRUTH_FREE_METRICS})
    cate = _CateModel(effect_fn, [dataset.X_test, dataset.X_train])
    tau_hat = cate.predictions(0)
    result.tau_hat_test = tau_hat

    arms, counts = np.unique(np.asarray(dataset.T_test).ravel(), return_counts=True)
    if len(arms) < 2 or counts.min() < 2 * n_folds:
        result.notes.append(f"test split has arm counts {dict(zip(arms.tolist(), counts.tolist()))}; "
                            f"truth-free scores need at least {2 * n_folds} units per arm; all NaN")
        return result

    # The R-score keeps econml's RScorer and its own (test-split, cross-fitted) R-learner nuisances: it
    # needs E[Y|X] residuals, which the per-arm DR nuisances do not give.
    result.metrics.update(_rscore(dataset, cate, seed, n_folds, outcome_model, treatment_model, cache_dir))

    if nuisances is None:
        nuisances = fit_dr_nuisances(dataset, seed, n_folds, outcome_model, treatment_model)
    elif callable(nuisances):
        nuisances = nuisances()
    psi = nuisances.test.aipw()
    result.psi = psi
    # E[(psi - tau_hat)^2] = E[(tau - tau_hat)^2] + a term free of tau_hat, so it ranks models like the PEHE.
    result.metrics["dr_mse"] = float(np.mean((psi - tau_hat) ** 2))
    result.metrics.update(policy_values(psi, tau_hat))
    if math.isnan(result.metrics["targeting_gain_top25"]):
        result.notes.append("targeting_gain_top25: constant predicted effect, no top quarter to target; NaN")

    dr_metrics, figures = _drtester(dataset, cate, nuisances, seed, alpha, result.notes, plots)
    result.metrics.update(dr_metrics)
    result.figures = figures
    result.metrics = {k: float(result.metrics[k]) for k in TRUTH_FREE_METRICS}
    return result
