"""Pure metric functions comparing an Estimate with the Truth, per seed (evaluate) and across seeds (aggregate)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd
from scipy import stats

from hte_bench.evaluation import registry

if TYPE_CHECKING:  # only for annotations; keeps this module free of import cycles
    from hte_bench.data.base import Truth
    from hte_bench.estimators.base import Estimate

NAN = float("nan")

# Public interface: the per-seed metric names evaluate() computes itself, in registry order (a user's registered
# metrics come from their own functions, whenever they were registered).
CHILD_METRICS: tuple[str, ...] = tuple(
    n for n in registry.names(level="seed")
    if not registry.METRICS[n].fn and registry.METRICS[n].group in ("core", "interval", "importance", "cost"))

CALIBRATION_COLUMNS = ["bin", "n", "mean_pred", "mean_true"]


# --------------------------------------------------------------------------- helpers


def as_1d(x) -> np.ndarray:
    """Flatten array-like input to a 1-D float array (shared by metrics, validation and subgroups)."""
    return np.asarray(x, dtype=float).ravel()


def paired(a, b, names: str = "inputs", where: str = "metrics") -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D float arrays of equal length; a length mismatch is a programming error and raises."""
    a, b = as_1d(a), as_1d(b)
    if a.shape != b.shape:
        raise ValueError(f"{where}: {names} have different lengths ({a.size} vs {b.size})")
    return a, b


def _float(x) -> float:
    """Plain Python float; None becomes NaN."""
    if x is None:
        return NAN
    try:
        return float(x)
    except (TypeError, ValueError):
        return NAN


def is_constant(x: np.ndarray) -> bool:
    """True when the finite array has (numerically) a single value."""
    if x.size == 0:
        return True
    spread = float(np.max(x) - np.min(x))
    scale = max(1.0, float(np.max(np.abs(x))))
    return spread <= 1e-12 * scale


def _bounds(lower, upper) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Interval bounds as arrays, or None when missing, empty or containing NaN (not a usable interval set)."""
    if lower is None or upper is None:
        return None
    lo, hi = paired(lower, upper, "interval bounds")
    if lo.size == 0 or np.isnan(lo).any() or np.isnan(hi).any():
        return None
    return lo, hi


# --------------------------------------------------------------------------- unit-level metrics


# What an estimate says about itself: defined without any true tau.
WITHOUT_TRUTH = tuple(n for n in CHILD_METRICS if not registry.METRICS[n].needs_truth)


def cate_mse(tau, tau_hat) -> float:
    """Mean squared error of the estimated unit-level effects (PEHE squared); NaN on empty input."""
    t, h = paired(tau, tau_hat, "tau and tau_hat")
    if t.size == 0:
        return NAN
    return float(np.mean((h - t) ** 2))


def interval_coverage(tau, lower, upper) -> float:
    """Share of units whose true effect lies in [lower, upper]; NaN when there are no intervals."""
    b = _bounds(lower, upper)
    if b is None:
        return NAN
    lo, hi = b
    t, lo = paired(tau, lo, "tau and interval bounds")
    return float(np.mean((lo <= t) & (t <= hi)))


def interval_width(lower, upper) -> float:
    """Mean width of the per-unit intervals; NaN when there are no intervals."""
    b = _bounds(lower, upper)
    if b is None:
        return NAN
    lo, hi = b
    return float(np.mean(hi - lo))


def calibration(tau_true, tau_hat) -> tuple[float, float]:
    """(slope, intercept) of the OLS regression of true tau on predicted tau; 1 and 0 when well calibrated."""
    t, h = paired(tau_true, tau_hat, "tau_true and tau_hat")
    if t.size < 2 or not (np.isfinite(t).all() and np.isfinite(h).all()) or is_constant(h):
        return NAN, NAN
    res = stats.linregress(h, t)
    return float(res.slope), float(res.intercept)


def calibration_table(tau_true, tau_hat, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs mean true effect within quantile bins of the prediction (units with NaN dropped)."""
    t, h = paired(tau_true, tau_hat, "tau_true and tau_hat")
    keep = np.isfinite(t) & np.isfinite(h)
    t, h = t[keep], h[keep]
    if t.size == 0:
        return pd.DataFrame({"bin": pd.Series(dtype=int), "n": pd.Series(dtype=int),
                             "mean_pred": pd.Series(dtype=float), "mean_true": pd.Series(dtype=float)})
    if is_constant(h) or bins <= 1:
        codes = np.zeros(t.size, dtype=int)
    else:
        codes = np.asarray(pd.qcut(h, int(bins), labels=False, duplicates="drop"))
        if np.isnan(codes.astype(float)).any():  # qcut could not form edges; fall back to one bin
            codes = np.zeros(t.size, dtype=int)
        codes = codes.astype(int)
    # pandas' grouped means (compensated sums) column by column: a DataFrame grouped by an array formats
    # that array for a name, and named aggregation adds more; this is ~5x cheaper with the same values.
    pred, true = (pd.Series(v).groupby(codes, sort=True).mean() for v in (h, t))
    return pd.DataFrame({"bin": np.arange(len(pred), dtype=int),  # 0..k-1 in case edges were dropped
                         "n": np.bincount(codes)[pred.index.to_numpy()].astype(int),
                         "mean_pred": pred.to_numpy(), "mean_true": true.to_numpy()}, columns=CALIBRATION_COLUMNS)


