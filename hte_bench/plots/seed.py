"""Figures of one seed: calibration, estimated vs true tau, importance, ATE across seeds, best linear projection."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hte_bench.evaluation import metrics
from hte_bench.plots.base import (BLACK, BLUE, GREY, MAX_INTERVALS_SHOWN, ORANGE, VERMILLION, _diagonal,
                                  _empty, _finish, _legend_outside, _new_figure)


def calibration_plot(tau_true, tau_hat, title: str = "") -> Figure:
    """Mean predicted vs mean true effect per decile of the prediction, points sized by bin count, with the 45° line."""
    fig, ax = _new_figure()
    table = metrics.calibration_table(tau_true, tau_hat)
    if table.empty:
        _empty(ax, "no finite predictions")
    else:
        pred = table["mean_pred"].to_numpy(float)
        true = table["mean_true"].to_numpy(float)
        n = table["n"].to_numpy(float)
        sizes = 30.0 + 270.0 * n / n.max()
        _diagonal(ax, [pred, true], "perfect calibration (45°)")
        ax.plot(pred, true, color=BLUE, linewidth=1.0, alpha=0.6, zorder=2)
        rmse = metrics.calibration_rmse(tau_true, tau_hat)
        ax.scatter(pred, true, s=sizes, color=BLUE, edgecolor="white", zorder=3,
                   label=f"decile of prediction (size ∝ n), calibration RMSE {rmse:.3g}")
        _legend_outside(ax)
    return _finish(ax, "mean predicted effect in bin (τ̂)", "mean true effect in bin (τ)", title or "Calibration of CATE predictions")


def scatter_plot(tau_true, tau_hat, lower=None, upper=None, title: str = "") -> Figure:
    """Predicted vs true unit-level effect with the 45° line and, if given, intervals on at most 200 random units."""
    fig, ax = _new_figure()
    t = np.asarray(tau_true, dtype=float).ravel()
    h = np.asarray(tau_hat, dtype=float).ravel()
    if t.size == 0:
        _empty(ax, "no units")
    else:
        _diagonal(ax, [t, h], "τ̂ = τ (45°)")
        if lower is not None and upper is not None:
            lo = np.asarray(lower, dtype=float).ravel()
            hi = np.asarray(upper, dtype=float).ravel()
            usable = np.flatnonzero(np.isfinite(lo) & np.isfinite(hi) & np.isfinite(t))
            if usable.size:
                rng = np.random.default_rng(0)
                k = min(MAX_INTERVALS_SHOWN, usable.size)
                idx = np.sort(rng.choice(usable, size=k, replace=False))
                ax.vlines(t[idx], lo[idx], hi[idx], color=ORANGE, linewidth=0.7, alpha=0.8, zorder=2,
                          label=f"interval ({k} of {t.size} units shown)")
        alpha = 0.5 if t.size <= 2000 else 0.25
        ax.scatter(t, h, s=8, color=BLUE, alpha=alpha, linewidths=0, zorder=3, label="unit")
        _legend_outside(ax)
    return _finish(ax, "true effect τ", "estimated effect τ̂", title or "Estimated vs true unit-level effects")


def _normalised(col: pd.Series) -> pd.Series:
    """Scale a column to sum 1 when its (NaN-skipping) sum is positive; otherwise leave it unchanged."""
    col = pd.to_numeric(col, errors="coerce").astype(float)
    total = float(col.sum(skipna=True))
    return col / total if total > 0 else col


def importance_plot(table: pd.DataFrame, title: str = "") -> Figure:
    """Grouped horizontal bars of estimated vs true feature importance, each normalised to sum 1."""
    n_feat = 0 if table is None else len(table)
    fig, ax = _new_figure(6.5, max(3.0, 1.0 + 0.45 * n_feat))
    if n_feat == 0:
        _empty(ax, "no importance available")
    else:
        features = [str(i) for i in table.index]
        y = np.arange(n_feat, dtype=float)
        height = 0.38
        for offset, column, colour, label in ((-height / 2, "estimated", BLUE, "estimated"),
                                              (height / 2, "true", ORANGE, "true")):
            if column in table.columns:
                values = _normalised(table[column]).to_numpy(float)
            else:
                values = np.full(n_feat, np.nan)
            if np.isnan(values).all():
                label += " (not available)"
            # A missing share is no bar (not a bar of 0, which reads as "no importance"); n/a beside it.
            ax.barh(y + offset, values, height=height, color=colour, label=label)
            if not np.isnan(values).all():
                for where in y[np.isnan(values)] + offset:
                    ax.text(0.0, where, " n/a", ha="left", va="center", fontsize=7, color=GREY)
        ax.set_yticks(y, features)
        ax.invert_yaxis()
        ax.axvline(0.0, color=BLACK, linewidth=0.8)
        _legend_outside(ax)
    return _finish(ax, "share of total importance", "feature", title or "Feature importance for the effect: estimated vs true", grid="x")


def ate_across_seeds_plot(per_seed: pd.DataFrame, title: str = "") -> Figure:
    """ATE estimate and interval per seed against the true ATE, coloured by whether the interval covered it."""
    n = 0 if per_seed is None else len(per_seed)
    fig, ax = _new_figure(max(8.0, min(16.0, 4.0 + 0.3 * n)), 4.5)
    if n == 0:
        _empty(ax, "no successful seeds")
    else:
        def col(name: str) -> np.ndarray:
            if name not in per_seed.columns:
                return np.full(n, np.nan)
            return pd.to_numeric(per_seed[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

        x = np.arange(n, dtype=float)
        seeds = per_seed["seed"].tolist() if "seed" in per_seed.columns else list(range(n))
        truth, hat = col("ate_true"), col("ate_hat")
        lo, hi = col("ate_ci_lower"), col("ate_ci_upper")
        has_ci = ~(np.isnan(lo) | np.isnan(hi))
        covered = has_ci & (lo <= truth) & (truth <= hi)
        missed = has_ci & ~covered

        handles = []
        for mask, colour, label in ((covered, BLUE, "interval covers true ATE"),
                                    (missed, VERMILLION, "interval misses true ATE"),
                                    (~has_ci, GREY, "no interval")):
            if not mask.any():
                continue
            if label != "no interval":
                ax.vlines(x[mask], lo[mask], hi[mask], color=colour, linewidth=2.0, zorder=2)
            ax.scatter(x[mask], hat[mask], color=colour, s=36, zorder=3)
            handles.append(Line2D([], [], color=colour, marker="o", linewidth=2.0 if label != "no interval" else 0,
                                  label=f"{label} ({int(mask.sum())})"))
        ax.scatter(x, truth, marker="x", color=BLACK, s=40, zorder=4)
        handles.append(Line2D([], [], color=BLACK, marker="x", linewidth=0, label="true ATE"))
        # At most ~40 seed labels: 200 rotated labels are unreadable, and laying out their text took seconds.
        step = -(-n // 40)
        ax.set_xticks(x[::step], [str(s) for s in seeds[::step]], rotation=90 if n > 20 else 0)
        ax.set_xlim(-0.7, n - 0.3)
        _legend_outside(ax, handles=handles)
    return _finish(ax, "seed", "average treatment effect", title or "ATE estimate per seed", grid="y")


# ---- analyses of one seed: subgroups (seed notebook 003), best linear projection ----


def blp_plot(table: pd.DataFrame, title: str = "") -> Figure:
    """Per-feature best-linear-projection slopes with intervals (a forest plot), named modifiers in blue."""
    rows = table.drop(index="(Intercept)", errors="ignore")
    fig, ax = _new_figure(6.5, max(2.5, 1.0 + 0.45 * len(rows)))
    if rows.empty:
        _empty(ax, "no features")
        return fig
    y = np.arange(len(rows), dtype=float)
    named = ((rows["ci_lower"] > 0) | (rows["ci_upper"] < 0)).to_numpy()
    for mask, colour, label in ((named, BLUE, "interval excludes 0"), (~named, GREY, "interval includes 0")):
        if mask.any():
            ax.hlines(y[mask], rows["ci_lower"].to_numpy(float)[mask], rows["ci_upper"].to_numpy(float)[mask],
                      color=colour, linewidth=2.0)
            ax.scatter(rows["coef"].to_numpy(float)[mask], y[mask], color=colour, s=30, zorder=3, label=label)
    ax.axvline(0.0, color=BLACK, linewidth=0.8)
    ax.set_yticks(y, [str(i) for i in rows.index])
    ax.invert_yaxis()
    unit = "per +1 sd of the feature" if bool(rows.get("per_sd", pd.Series([False])).all()) else "per unit"
    ax.set_xlabel(f"change of the effect {unit}")
    ax.set_title(title or "Best linear projection of DR scores (HC3 intervals)")
    _legend_outside(ax)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


# ---- comparison across configurations (leaderboard) ----
