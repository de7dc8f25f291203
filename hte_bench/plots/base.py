"""Shared pieces of every figure: the Okabe-Ito palette, new Agg figures, legends, axes focus."""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


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


def _finish(ax, xlabel: str, ylabel: str, title: str, grid: str = "both"):
    """Axis labels, title and a light grid: how every figure ends; returns the Axes' Figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis=grid, alpha=0.3)
    return ax.get_figure()


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