def calibration_rmse(tau_true, tau_hat, bins: int = 10) -> float:
    """Root mean (unweighted over bins) squared gap between mean predicted and mean true effect per bin."""
    t, h = paired(tau_true, tau_hat, "tau_true and tau_hat")
    if t.size == 0 or not (np.isfinite(t).all() and np.isfinite(h).all()):
        return NAN
    table = calibration_table(t, h, bins=bins)
    if table.empty:
        return NAN
    gap = table["mean_pred"].to_numpy(float) - table["mean_true"].to_numpy(float)
    return float(np.sqrt(np.mean(gap ** 2)))


# --------------------------------------------------------------------------- importance


def _clean_importance(s) -> Optional[dict[str, float]]:
    """Importance as {feature name: finite float} (NaN and non-numeric entries dropped); None if unusable."""
    if s is None:
        return None
    s = pd.Series(s)
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    # Plain dicts, not Series: this runs on every seed, and pandas' indexing costs more than the statistic.
    clean = {str(name): float(v) for name, v in zip(s.index, values) if np.isfinite(v)}
    return clean or None


def importance_agreement(estimated: Optional[pd.Series], true: Optional[pd.Series],
                         modifiers: Optional[list[str]]) -> tuple[float, float]:
    """(Spearman rank correlation of estimated vs true importance, 1/0 whether the top estimated feature is a true modifier)."""
    est = _clean_importance(estimated)
    tru = _clean_importance(true)

    rank_corr = NAN
    if est is not None and tru is not None:
        shared = [f for f in est if f in tru]
        if len(shared) >= 2:
            a = np.array([est[f] for f in shared])
            b = np.array([tru[f] for f in shared])
            if not is_constant(a) and not is_constant(b):
                rank_corr = float(stats.spearmanr(a, b).statistic)

    top_hit = NAN  # also when the true modifiers are not known (None)
    if est is not None and modifiers is not None and not is_constant(np.array(list(est.values()))):
        best = max(est.values())
        top = [f for f, v in est.items() if v == best]
        # A tie at the top counts as a hit only if every tied feature is a true modifier.
        mods = {str(m) for m in modifiers}
        top_hit = 1.0 if all(f in mods for f in top) else 0.0
    return rank_corr, top_hit


# --------------------------------------------------------------------------- per-seed evaluation


