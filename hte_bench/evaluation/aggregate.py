"""Across seeds: each per-seed metric's mean, spread and t-interval, the ATE RMSE and the ATE coverage rate."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

NAN = float("nan")


def mean_interval(values: np.ndarray, alpha: float) -> tuple[float, float, float, float]:
    """(mean, std ddof=1, t-interval lower, upper) of the non-NaN values; NaN where undefined."""
    v = values[~np.isnan(values)]
    n = v.size
    if n == 0:
        return NAN, NAN, NAN, NAN
    mean = float(np.mean(v))
    if n < 2:
        return mean, NAN, NAN, NAN
    std = float(np.std(v, ddof=1))
    if not np.isfinite(v).all():
        return mean, std, NAN, NAN
    half = float(stats.t.ppf(1.0 - alpha / 2.0, df=n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def aggregate(per_seed: pd.DataFrame, n_failed: int, alpha: float = 0.05) -> dict[str, float]:
    """Summaries across seeds (mean, std, t-interval per metric; ATE RMSE; ATE coverage rate with Wilson interval)."""
    n_ok = 0 if per_seed is None else len(per_seed)
    out: dict[str, float] = {}
    if n_ok == 0:
        return {"n_seeds_ok": 0.0, "n_seeds_failed": float(n_failed)}

    def column(name: str) -> np.ndarray:
        if name not in per_seed.columns:
            return np.full(n_ok, NAN)
        return pd.to_numeric(per_seed[name], errors="coerce").to_numpy(dtype=float, na_value=NAN)

    # Every numeric per-seed column is summarised: the child metrics, and any other per-seed scores
    # (truth-free validation scores) that were logged beside them.
    names = [c for c in per_seed.columns if c != "seed" and pd.api.types.is_numeric_dtype(per_seed[c])]
    for m in names:
        mean, std, lo, hi = mean_interval(column(m), alpha)
        out[f"{m}_mean"] = mean
        out[f"{m}_std"] = std
        out[f"{m}_ci_lower"] = lo
        out[f"{m}_ci_upper"] = hi

    from hte_bench.evaluation import registry

    truth = "ate_true" in per_seed.columns
    for rate in [name for name in registry.METRICS if registry.summarised_as(name) == "share"]:
        per_seed_name = registry.per_seed_source(rate)
        # ATE coverage whenever there is a truth (NaN without intervals); the others (the population's, a
        # user's share of a truth-free 0/1 metric) where their per-seed metric was logged.
        if (per_seed_name == "ate_covered" and truth) or per_seed_name in per_seed.columns:
            out.update(coverage_rate(column(per_seed_name), rate, alpha))
    if not truth:  # no truth: no ATE error
        return {**out, "n_seeds_ok": float(n_ok), "n_seeds_failed": float(n_failed)}
    err = column("ate_hat") - column("ate_true")
    err = err[~np.isnan(err)]
    out["ate_rmse"] = float(np.sqrt(np.mean(err ** 2))) if err.size else NAN
    out["n_seeds_ok"] = float(n_ok)
    out["n_seeds_failed"] = float(n_failed)
    return out


def coverage_rate(covered: np.ndarray, name: str, alpha: float) -> dict[str, float]:
    """Share of seeds whose interval covered (``name``) with its Wilson interval (``name``_ci_lower/upper)."""
    covered = covered[np.isfinite(covered)]
    if not covered.size:
        return {name: NAN, f"{name}_ci_lower": NAN, f"{name}_ci_upper": NAN}
    from statsmodels.stats.proportion import proportion_confint  # lazy: statsmodels is slow to import

    k, n = int(round(float(np.sum(covered)))), int(covered.size)
    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    return {name: float(np.mean(covered)), f"{name}_ci_lower": float(lo), f"{name}_ci_upper": float(hi)}
