"""Matplotlib figures for one estimator run: calibration, predicted vs true effects, importance, ATE across seeds."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hte_bench.evaluation import metrics

# Okabe-Ito colour-blind-safe palette.
BLUE = "#0072B2"
ORANGE = "#E69F00"
VERMILLION = "#D55E00"
GREEN = "#009E73"
SKY = "#56B4E9"
GREY = "#999999"
BLACK = "#000000"

MAX_INTERVALS_SHOWN = 200


def _new_figure(width: float = 6.0, height: float = 5.0) -> tuple[Figure, "object"]:
    """A Figure on its own Agg canvas (no pyplot state) with one Axes."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    return fig, ax


def _empty(ax, message: str) -> None:
    """Write a centred note on an Axes that has nothing to draw."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=GREY)


def _diagonal(ax, values: list[np.ndarray], label: str = "identity (45°)") -> None:
    """Draw the 45-degree line across the finite range of the given values."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if finite.size == 0:
        return
    lo, hi = float(finite.min()), float(finite.max())
    pad = 0.05 * (hi - lo) if hi > lo else max(0.5, abs(lo) * 0.05)
    lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], linestyle="--", color=GREY, linewidth=1.0, label=label, zorder=1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)


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
        ax.legend(loc="upper left", fontsize="small")
    ax.set_xlabel("mean predicted effect in bin (τ̂)")
    ax.set_ylabel("mean true effect in bin (τ)")
    ax.set_title(title or "Calibration of CATE predictions")
    ax.grid(True, alpha=0.3)
    return fig


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
        ax.legend(loc="upper left", fontsize="small")
    ax.set_xlabel("true effect τ")
    ax.set_ylabel("estimated effect τ̂")
    ax.set_title(title or "Estimated vs true unit-level effects")
    ax.grid(True, alpha=0.3)
    return fig


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
            ax.barh(y + offset, np.nan_to_num(values, nan=0.0), height=height, color=colour, label=label)
        ax.set_yticks(y, features)
        ax.invert_yaxis()
        ax.axvline(0.0, color=BLACK, linewidth=0.8)
        ax.legend(loc="lower right", fontsize="small")
    ax.set_xlabel("share of total importance")
    ax.set_ylabel("feature")
    ax.set_title(title or "Feature importance for the effect: estimated vs true")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


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
        ax.set_xticks(x, [str(s) for s in seeds], rotation=90 if n > 20 else 0)
        ax.set_xlim(-0.7, n - 0.3)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set_xlabel("seed")
    ax.set_ylabel("average treatment effect")
    ax.set_title(title or "ATE estimate per seed")
    ax.grid(True, axis="y", alpha=0.3)
    return fig


# ---- comparison across configurations (leaderboard) ----

