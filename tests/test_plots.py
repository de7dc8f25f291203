"""Smoke tests of hte_bench.plots: each figure renders to PNG and leaves no pyplot state behind."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from hte_bench import plots


@pytest.fixture(autouse=True)
def no_open_pyplot_figures():
    plt.close("all")
    yield
    assert plt.get_fignums() == []


def _data(n=500):
    rng = np.random.default_rng(3)
    tau = rng.normal(size=n)
    tau_hat = tau + rng.normal(scale=0.5, size=n)
    return tau, tau_hat, tau_hat - 1.0, tau_hat + 1.0


def _check(fig, path):
    assert isinstance(fig, Figure)
    assert len(fig.axes) >= 1
    fig.savefig(path)
    assert path.stat().st_size > 1000


def _interval_segments(fig):
    return sum(len(c.get_segments()) for ax in fig.axes for c in ax.collections if isinstance(c, LineCollection))


def test_calibration_plot(tmp_path):
    tau, tau_hat, _, _ = _data()
    fig = plots.calibration_plot(tau, tau_hat, title="calibration")
    _check(fig, tmp_path / "calibration.png")
    assert fig.axes[0].get_title() == "calibration"
    # one point per decile
    offsets = [c for c in fig.axes[0].collections if not isinstance(c, LineCollection)]
    assert len(offsets[0].get_offsets()) == 10


def test_calibration_plot_degenerate(tmp_path):
    _check(plots.calibration_plot([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]), tmp_path / "const.png")
    _check(plots.calibration_plot([], []), tmp_path / "empty.png")


def test_scatter_plot_without_intervals(tmp_path):
    tau, tau_hat, _, _ = _data()
    fig = plots.scatter_plot(tau, tau_hat)
    _check(fig, tmp_path / "scatter.png")
    assert _interval_segments(fig) == 0


def test_scatter_plot_interval_subsample_cap(tmp_path):
    tau, tau_hat, lower, upper = _data(n=1000)
    fig = plots.scatter_plot(tau, tau_hat, lower, upper, title="scatter")
    _check(fig, tmp_path / "scatter_ci.png")
    assert _interval_segments(fig) == plots.MAX_INTERVALS_SHOWN == 200
    # deterministic subsample
    again = plots.scatter_plot(tau, tau_hat, lower, upper)
    seg = lambda f: [c.get_segments() for c in f.axes[0].collections if isinstance(c, LineCollection)][0]
    assert all(np.array_equal(a, b) for a, b in zip(seg(fig), seg(again)))
    # fewer units than the cap: all intervals drawn
    small = plots.scatter_plot(tau[:50], tau_hat[:50], lower[:50], upper[:50])
    assert _interval_segments(small) == 50


def test_importance_plot(tmp_path):
    table = pd.DataFrame({"estimated": [0.5, 0.3, 0.2, np.nan], "true": [2.0, 1.0, 0.0, 0.0]},
                         index=["x1", "x2", "x3", "x4"])
    fig = plots.importance_plot(table, title="importance")
    _check(fig, tmp_path / "importance.png")
    widths = sorted(p.get_width() for p in fig.axes[0].patches)
    # true column normalised by its sum 3: 2/3, 1/3, 0, 0
    assert max(widths) == pytest.approx(2 / 3)
    no_est = pd.DataFrame({"estimated": [np.nan, np.nan], "true": [0.0, 0.0]}, index=["a", "b"])
    _check(plots.importance_plot(no_est), tmp_path / "importance_nan.png")
    _check(plots.importance_plot(pd.DataFrame(columns=["estimated", "true"])), tmp_path / "importance_empty.png")


def test_ate_across_seeds_plot(tmp_path):
    per_seed = pd.DataFrame({
        "seed": [0, 1, 2, 5],
        "ate_true": [1.0, 1.1, 0.9, 1.0],
        "ate_hat": [1.05, 1.6, 0.95, 1.2],
        "ate_ci_lower": [0.9, 1.3, np.nan, 1.0],
        "ate_ci_upper": [1.2, 1.9, np.nan, 1.4],
    })
    fig = plots.ate_across_seeds_plot(per_seed, title="ate")
    _check(fig, tmp_path / "ate.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("covers" in s for s in labels) and any("misses" in s for s in labels)
    assert any("no interval" in s for s in labels) and "true ATE" in labels
    _check(plots.ate_across_seeds_plot(per_seed.iloc[:0]), tmp_path / "ate_empty.png")
