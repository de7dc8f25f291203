"""Every figure of the harness: per-seed plots, the analyses' figures (subgroups, heatmap, BLP, econml's), comparisons."""
from __future__ import annotations

from typing import Sequence

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
NAN = float("nan")


def _new_figure(width: float = 6.0, height: float = 5.0, ncols: int = 1) -> tuple[Figure, "object"]:
    """A Figure on its own Agg canvas (no pyplot state) with one Axes, or a list of ncols Axes."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    if ncols == 1:
        return fig, fig.add_subplot(1, 1, 1)
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def detach_figure(plotted) -> Figure:
    """The Figure behind a pyplot-drawn plot (econml's), removed from pyplot's registry onto its own Agg canvas."""
    import matplotlib.pyplot as plt

    # econml plots with DataFrame.plot, which draws on a new pyplot figure and returns the Axes.
    fig = plotted if isinstance(plotted, Figure) else plotted.get_figure()
    plt.close(fig)
    FigureCanvasAgg(fig)  # a closed figure keeps working for savefig only with a canvas of its own
    return fig


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


def _legend_outside(ax, **kwargs) -> None:
    """The legend right of the Axes, never over the data (constrained layout makes room for it)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", **kwargs)


# Estimators that are yardsticks rather than candidates: their values may be far off the others'.
BASELINES = ("zero_effect", "constant_effect")


def _focus_on_candidates(ax, labels: list[str], data: list[np.ndarray], anchor: float = NAN) -> list[str]:
    """Limit the value (x) axis to the non-baseline configurations when a baseline lies far outside them.

    ``anchor`` (e.g. 0 = the truth) stays in view. Returns the labels, an off-scale one marked with its
    median, so a clipped configuration is named rather than hidden.
    """
    finite = [d[np.isfinite(d)] for d in data]
    candidate = [d for label, d in zip(labels, finite) if label.split()[0] not in BASELINES and d.size]
    if not candidate or len(candidate) == sum(d.size > 0 for d in finite):
        return labels
    inner = np.concatenate(candidate + ([np.array([anchor])] if np.isfinite(anchor) else []))
    lo, hi = float(inner.min()), float(inner.max())
    pad = 0.1 * (hi - lo) if hi > lo else max(abs(hi) * 0.1, 0.1)
    lo, hi = lo - pad, hi + pad
    out = list(labels)
    for i, d in enumerate(finite):
        if d.size and (d.min() < lo - pad or d.max() > hi + pad):
            out[i] = f"{labels[i]}  [off scale: median {np.median(d):.3g}]"
    if out != list(labels):
        ax.set_xlim(lo, hi)
    return out


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
        _legend_outside(ax)
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
        _legend_outside(ax)
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
        _legend_outside(ax, handles=handles)
    ax.set_xlabel("seed")
    ax.set_ylabel("average treatment effect")
    ax.set_title(title or "ATE estimate per seed")
    ax.grid(True, axis="y", alpha=0.3)
    return fig


# ---- analyses of one seed: subgroups (seed notebook 003), best linear projection ----


def _bin_labels(bins: Sequence[float]) -> list[str]:
    """Interval names for right-closed bins whose first bin also holds its left edge."""
    edges = [float(b) for b in bins]
    return [("[" if i == 0 else "(") + f"{a:g}, {b:g}]" for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]


def heatmap_figure(X: pd.DataFrame, tau_hat, tau_true, row: str = "age", col: str = "education_years",
                   row_bins: Sequence[float] = (20, 35, 50, 65),
                   col_bins: Sequence[float] = (8, 12, 14, 20)) -> "Figure":
    """Side-by-side heatmaps of mean estimated and mean true tau per row×col cell, on one colour scale, with n."""
    h, t = metrics.paired(tau_hat, tau_true, "tau_hat and tau_true", where="plots")
    # include_lowest: education is clipped at 8 years, and a plain right-closed cut at 8 would silently
    # drop those units from the notebook's heatmap.
    r = pd.cut(X[row].reset_index(drop=True).astype(float), list(row_bins), labels=_bin_labels(row_bins),
               include_lowest=True)
    c = pd.cut(X[col].reset_index(drop=True).astype(float), list(col_bins), labels=_bin_labels(col_bins),
               include_lowest=True)
    frame = pd.DataFrame({"r": r, "c": c, "hat": h, "true": t})
    outside = int((r.isna() | c.isna()).sum())
    grouped = frame.dropna(subset=["r", "c"]).groupby(["r", "c"], observed=False)
    shape = (len(r.cat.categories), len(c.cat.categories))
    counts = grouped.size().to_numpy().reshape(shape)
    means = {k: grouped[k].mean().to_numpy(dtype=float, na_value=NAN).reshape(shape) for k in ("hat", "true")}
    finite = np.concatenate([m[np.isfinite(m)] for m in means.values()])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + 1e-9

    fig, axes = _new_figure(11.0, 4.2, ncols=2)
    image = None
    for ax, key, title in ((axes[0], "hat", "estimated mean τ̂"), (axes[1], "true", "true mean τ")):
        m = means[key]
        # Same vmin/vmax on both panels so colour differences are differences in tau, not in scaling.
        image = ax.imshow(np.ma.masked_invalid(m), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        for i in range(shape[0]):
            for j in range(shape[1]):
                value = "–" if not np.isfinite(m[i, j]) else f"{m[i, j]:.3f}"
                light = np.isfinite(m[i, j]) and (m[i, j] - vmin) / (vmax - vmin) > 0.6
                ax.text(j, i, f"{value}\nn={counts[i, j]}", ha="center", va="center", fontsize=9,
                        color="black" if light else "white" if np.isfinite(m[i, j]) else GREY)
        ax.set_xticks(range(shape[1]), list(c.cat.categories))
        ax.set_yticks(range(shape[0]), list(r.cat.categories))
        ax.set_xlabel(col)
        ax.set_ylabel(row)
        ax.set_title(title)
    fig.colorbar(image, ax=axes, label="mean effect in cell", shrink=0.9)
    note = f" ({outside} units outside the bins)" if outside else ""
    fig.suptitle(f"Effect by {row} × {col}: estimate vs truth{note}")
    return fig


def subgroup_figure(table: pd.DataFrame) -> "Figure":
    """Grouped bars of mean estimated vs mean true tau for every subgroup level of a subgroup_table."""
    n = len(table)
    fig, ax = _new_figure(max(6.0, 1.5 + 0.85 * n), 4.8)
    if n == 0:
        ax.text(0.5, 0.5, "no subgroups declared", ha="center", va="center", transform=ax.transAxes, color=GREY)
        return fig
    # A gap between subgroups so levels of one grouping read as a block.
    x, position, previous = [], 0.0, None
    for name in table["subgroup"]:
        if previous is not None and name != previous:
            position += 0.6
        x.append(position)
        position += 1.0
        previous = name
    x = np.asarray(x)
    width = 0.38
    hat = table["tau_hat_mean"].to_numpy(dtype=float, na_value=NAN)
    true = table["tau_true_mean"].to_numpy(dtype=float, na_value=NAN)
    ax.bar(x - width / 2, np.nan_to_num(hat), width, color=BLUE, label="estimated mean τ̂")
    ax.bar(x + width / 2, np.nan_to_num(true), width, color=ORANGE, label="true mean τ")
    ax.set_xticks(x, [f"{lv}\nn={k}".replace(" ", "\n", 1) if len(str(lv)) > 9 else f"{lv}\nn={k}"
                      for lv, k in zip(table["level"], table["n"])], fontsize=8)
    # The subgroup's name once under its block of levels instead of on every tick.
    names = table["subgroup"].to_numpy()
    for name in dict.fromkeys(names):
        centre = float(x[names == name].mean())
        ax.text(centre, -0.2, str(name), transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=9, fontweight="bold")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("mean effect in subgroup")
    ax.set_title("Effect by subgroup: estimate vs truth")
    _legend_outside(ax)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


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
    ax.set_yticks(y, _focus_on_candidates(ax, labels, data))
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (one dot per seed)")
    ax.set_title(title or f"{metric} by configuration")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def ate_error_by_config_plot(rows: dict[str, pd.DataFrame], title: str = "") -> Figure:
    """ATE estimate minus truth, with its interval, for every seed of every configuration (0 = truth)."""
    labels = list(rows)
    fig, ax = _new_figure(7.0, max(3.0, 0.45 * len(labels) + 1.5))
    spans = []
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
        spans.append(np.concatenate([err, lo, hi]))
    ax.axvline(0, color=GREY, linestyle="--", linewidth=1.0)
    ax.set_yticks(np.arange(len(labels)), _focus_on_candidates(ax, labels, spans, anchor=0.0))
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
        _legend_outside(ax)
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


def interpreter_tree_figure(interpreter, feature_names: list[str], title: str = "") -> Figure:
    """An econml Single-Tree CATE or policy interpreter's tree, drawn by econml onto a Figure of its own."""
    depth = int(interpreter.tree_model_.get_depth())
    fig, ax = _new_figure(width=max(6.0, 2.4 * 2 ** depth), height=1.6 + 1.6 * depth)
    interpreter.plot(ax=ax, feature_names=feature_names, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
