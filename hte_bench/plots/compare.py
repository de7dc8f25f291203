"""Figures that compare configurations: per-seed metrics, ATE errors, calibration overlays, studies by knob."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hte_bench.evaluation.registry import level_text
from hte_bench.plots.base import (BLACK, BLUE, GREEN, GREY, ORANGE, SKY, VERMILLION, _diagonal, _empty,
                                  _focus_on_candidates, _legend_outside, _new_figure)


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

def study_plot(table: pd.DataFrame, knob: str, metric: str, title: str = "", level: float = 0.95) -> Figure:
    """``metric`` against a data knob, one line per configuration, t-intervals of the mean across seeds at
    ``level`` (the one ``study_table`` computed them at).

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
    import textwrap

    from hte_bench.evaluation import registry

    valued = pd.to_numeric(table["mean"], errors="coerce").notna()
    configs = list(dict.fromkeys(table.loc[valued, "config"]))
    # A configuration without a value anywhere (no intervals for a coverage metric, every seed failed) gets no
    # empty legend entry: it is named under the axes instead.
    missing = [c for c in dict.fromkeys(table["config"]) if c not in configs]
    width = 0.08 * (np.ptp(x_all) or 1.0)
    outside = False
    for i, config in enumerate(configs):
        rows = (table["config"] == config) & valued
        x = x_all[rows].to_numpy(float) + (i - (len(configs) - 1) / 2) * width / max(len(configs), 1)
        order = np.argsort(x)
        mean, lo, hi = (table.loc[rows, c].to_numpy(float)[order] for c in ("mean", "ci_lower", "ci_upper"))
        leaves = any(registry.leaves_range(metric, a, b) for a, b in zip(lo, hi)) if registry.is_registered(metric) \
            else False
        outside |= leaves
        ax.errorbar(x[order], mean, yerr=[mean - lo, hi - mean], marker="o", markersize=4, capsize=3,
                    color=palette[i % len(palette)], label=config + (" †" if leaves else ""))
    if registry.is_registered(metric) and registry.spec(metric).goal == "target":
        target = registry.spec(metric).target_value(1 - level)
        ax.axhline(target, color=GREY, linestyle="--", linewidth=1, label=f"target {target:g}")
    if categorical:
        ax.set_xticks(range(len(levels)), levels)
    n = table.loc[valued, "n_seeds"]
    ax.set_xlabel(knob)
    seeds = "no" if n.empty else f"{n.min()}–{n.max()}" if n.min() != n.max() else f"{n.min()}"
    ax.set_ylabel(f"{metric}: mean over seeds,\n{level_text(1 - level)} t-interval (n = {seeds} seeds)")
    ax.set_title(textwrap.fill(title or f"{metric} by {knob}", 70), fontsize="medium")
    notes = ([f"† an interval bound outside the values {metric} can take (few seeds; shown as computed)"]
             if outside else []) + ([f"no value: {', '.join(missing)}"] if missing else [])
    if notes:
        fig.text(0.01, -0.02, textwrap.fill("; ".join(notes), 110), fontsize="small", va="top")
    if configs:
        ax.legend(fontsize="small")
    else:
        _empty(ax, "no configuration has a value of this metric")
    ax.grid(True, alpha=0.3)
    return fig