def evaluate(truth: "Truth", estimate: "Estimate", true_importance: Optional[pd.Series] = None) -> dict[str, float]:
    """All per-seed metrics of one Estimate against the Truth, keyed exactly by CHILD_METRICS.

    Without a true tau (a user's CSV) only the metrics that need no truth are returned: the others are
    absent, not zero.
    """
    if truth.tau_train is None:
        return {k: v for k, v in evaluate(_no_truth(truth, estimate), estimate).items()
                if not registry.METRICS[k].needs_truth}
    tau_train, tau_test = as_1d(truth.tau_train), as_1d(truth.tau_test)
    hat_train, hat_test = as_1d(estimate.tau_hat_train), as_1d(estimate.tau_hat_test)

    ate_true = float(np.mean(tau_train)) if tau_train.size else NAN
    ate_hat = _float(estimate.ate_hat)
    lo, hi = _float(estimate.ate_lower), _float(estimate.ate_upper)
    has_ate_ci = not (math.isnan(lo) or math.isnan(hi))
    if has_ate_ci and not math.isnan(ate_true):
        ate_covered = 1.0 if lo <= ate_true <= hi else 0.0
    else:
        ate_covered = NAN

    mse_train = cate_mse(tau_train, hat_train)
    mse_test = cate_mse(tau_test, hat_test)
    slope, intercept = calibration(tau_test, hat_test)
    rank_corr, top_hit = importance_agreement(estimate.importance, true_importance, truth.known_modifiers())

    out = {
        "ate_true": ate_true,
        "ate_hat": ate_hat,
        "ate_bias": ate_hat - ate_true,
        "ate_ci_lower": lo,
        "ate_ci_upper": hi,
        "ate_covered": ate_covered,
        "ate_ci_width": (hi - lo) if has_ate_ci else NAN,
        "cate_mse_train": mse_train,
        "cate_mse_test": mse_test,
        "cate_rmse_train": math.sqrt(mse_train) if mse_train >= 0 else NAN,
        "cate_rmse_test": math.sqrt(mse_test) if mse_test >= 0 else NAN,
        "cate_coverage_train": interval_coverage(tau_train, estimate.lower_train, estimate.upper_train),
        "cate_coverage_test": interval_coverage(tau_test, estimate.lower_test, estimate.upper_test),
        "cate_ci_width_train": interval_width(estimate.lower_train, estimate.upper_train),
        "cate_ci_width_test": interval_width(estimate.lower_test, estimate.upper_test),
        "calib_slope_test": slope,
        "calib_intercept_test": intercept,
        "calib_rmse_test": calibration_rmse(tau_test, hat_test),
        "importance_rank_corr": rank_corr,
        "importance_top_hit": top_hit,
        "fit_seconds": _float(estimate.fit_seconds),
        "predict_seconds": _float(estimate.predict_seconds),
    }
    out = {k: float(out[k]) for k in CHILD_METRICS}
    if truth.ate_population is not None:  # absent, not NaN, where the generator does not know it
        pop = float(truth.ate_population)
        out["ate_true_population"] = pop
        out["ate_covered_population"] = (1.0 if lo <= pop <= hi else 0.0) if has_ate_ci else NAN
    out.update(_computed(truth, estimate))
    return out


def _computed(truth: "Truth", estimate: "Estimate") -> dict[str, float]:
    """Metrics registered with their own function (``MetricSpec.fn``): one registry line, one function."""
    import importlib

    out = {}
    for spec in registry.computed():
        if spec.needs_truth and truth.tau_train is None:
            continue
        module, _, name = spec.fn.rpartition(".")
        value = getattr(importlib.import_module(module), name)(truth, estimate)
        # A number or None (NaN: undefined here); anything else is a bug the user must see, not a NaN.
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))):
            import reprlib

            raise TypeError(f"metric {spec.name!r} ({spec.fn}) returned {reprlib.repr(value)} "
                            f"({type(value).__name__}), not a number")
        out[spec.name] = NAN if value is None else float(value)
    return out


def _no_truth(truth: "Truth", estimate: "Estimate") -> "Truth":
    """A stand-in truth of NaNs, so evaluate() can compute the truth-free metrics by the same code."""
    import dataclasses

    nan_train = np.full(len(as_1d(estimate.tau_hat_train)), NAN)
    nan_test = np.full(len(as_1d(estimate.tau_hat_test)), NAN)
    return dataclasses.replace(truth, tau_train=nan_train, tau_test=nan_test, modifiers=[], modifiers_known=False,
                               tau_fn=None)
