"""Figures of the per-seed analyses: subgroup effects, the age × education heatmap, interpreter trees."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hte_bench.evaluation import metrics
from hte_bench.plots.base import (BLUE, GREY, NAN, ORANGE, _legend_outside, _new_figure)


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
    # A missing mean is no bar and an "n/a" at the axis, never a bar of height 0 (which reads as no effect).
    ax.bar(x - width / 2, hat, width, color=BLUE, label="estimated mean τ̂")
    ax.bar(x + width / 2, true, width, color=ORANGE, label="true mean τ")
    for offset, values in ((-width / 2, hat), (width / 2, true)):
        for where in x[np.isnan(values)] + offset:
            ax.text(where, 0.0, "n/a", ha="center", va="bottom", fontsize=7, color=GREY, rotation=90)
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


def interpreter_tree_figure(interpreter, feature_names: list[str], title: str = "") -> Figure:
    """An econml Single-Tree CATE or policy interpreter's tree, drawn by econml onto a Figure of its own."""
    depth = int(interpreter.tree_model_.get_depth())
    fig, ax = _new_figure(width=max(6.0, 2.4 * 2 ** depth), height=1.6 + 1.6 * depth)
    interpreter.plot(ax=ax, feature_names=feature_names, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