def metric_by_config_plot(values: dict[str, np.ndarray], metric: str, title: str = "") -> Figure:
    """Per-seed values of one metric for each configuration: a box per configuration with the seeds as dots."""
    labels = list(values)
    fig, ax = _new_figure(7.0, max(3.0, 0.45 * len(labels) + 1.5))
    if not labels:
        _empty(ax, "no configurations")
        return fig
    data = [np.asarray(values[k], dtype=float) for k in labels]
    data = [d[np.isfinite(d)] for d in data]
    y = np.arange(len(labels))
    ax.boxplot([d if d.size else [np.nan] for d in data], positions=y, orientation="horizontal", widths=0.5,
               showfliers=False, medianprops={"color": ORANGE})
    rng = np.random.default_rng(0)
    for i, d in enumerate(data):
        ax.scatter(d, i + rng.uniform(-0.15, 0.15, d.size), s=14, color=BLUE, alpha=0.7, zorder=3)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (one dot per seed)")
    ax.set_title(title or f"{metric} by configuration")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def ate_error_by_config_plot(rows: dict[str, pd.DataFrame], title: str = "") -> Figure:
    """ATE estimate minus truth, with its interval, for every seed of every configuration (0 = truth)."""
    labels = list(rows)
    fig, ax = _new_figure(7.0, max(3.0, 0.45 * len(labels) + 1.5))
    for i, label in enumerate(labels):
        frame = rows[label]
        truth = frame["ate_true"].to_numpy(float)
        err = frame["ate_hat"].to_numpy(float) - truth
        lo = frame["ate_ci_lower"].to_numpy(float) - truth
        hi = frame["ate_ci_upper"].to_numpy(float) - truth
        offsets = i + np.linspace(-0.3, 0.3, len(frame)) if len(frame) > 1 else np.array([float(i)])
        has = np.isfinite(lo) & np.isfinite(hi)
        covered = has & (lo <= 0) & (hi >= 0)
        ax.hlines(offsets[covered], lo[covered], hi[covered], color=BLUE, linewidth=1.2)
        ax.hlines(offsets[has & ~covered], lo[has & ~covered], hi[has & ~covered], color=VERMILLION, linewidth=1.2)
        ax.scatter(err, offsets, s=12, color=BLACK, zorder=3)
    ax.axvline(0, color=GREY, linestyle="--", linewidth=1.0)
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("ATE estimate − true ATE (interval blue if it covers the truth, vermillion if not)")
    ax.set_title(title or "ATE error and interval per seed")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def calibration_overlay_plot(tables: dict[str, pd.DataFrame], title: str = "") -> Figure:
    """Calibration curves (mean true vs mean predicted tau per decile) of several configurations on one axis."""
    fig, ax = _new_figure(6.5, 5.5)
    palette = [BLUE, ORANGE, GREEN, VERMILLION, SKY, "#CC79A7", "#F0E442", BLACK]
    everything = []
    for i, (label, table) in enumerate(tables.items()):
        pred, true = table["mean_pred"].to_numpy(float), table["mean_true"].to_numpy(float)
        ax.plot(pred, true, marker="o", markersize=4, color=palette[i % len(palette)], label=label)
        everything += [pred, true]
    if everything:
        _diagonal(ax, everything)
        ax.legend(fontsize="small")
    else:
        _empty(ax, "no predictions")
    ax.set_xlabel("mean predicted tau (decile of prediction)")
    ax.set_ylabel("mean true tau")
    ax.set_title(title or "Calibration by configuration (test split)")
    ax.grid(True, alpha=0.3)
    return fig


# ---- studies across data conditions (sweep run, hte-bench-leaderboard --by) ----

def study_plot(table: pd.DataFrame, knob: str, metric: str, title: str = "") -> Figure:
    """``metric`` against a data knob, one line per configuration, 95% t-intervals of the mean across seeds.

    ``table`` has columns ``config``, ``knob``, ``mean``, ``ci_lower``, ``ci_upper``, ``n_seeds`` (one row per
    configuration and knob value, as ``compare.study.study_table`` builds it). Non-numeric knob values
    (Nie–Wager's setup) are placed in order on a categorical axis.
    """
    fig, ax = _new_figure(7.0, 4.8)
    if table.empty:
        _empty(ax, "no configurations")
        return fig
    values = pd.to_numeric(table[knob], errors="coerce")
    categorical = values.isna().any()
    levels = sorted(table[knob].astype(str).unique()) if categorical else None
    x_all = table[knob].astype(str).map({v: i for i, v in enumerate(levels or [])}) if categorical else values
    palette = [BLUE, ORANGE, GREEN, VERMILLION, SKY, "#CC79A7", "#F0E442", BLACK]
    configs = list(dict.fromkeys(table["config"]))
    width = 0.08 * (np.ptp(x_all) or 1.0)
    for i, config in enumerate(configs):
        rows = table["config"] == config
        x = x_all[rows].to_numpy(float) + (i - (len(configs) - 1) / 2) * width / max(len(configs), 1)
        order = np.argsort(x)
        mean, lo, hi = (table.loc[rows, c].to_numpy(float)[order] for c in ("mean", "ci_lower", "ci_upper"))
        ax.errorbar(x[order], mean, yerr=[mean - lo, hi - mean], marker="o", markersize=4, capsize=3,
                    color=palette[i % len(palette)], label=config)
    if categorical:
        ax.set_xticks(range(len(levels)), levels)
    n = table["n_seeds"]
    ax.set_xlabel(knob)
    ax.set_ylabel(f"{metric}: mean over seeds, 95% t-interval (n = {n.min()}–{n.max()} seeds)"
                  if n.min() != n.max() else f"{metric}: mean over seeds, 95% t-interval (n = {n.min()} seeds)")
    ax.set_title(title or f"{metric} by {knob}")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return fig
